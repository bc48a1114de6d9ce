#!/usr/bin/env bash
# Seeds per minute of `traceforge explore` on this machine (BENCHMARKS.md, "Seed search").
#
# Each scenario is explored over seeds 1..SEEDS with --jobs 2 --no-shrink (the search alone),
# ROUNDS times; the figure is seeds / wall time from launch to exit (process start and the
# scenario's validation included), the best and the median of the rounds.
#   explore-retry-budget     20 requests on the virtual clock (the target is >= 10,000 seeds/min)
#   outage-recovery-virtual  one virtual hour, 1800 requests with retries and backoff
# Usage: bench/explore.sh [SEEDS] [ROUNDS]   (defaults 2000 and 3; the hour-long scenario plays
# SEEDS/10 seeds)
set -euo pipefail
cd "$(dirname "$0")/.."

SEEDS=${1:-2000}
ROUNDS=${2:-3}
cargo build --release --locked --quiet
BIN=target/release/traceforge
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

now() { date +%s.%N; }

one() {
  local file=$1 seeds=$2 t0 t1 code
  t0=$(now)
  code=0
  "$BIN" explore "$file" --seeds "1..$seeds" --jobs 2 --no-shrink --logs "$WORK/logs" >"$WORK/table" 2>/dev/null || code=$?
  t1=$(now)
  # 0 (every seed held) and 1 (some failed) are results; anything else is not a measurement.
  if [ "$code" -gt 1 ]; then
    echo "explore $file exited $code" >&2
    cat "$WORK/table" >&2
    exit 1
  fi
  python3 -c "import sys; print(f'{int(sys.argv[1]) * 60 / (float(sys.argv[3]) - float(sys.argv[2])):.0f}')" "$seeds" "$t0" "$t1"
}

report() {
  local file=$1 seeds=$2 r figures=()
  for r in $(seq 1 "$ROUNDS"); do
    figures+=("$(one "$file" "$seeds")")
  done
  python3 - "$file" "$seeds" "${figures[@]}" <<'PY'
import statistics, sys
file, seeds, figures = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3:]]
print(f"{file}: {seeds} seeds, --jobs 2: best {max(figures)} seeds/min, median {int(statistics.median(figures))} (rounds: {', '.join(map(str, figures))})")
PY
}

echo "seeds=$SEEDS rounds=$ROUNDS ($(nproc) cores)"
report scenarios/explore-retry-budget.toml "$SEEDS"
report scenarios/outage-recovery-virtual.toml "$((SEEDS / 10))"
