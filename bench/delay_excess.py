"""Compares two `traceforge load --format csv` files: delayed vs direct; prints the excess over the delay."""
import csv
import statistics
import sys

delayed, direct, delay_ms = sys.argv[1], sys.argv[2], float(sys.argv[3])


def latencies(path):
    with open(path, newline="") as f:
        return sorted(float(row["latency_ms"]) for row in csv.DictReader(f) if row["status"] == "200")


def pct(values, q):
    return values[min(len(values) - 1, int(q * len(values)))]


d, base = latencies(delayed), latencies(direct)
excess = sorted(v - delay_ms for v in d)
print("| measure | p50 ms | p99 ms | max ms |")
print("|---|---|---|---|")
print(f"| direct latency | {pct(base, .5):.3f} | {pct(base, .99):.3f} | {base[-1]:.3f} |")
print(f"| delayed latency | {pct(d, .5):.3f} | {pct(d, .99):.3f} | {d[-1]:.3f} |")
print(f"| excess over {delay_ms:.0f}ms | {pct(excess, .5):.3f} | {pct(excess, .99):.3f} | {excess[-1]:.3f} |")
print(f"min excess: {excess[0]:.3f} ms (never negative means no request was released early)")
