"""Reads wrk --latency output on stdin; prints "req_per_s p50_ms p99_ms" (with --count, the request
count after them; with --requests, the request count alone)."""
import re
import sys

text = sys.stdin.read()


def ms(value: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", value).groups()
    return float(number) * {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 6e4}[unit]


count = int(re.search(r"(\d+) requests in", text).group(1))
if "--requests" in sys.argv:
    print(count)
    sys.exit()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
p50 = ms(re.search(r"\s50%\s+(\S+)", text).group(1))
p99 = ms(re.search(r"\s99%\s+(\S+)", text).group(1))
tail = f" {count}" if "--count" in sys.argv else ""
print(f"{rps:.0f} {p50:.3f} {p99:.3f}{tail}")
