#!/usr/bin/env bash
# A 1 GiB download and a 1 GiB upload streamed through `traceforge proxy`, over HTTP/1.1, HTTP/2
# with prior knowledge (h2c), and HTTPS (ALPN h2 and http/1.1), with the proxy's peak resident set
# size checked against a bound.
#
#   bash bench/stream.sh                     # every case, about a minute
#   bash bench/stream.sh h1 h2c              # some of: h1 h2c tls-h1 tls-h2
#   SIZE=$((256 << 20)) RSS_LIMIT_MIB=50 TRANSFER_TIMEOUT=300 WORKERS=2 bash bench/stream.sh
#
# Each case starts a fresh `traceforge upstream` and `traceforge proxy --upstream ...` on loopback
# ports they pick themselves (--listen 127.0.0.1:0), so VmHWM (the kernel's peak RSS) is the peak
# of that case alone. curl downloads `/api/bytes/SIZE` to /dev/null and uploads SIZE bytes of
# `head -c SIZE /dev/zero` to `/api/echo` (which counts the body as it streams by and drops it):
# nothing is written to disk. A sampler reads VmRSS of both servers every 100 ms besides; "proxy
# idle" is the proxy's VmRSS once it listens, before the transfer.
#
# Exits non-zero when a transfer is short or fails, or when the proxy's peak RSS reaches
# RSS_LIMIT_MIB in any case. Everything started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE=${SIZE:-1073741824}               # bytes per transfer (1 GiB)
RSS_LIMIT_MIB=${RSS_LIMIT_MIB:-50}     # the proxy's peak RSS must stay below this
TRANSFER_TIMEOUT=${TRANSFER_TIMEOUT:-300}
WORKERS=${WORKERS:-}                   # --workers of both servers (default: one per core)
TF=$ROOT/target/release/traceforge
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]:-}"; do if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# A signal ends the script (its EXIT trap cleans up) instead of resuming it after the handler.
trap 'exit 130' INT
trap 'exit 143' TERM

need() {
  local missing=()
  command -v curl >/dev/null || missing+=(curl)
  command -v python3 >/dev/null || missing+=(python3)
  if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if ! curl -V | grep -q '^Features:.*HTTP2'; then
    echo "curl has no HTTP/2 support (nghttp2): $(curl -V | head -1)" >&2
    exit 1
  fi
  echo "==> building traceforge (release)"
  cargo build --release --quiet
}

