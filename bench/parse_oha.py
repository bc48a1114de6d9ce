"""Reads `oha --output-format json` on stdin; prints "p50_ms p99_ms p99.9_ms"."""
import json
import sys

p = json.load(sys.stdin)["latencyPercentiles"]
print(" ".join(f"{p[k] * 1e3:.3f}" for k in ("p50", "p99", "p99.9")))
