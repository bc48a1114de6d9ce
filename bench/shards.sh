#!/usr/bin/env bash
# Aggregate request rate of a sharded run on this machine (BENCHMARKS.md, "Sharded runs").
#
# bench/memory.toml (the in-process pipeline: demo upstream, proxy, load generator; no faults),
# played three ways, interleaved for ROUNDS rounds:
#   single   one process, --workers 2, on cores 0-1;
#   1 shard  --shard 0/1, --workers 1, pinned to core 0 (what one core makes);
#   2 shards --shard 0/2 on core 0 and --shard 1/2 on core 1, --workers 1 each, one --start-at,
#            then `traceforge merge` (checked: exit 0, so the merged run is the whole run).
# The rate is requests / wall time from launch to the last process's exit (merge excluded, shown
# apart). Usage: bench/shards.sh [REQUESTS] [ROUNDS]   (defaults 200000 and 3)
set -euo pipefail
cd "$(dirname "$0")/.."

REQUESTS=${1:-200000}
ROUNDS=${2:-3}
command -v taskset >/dev/null || { echo "needs taskset (util-linux)" >&2; exit 2; }
cargo build --release --locked --quiet
BIN=target/release/traceforge
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2])):.0f}')" "$@"; }
common=(bench/memory.toml --set "load.requests=$REQUESTS" --golden-dir "$WORK/golden" --logs "$WORK/logs")

single() {
  local t0 t1
  t0=$(now)
  taskset -c 0,1 "$BIN" run "${common[@]}" --workers 2 --accept >/dev/null
  t1=$(now)
  rate "$REQUESTS" "$t0" "$t1"
}

one_shard() {
  local t0 t1
  t0=$(now)
  taskset -c 0 "$BIN" run "${common[@]}" --workers 1 --shard 0/1 --bundle "$WORK/one.jsonl" >/dev/null
  t1=$(now)
  rate "$REQUESTS" "$t0" "$t1"
}

two_shards() {
  local t0 t1 t2 start a b
  start=$(python3 -c "import datetime; print((datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=1)).isoformat())")
  t0=$(now)
  taskset -c 0 "$BIN" run "${common[@]}" --workers 1 --shard 0/2 --bundle "$WORK/s0.jsonl" --start-at "$start" >/dev/null & a=$!
  taskset -c 1 "$BIN" run "${common[@]}" --workers 1 --shard 1/2 --bundle "$WORK/s1.jsonl" --start-at "$start" >/dev/null & b=$!
  wait "$a"; wait "$b"
  t1=$(now)
  # The 1 s start-at wait is not load: leave it out.
  "$BIN" merge "$WORK/s0.jsonl" "$WORK/s1.jsonl" --scenario bench/memory.toml --golden-dir "$WORK/golden" >/dev/null
  t2=$(now)
  echo "$(python3 -c "import sys; print(f'{int(sys.argv[1]) / (float(sys.argv[3]) - float(sys.argv[2]) - 1.0):.0f}')" "$REQUESTS" "$t0" "$t1") $(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t1" "$t2")"
}

echo "requests=$REQUESTS rounds=$ROUNDS ($(nproc) cores)"
single >/dev/null  # accept the golden file the merges compare with
for r in $(seq 1 "$ROUNDS"); do
  s=$(single); o=$(one_shard); read -r t m < <(two_shards)
  echo "round $r: single(2 workers) ${s} req/s | 1 shard (1 core) ${o} req/s | 2 shards ${t} req/s (merge ${m}s)"
done
