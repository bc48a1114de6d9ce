#!/usr/bin/env bash
# What the request log and OTLP span export cost the proxy: wrk through `traceforge proxy` with
# neither, with `--log-requests`, with `--otlp`, and with both, in interleaved rounds.
#
#   bash bench/observe.sh                          # 3 rounds of 10 s per case
#   ROUNDS=5 DURATION=15 CONNECTIONS=64 bash bench/observe.sh
#
# The upstream is `traceforge upstream`, the collector a small Python OTLP/HTTP sink that answers
# 200 to every POST (it does not decode: the exporter's cost is what is measured). Proxy and
# upstream run with --workers 1 each (WORKERS to change it), wrk with one thread. After each case
# the proxy's /metrics gives the lines and spans it dropped: a case that dropped any is reported,
# since its figure then measures less work. Everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-32}
WORKERS=${WORKERS:-1}
TF=$ROOT/target/release/traceforge
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]:-}"; do if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if ! command -v wrk >/dev/null; then
  echo "==> installing wrk"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
fi
echo "==> building traceforge (release)"
cargo build --release --quiet

# Starts a server in the background and sets STARTED_URL and STARTED_PID from what it prints.
start_server() {
  local log=$WORK/$1.log; shift
  : >"$log"
  "$@" >"$log" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  for _ in $(seq 1 200); do
    if grep -q "listening on" "$log"; then
      STARTED_URL=$(grep -m1 "listening on" "$log" | grep -o "http://[0-9.:]*")
      return
    fi
    sleep 0.05
  done
  echo "failed to start: $*" >&2; cat "$log" >&2; exit 1
}

stop_server() {
  kill "$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

cat >"$WORK/sink.py" <<'EOF'
import http.server, sys

class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("content-length", 0)))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()
    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Sink)
print(f"listening on http://127.0.0.1:{server.server_address[1]}", flush=True)
server.serve_forever()
EOF

start_server upstream "$TF" upstream --listen 127.0.0.1:0 --workers "$WORKERS"
UPSTREAM=$STARTED_URL
start_server sink python3 "$WORK/sink.py"
SINK=$STARTED_URL

CASES=(off log otlp both)
declare -A RESULTS

run_case() {
  local case=$1 flags=()
  case $case in
    off) ;;
    log) flags=(--log-requests "$WORK/requests-$case.jsonl") ;;
    otlp) flags=(--otlp "$SINK") ;;
    both) flags=(--log-requests "$WORK/requests-$case.jsonl" --otlp "$SINK") ;;
  esac
  start_server "proxy-$case" "$TF" proxy --listen 127.0.0.1:0 --upstream "$UPSTREAM" \
    --workers "$WORKERS" --fault error:503:0.1 "${flags[@]}"
  local proxy=$STARTED_URL pid=$STARTED_PID
  local out
  out=$(wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$proxy/api/resource" | python3 bench/parse_wrk.py)
  local dropped
  dropped=$(curl -s "$proxy/metrics" | awk '/^traceforge_proxy_(log_lines|spans)_dropped_total/ { s += $2 } END { print s + 0 }')
  stop_server "$pid"
  rm -f "$WORK"/requests-*.jsonl
  RESULTS[$case]+="$out $dropped"$'\n'
  echo "    $case: req/s p50_ms p99_ms = $out, dropped $dropped"
}

for round in $(seq 1 "$ROUNDS"); do
  echo "==> round $round of $ROUNDS"
  for case in "${CASES[@]}"; do run_case "$case"; done
done

median() { sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
base=$(printf '%s' "${RESULTS[off]}" | awk 'NF { print $1 }' | median)
echo
echo "| case | req/s (median of $ROUNDS) | vs off | p50 ms | p99 ms | lines+spans dropped |"
echo "|---|---|---|---|---|---|"
for case in "${CASES[@]}"; do
  rows=$(printf '%s' "${RESULTS[$case]}")
  rps=$(awk 'NF { print $1 }' <<<"$rows" | median)
  p50=$(awk 'NF { print $2 }' <<<"$rows" | median)
  p99=$(awk 'NF { print $3 }' <<<"$rows" | median)
  dropped=$(awk 'NF { s += $4 } END { print s + 0 }' <<<"$rows")
  ratio=$(python3 -c "print(f'{$rps / $base:.2f}')")
  echo "| $case | $rps | $ratio | $p50 | $p99 | $dropped |"
done