# Starts a server in the background; sets STARTED_URL (and STARTED_CA for a TLS server) from
# what it prints, and STARTED_PID. Arguments: a log name, then the command.
start_server() {
  local log=$WORK/$1.log; shift
  : >"$log"
  "$@" >"$log" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  for _ in $(seq 1 200); do
    if grep -q "listening on" "$log"; then
      STARTED_URL=$(grep -m1 "listening on" "$log" | grep -o "https\?://[0-9.:]*")
      STARTED_CA=$(grep -m1 "^ca file: " "$log" | cut -d' ' -f3- || true)
      if [[ $STARTED_URL == https://* && -z $STARTED_CA ]]; then sleep 0.05; continue; fi
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

# A field of /proc/PID/status in KiB (VmRSS, VmHWM).
status_kib() { awk -v k="$2:" '$1 == k { print $2 }' "/proc/$1/status" 2>/dev/null || echo 0; }

# Samples VmRSS of PID every 100 ms into FILE (one KiB figure a line) until killed.
sample_rss() {
  local pid=$1 file=$2
  while [[ -r /proc/$pid/status ]]; do
    status_kib "$pid" VmRSS >>"$file" 2>/dev/null || true
    sleep 0.1
  done
}

mib() { python3 -c "print(f'{$1/1024:.1f}')"; }
max_of() { sort -n "$1" | tail -1 | grep . || echo 0; }

FAILED=0
ROWS=()

# One case: protocol (h1 | h2c | tls-h1 | tls-h2) and direction (download | upload).
run_case() {
  local proto=$1 direction=$2 tls=() curl_proto=()
  case $proto in
    h1) curl_proto=(--http1.1) ;;
    h2c) curl_proto=(--http2-prior-knowledge) ;;
    tls-h1) tls=(--tls --tls-dir "$WORK/tls-$proto-$direction"); curl_proto=(--http1.1) ;;
    tls-h2) tls=(--tls --tls-dir "$WORK/tls-$proto-$direction"); curl_proto=(--http2) ;;
    *) echo "unknown case $proto" >&2; exit 2 ;;
  esac
  local workers=()
  [[ -n $WORKERS ]] && workers=(--workers "$WORKERS")
  start_server "upstream-$proto-$direction" "$TF" upstream --listen 127.0.0.1:0 "${workers[@]}"
  local up=$STARTED_URL up_pid=$STARTED_PID
  start_server "proxy-$proto-$direction" "$TF" proxy --listen 127.0.0.1:0 --upstream "$up" \
    "${workers[@]}" "${tls[@]}"
  local proxy=$STARTED_URL proxy_pid=$STARTED_PID ca=() proxy_start
  proxy_start=$(status_kib "$proxy_pid" VmRSS)
  [[ ${#tls[@]} -gt 0 ]] && ca=(--cacert "$STARTED_CA")
  local proxy_samples=$WORK/rss-proxy-$proto-$direction up_samples=$WORK/rss-up-$proto-$direction
  : >"$proxy_samples"; : >"$up_samples"
  sample_rss "$proxy_pid" "$proxy_samples" & PIDS+=($!); local s1=$!
  sample_rss "$up_pid" "$up_samples" & PIDS+=($!); local s2=$!

  local out=$WORK/curl-$proto-$direction.txt reply=$WORK/reply-$proto-$direction.json
  local rc=0 moved version code seconds upstream_saw
  local common=(-sS --max-time "$TRANSFER_TIMEOUT" "${curl_proto[@]}" "${ca[@]}")
  # curl runs in the background and is waited for, so a signal to this script stops the transfer
  # at once (bash runs traps only between foreground commands) and the cleanup can end it.
  if [[ $direction == download ]]; then
    curl "${common[@]}" -o /dev/null \
      -w '%{size_download} %{http_version} %{http_code} %{time_total}\n' \
      "$proxy/api/bytes/$SIZE" >"$out" &
  else
    # -T - streams stdin (chunked over HTTP/1.1, DATA frames over HTTP/2) without reading it whole.
    curl "${common[@]}" -T - -X POST \
      -H 'content-type: application/octet-stream' -o "$reply" \
      -w '%{size_upload} %{http_version} %{http_code} %{time_total}\n' \
      "$proxy/api/echo" >"$out" < <(head -c "$SIZE" /dev/zero) &
  fi
  local curl_pid=$!
  PIDS+=("$curl_pid")
  wait "$curl_pid" || rc=$?
  read -r moved version code seconds <"$out" || true
  local proxy_hwm up_hwm
  proxy_hwm=$(status_kib "$proxy_pid" VmHWM)
  up_hwm=$(status_kib "$up_pid" VmHWM)
  kill "$s1" "$s2" 2>/dev/null || true
  wait "$s1" "$s2" 2>/dev/null || true
  stop_server "$proxy_pid"; stop_server "$up_pid"

  local verdict=ok
  if [[ $direction == upload ]]; then
    # curl's size_upload counts the chunked framing too: the body's size is what the upstream
    # counted (body_length of /api/echo's answer).
    upstream_saw=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("body_length", 0))' "$reply" 2>/dev/null || echo 0)
    moved=$upstream_saw
  fi
  [[ $rc == 0 ]] || verdict="curl exit $rc"
  [[ ${code:-} == 200 ]] || verdict="status ${code:-none}"
  [[ ${moved:-0} == "$SIZE" ]] || verdict="short: ${moved:-0} of $SIZE bytes"
  # The kernel folds per-thread RSS counts into VmHWM lazily: a sample can read a little above it.
  local proxy_peak proxy_sampled
  proxy_sampled=$(max_of "$proxy_samples")
  proxy_peak=$((proxy_hwm > proxy_sampled ? proxy_hwm : proxy_sampled))
  if ((proxy_peak >= RSS_LIMIT_MIB * 1024)); then verdict="proxy peak RSS $(mib "$proxy_peak") MiB >= $RSS_LIMIT_MIB MiB"; fi
  [[ $verdict == ok ]] || FAILED=1

  local mbps
  mbps=$(python3 -c "print(f'{${moved:-0}/max(${seconds:-0},1e-9)/1e6:.0f}')")
  ROWS+=("$(printf "| %-7s | %-8s | %-4s | %13s | %7s | %6s | %9s | %15s | %17s | %15s | %s |" \
    "$proto" "$direction" "${version:-?}" "${moved:-0}" "$(printf %.2f "${seconds:-0}")" "$mbps" \
    "$(mib "$proxy_start")" "$(mib "$proxy_hwm")" "$(mib "$proxy_sampled")" "$(mib "$up_hwm")" "$verdict")")
  echo "${ROWS[-1]}" >&2
}

read -ra cases <<<"${*:-h1 h2c tls-h1 tls-h2}"
need
echo "machine: $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "versions: $($TF --version), $(curl -V | head -1 | cut -d' ' -f1-2), $(curl -V | head -1 | grep -o 'nghttp2/[0-9.]*')"
echo "size: $SIZE bytes per transfer; proxy peak RSS limit: $RSS_LIMIT_MIB MiB; workers: ${WORKERS:-one per core}"
for proto in "${cases[@]}"; do
  for direction in download upload; do run_case "$proto" "$direction"; done
done
echo
printf "| %-7s | %-8s | %-4s | %13s | %7s | %6s | %9s | %15s | %17s | %15s | %s |\n" \
  case direction http bytes "wall s" "MB/s" "proxy idle" "proxy VmHWM MiB" "proxy max sampled" "upstream VmHWM" result
echo "|---------|----------|------|---------------|---------|--------|-----------|-----------------|-------------------|-----------------|--------|"
printf "%s\n" "${ROWS[@]}"
if ((FAILED)); then
  echo "FAILED: a transfer was short or failed, or the proxy's peak RSS reached $RSS_LIMIT_MIB MiB" >&2
  exit 1
fi
echo "all transfers complete; the proxy's peak RSS stayed below $RSS_LIMIT_MIB MiB"
