#!/usr/bin/env bash
# TraceForge benchmarks, side by side with their peers, on loopback only.
#
#   bash bench/run.sh            # everything (about 14 minutes on 2 cores)
#   bash bench/run.sh proxy      # one part: proxy | load | scenarios | delay | scale | virtual | calls
#
# Installs what the selected parts use (wrk, nginx-light, GNU time, hyperfine via apt; oha via
# cargo), builds TraceForge in release mode, starts every server itself on 127.0.0.1 ports, runs A
# and B interleaved for several rounds and prints medians and ratios. Everything it starts is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROUNDS=${ROUNDS:-3}          # interleaved rounds per comparison
DURATION=${DURATION:-5}      # seconds per wrk run
CONNS=${CONNS:-32}           # connections for the proxy comparison
WORK=$(mktemp -d)
PIDS=()

cleanup() {
  for pid in "${PIDS[@]:-}"; do kill "$pid" 2>/dev/null || true; done
  # Servers started inside $(start_tf ...) are recorded here: a subshell cannot add to PIDS.
  if [[ -f $WORK/pids ]]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$WORK/pids"
  fi
  if [[ -f $WORK/nginx.pid ]]; then kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; fi
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
# A signal ends the script (the EXIT trap then cleans up) instead of letting it carry on.
trap 'exit 130' INT
trap 'exit 143' TERM

# Installs what the selected parts use, then builds TraceForge. Arguments: the parts.
need() {
  local parts=" $* " missing=()
  if [[ $parts == *" proxy "* || $parts == *" load "* ]]; then
    command -v wrk >/dev/null || missing+=(wrk)
  fi
  if [[ $parts == *" proxy "* ]]; then
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
  fi
  [[ -x /usr/bin/time ]] || missing+=(time)
  if [[ $parts == *" calls "* ]]; then
    command -v hyperfine >/dev/null || missing+=(hyperfine)
  fi
  if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
  if [[ $parts == *" proxy "* || $parts == *" load "* ]] && ! command -v oha >/dev/null; then
    echo "==> installing oha (cargo install, a few minutes)"
    cargo install oha --locked --quiet
  fi
  echo "==> building traceforge (release)"
  cargo build --release --quiet
}

TF=$ROOT/target/release/traceforge
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# Starts a command in the background, waits for it to print its address, echoes the address.
start_tf() {
  local log=$WORK/$1.log; shift
  "$@" >"$log" 2>&1 &
  echo "$!" >>"$WORK/pids"
  for _ in $(seq 1 100); do
    if grep -q "listening on" "$log"; then
      grep -m1 "listening on" "$log" | grep -o "http://[0-9.:]*"
      return
    fi
    sleep 0.05
  done
  echo "failed to start: $*" >&2; cat "$log" >&2; exit 1
}

start_nginx() { # upstream_url port
  cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream backend { server ${1#http://}; keepalive 64; }
  server {
    listen 127.0.0.1:$2;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
  taskset -c 0 "$NGINX" -c "$WORK/nginx.conf" -p "$WORK"
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$2") 2>/dev/null && return
    sleep 0.05
  done
  echo "nginx did not start" >&2; exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wrk with latency; prints "req_per_s p50_ms p99_ms".
wrk_run() {
  taskset -c 1 wrk -t1 -c"$CONNS" -d"${DURATION}s" --latency "$1" 2>&1 | python3 "$ROOT/bench/parse_wrk.py"
}

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.2f}")' "$@"; }

bench_proxy() {
  echo
  echo "## Proxy overhead: wrk -t1 -c$CONNS -d${DURATION}s, proxies pinned to core 0, wrk and upstream on core 1"
  local up tf nginx_port
  up=$(start_tf upstream taskset -c 1 "$TF" upstream --listen 127.0.0.1:0 --workers 1)
  tf=$(start_tf proxy taskset -c 0 "$TF" proxy --listen 127.0.0.1:0 --upstream "$up" --workers 1)
  nginx_port=$(free_port)
  start_nginx "$up" "$nginx_port"
  local path=/api/resource
  declare -A rps p50 p99
  for r in $(seq 1 "$ROUNDS"); do
    for target in direct traceforge nginx; do
      case $target in
        direct) url=$up$path ;;
        traceforge) url=$tf$path ;;
        nginx) url=http://127.0.0.1:$nginx_port$path ;;
      esac
      read -r a b c < <(wrk_run "$url")
      rps[$target]+=" $a"; p50[$target]+=" $b"; p99[$target]+=" $c"
    done
  done
  printf "| %-22s | %10s | %8s | %8s |\n" target "req/s" "p50 ms" "p99 ms"
  printf "|%s|%s|%s|%s|\n" "------------------------" "------------" "----------" "----------"
  for target in direct traceforge nginx; do
    # shellcheck disable=SC2086
    printf "| %-22s | %10s | %8s | %8s |\n" "$target" "$(median ${rps[$target]})" "$(median ${p50[$target]})" "$(median ${p99[$target]})"
  done
  # shellcheck disable=SC2086
  echo "traceforge / nginx throughput: $(python3 -c "print(f'{$(median ${rps[traceforge]})/$(median ${rps[nginx]}):.2f}')")"

  # Saturated, a faster proxy also carries more load, so its tail is measured under more work.
  # Added latency is compared at the same fixed rate (oha, coordinated omission corrected).
  local rate=${RATE:-10000}
  echo
  echo "## Added latency at a fixed $rate requests/s: oha -q $rate -c $CONNS --latency-correction, ${DURATION}s"
  declare -A f50 f99 f999
  for r in $(seq 1 "$ROUNDS"); do
    for target in direct traceforge nginx; do
      case $target in
        direct) url=$up$path ;;
        traceforge) url=$tf$path ;;
        nginx) url=http://127.0.0.1:$nginx_port$path ;;
      esac
      read -r a b c < <(taskset -c 1 oha -z "${DURATION}s" -q "$rate" -c "$CONNS" --latency-correction --no-tui \
        --output-format json "$url" 2>/dev/null | python3 "$ROOT/bench/parse_oha.py")
      f50[$target]+=" $a"; f99[$target]+=" $b"; f999[$target]+=" $c"
    done
  done
  printf "| %-22s | %8s | %8s | %9s |\n" target "p50 ms" "p99 ms" "p99.9 ms"
  printf "|%s|%s|%s|%s|\n" "------------------------" "----------" "----------" "-----------"
  for target in direct traceforge nginx; do
    # shellcheck disable=SC2086
    printf "| %-22s | %8s | %8s | %9s |\n" "$target" "$(median ${f50[$target]})" "$(median ${f99[$target]})" "$(median ${f999[$target]})"
  done
  kill "$(cat "$WORK/nginx.pid")"; rm -f "$WORK/nginx.pid"
}

bench_load() {
  echo
  echo "## Load generators against the same upstream (pinned to core 1), generators on core 0: n=$((50000)), c=50"
  local up n=50000 c=50
  up=$(start_tf upstream2 taskset -c 1 "$TF" upstream --listen 127.0.0.1:0 --workers 1)
  local url=$up/api/resource
  declare -A rps cpu rss
  for r in $(seq 1 "$ROUNDS"); do
    for gen in traceforge oha wrk; do
      local out=$WORK/time-$gen.txt start end
      start=$(date +%s.%N)
      case $gen in
        traceforge) /usr/bin/time -f "%U %S %M" -o "$out" taskset -c 0 "$TF" load --url "$url" --n $n --concurrency $c --workers 1 >/dev/null ;;
        oha) /usr/bin/time -f "%U %S %M" -o "$out" taskset -c 0 oha -n $n -c $c --no-tui "$url" >/dev/null ;;
        wrk) /usr/bin/time -f "%U %S %M" -o "$out" taskset -c 0 wrk -t1 -c$c -d3s "$url" >"$WORK/wrk-load.txt" ;;
      esac
      end=$(date +%s.%N)
      read -r user sys maxrss < <(tail -1 "$out")
      local count=$n
      [[ $gen == wrk ]] && count=$(python3 "$ROOT/bench/parse_wrk.py" --requests <"$WORK/wrk-load.txt")
      rps[$gen]+=" $(python3 -c "print($count/($end-$start))")"
      cpu[$gen]+=" $(python3 -c "print(($user+$sys)*1e6/$count)")"
      rss[$gen]+=" $((maxrss / 1024))"
    done
  done
  printf "| %-12s | %10s | %16s | %12s |\n" generator "req/s" "CPU µs/request" "peak RSS MB"
  printf "|%s|%s|%s|%s|\n" "--------------" "------------" "------------------" "--------------"
  for gen in traceforge oha wrk; do
    # shellcheck disable=SC2086
    printf "| %-12s | %10s | %16s | %12s |\n" "$gen" "$(median ${rps[$gen]})" "$(median ${cpu[$gen]})" "$(median ${rss[$gen]})"
  done
}

bench_scenarios() {
  echo
  echo "## traceforge run, each shipped scenario (wall time includes the scenario's own injected delays)"
  printf "| %-28s | %10s | %12s |\n" scenario "wall s" "peak RSS MB"
  printf "|%s|%s|%s|\n" "------------------------------" "------------" "--------------"
  for f in scenarios/*.toml; do
    local out=$WORK/time.txt
    /usr/bin/time -f "%e %M" -o "$out" "$TF" run "$f" --golden-dir "$WORK/golden" --accept >/dev/null 2>&1 || true
    read -r wall maxrss < <(tail -1 "$out")
    printf "| %-28s | %10s | %12s |\n" "$(basename "$f" .toml)" "$wall" "$((maxrss / 1024))"
  done
}

bench_delay() {
  echo
  echo "## Delay accuracy: a 50ms delay rule, 2000 requests at concurrency 20; excess over 50ms"
  local up tf
  up=$(start_tf upstream3 "$TF" upstream --listen 127.0.0.1:0)
  tf=$(start_tf proxy3 "$TF" proxy --listen 127.0.0.1:0 --upstream "$up" --fault delay:50ms)
  "$TF" load --url "$tf/api/resource" --n 2000 --concurrency 20 --output "$WORK/delay.csv" --format csv >/dev/null
  "$TF" load --url "$up/api/resource" --n 2000 --concurrency 20 --output "$WORK/direct.csv" --format csv >/dev/null
  python3 "$ROOT/bench/delay_excess.py" "$WORK/delay.csv" "$WORK/direct.csv" 50
}

bench_scale() {
  echo
  echo "## Scale: no faults, closed loop at concurrency 64, demo upstream in-process"
  printf "| %10s | %10s | %12s | %10s |\n" requests "wall s" "peak RSS MB" "req/s"
  printf "|%s|%s|%s|%s|\n" "------------" "------------" "--------------" "------------"
  for n in 10000 100000 1000000; do
    local out=$WORK/time.txt
    /usr/bin/time -f "%e %M" -o "$out" "$TF" run bench/memory.toml --golden-dir "$WORK/golden" --accept \
      --set load.requests=$n --output /dev/null --format jsonl >/dev/null 2>&1 || true
    read -r wall maxrss < <(tail -1 "$out")
    printf "| %10s | %10s | %12s | %10s |\n" "$n" "$wall" "$((maxrss / 1024))" "$(python3 -c "print(round($n/$wall))")"
  done
}

bench_virtual() {
  echo
  echo "## Virtual time: simulated time vs wall time"
  printf "| %-28s | %14s | %10s | %12s |\n" scenario "simulated" "wall s" "peak RSS MB"
  printf "|%s|%s|%s|%s|\n" "------------------------------" "----------------" "------------" "--------------"
  for f in scenarios/*.toml; do
    grep -q 'clock = "virtual"' "$f" || continue
    local out=$WORK/time.txt
    "$TF" run "$f" --golden-dir "$WORK/golden" --accept >"$WORK/virtual.txt" 2>&1 || true
    /usr/bin/time -f "%e %M" -o "$out" "$TF" run "$f" --golden-dir "$WORK/golden" >/dev/null 2>&1 || true
    read -r wall maxrss < <(tail -1 "$out")
    local simulated
    simulated=$(grep -m1 -o "elapsed: *[0-9.]*ms" "$WORK/virtual.txt" | grep -o "[0-9.]*" | python3 -c 'import sys; print(f"{float(sys.stdin.read())/1000:.0f} s")')
    printf "| %-28s | %14s | %10s | %12s |\n" "$(basename "$f" .toml)" "$simulated" "$wall" "$((maxrss / 1024))"
  done
}

# One `traceforge run` of a bench scenario, golden files and service logs kept in $WORK; extra
# arguments are passed on. Prints "wall_s attempts_per_s cpu_s" (attempts/s from the `elapsed:`
# line, CPU time user + system from /usr/bin/time).
tf_run_timed() {
  local file=$1 log=$WORK/run.txt times=$WORK/run-time.txt start end; shift
  start=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$times" "$TF" run "$file" --golden-dir "$WORK/golden" --accept \
    --logs "$WORK/logs" "$@" >"$log" 2>&1 || {
    echo "failed: traceforge run $file $*" >&2; cat "$log" >&2; exit 1
  }
  end=$(date +%s.%N)
  local rate user sys
  rate=$(grep -m1 -o 'elapsed: .*(\([0-9]*\) attempts/s' "$log" | grep -o '[0-9]* attempts/s' | cut -d' ' -f1)
  read -r user sys < <(tail -1 "$times")
  python3 -c "print(f'{$end-$start:.3f} $rate {$user+$sys:.2f}')"
}

bench_calls() {
  local n=${CALLS_N:-100000} c=32
  echo
  echo "## Call recording: the same closed loop (n=$n, c=$c, /api/resource, trace headers) through"
  echo "## the classic proxy (off, bench/calls-off.toml) and a named proxy (on, bench/calls-on.toml)"
  declare -A rate wall cpu
  local r mode variant w a u out=()
  for r in $(seq 1 "$ROUNDS"); do
    for variant in none jsonl; do
      for mode in off on; do
        out=()
        [[ $variant == jsonl ]] && out=(--output "$WORK/calls-$mode.jsonl" --format jsonl)
        read -r w a u < <(tf_run_timed "bench/calls-$mode.toml" --set load.requests="$n" "${out[@]}")
        rate[$mode-$variant]+=" $a"; wall[$mode-$variant]+=" $(python3 -c "print(round($n/$w))")"
        cpu[$mode-$variant]+=" $(python3 -c "print(f'{$u*1e6/$n:.1f}')")"
        echo "round $r, output $variant, recording $mode: $a req/s (elapsed line), $w s wall, $u s CPU" >&2
      done
    done
  done
  printf "| %-9s | %-9s | %8s | %10s | %14s | %-40s |\n" output recording "req/s" "req/s wall" "CPU µs/request" "req/s, each round"
  printf "|%s|%s|%s|%s|%s|%s|\n" "-----------" "-----------" "----------" "------------" "----------------" "------------------------------------------"
  for variant in none jsonl; do
    for mode in off on; do
      # shellcheck disable=SC2086
      printf "| %-9s | %-9s | %8.0f | %10.0f | %14s | %-40s |\n" "$variant" "$mode" "$(median ${rate[$mode-$variant]})" \
        "$(median ${wall[$mode-$variant]})" "$(median ${cpu[$mode-$variant]})" "$(echo ${rate[$mode-$variant]} | sed 's/ / \/ /g')"
    done
  done
  for variant in none jsonl; do
    # shellcheck disable=SC2086
    echo "output $variant: on / off, medians: throughput $(python3 -c "print(f'{$(median ${rate[on-$variant]})/$(median ${rate[off-$variant]}):.2f}')"), CPU per request $(python3 -c "print(f'{$(median ${cpu[on-$variant]})/$(median ${cpu[off-$variant]}):.2f}')"); throughput per round: $(python3 -c "
a='${rate[on-$variant]}'.split(); b='${rate[off-$variant]}'.split()
print(' / '.join(f'{float(x)/float(y):.2f}' for x, y in zip(a, b)))")"
  done

  echo
  echo "## Call recording, memory: bench/calls-on.toml, --output FILE --format jsonl (records streamed to disk)"
  printf "| %-9s | %10s | %10s | %12s | %10s | %12s |\n" recording requests "wall s" "peak RSS MB" "req/s" "output MB"
  printf "|%s|%s|%s|%s|%s|%s|\n" "-----------" "------------" "------------" "--------------" "------------" "--------------"
  local spec
  for spec in off:100000 on:100000 on:1000000; do
    mode=${spec%%:*}; n=${spec#*:}
    local time_out=$WORK/time.txt
    /usr/bin/time -v -o "$time_out" "$TF" run "bench/calls-$mode.toml" --golden-dir "$WORK/golden" --accept \
      --logs "$WORK/logs" --set load.requests="$n" --output "$WORK/mem.jsonl" --format jsonl >"$WORK/run.txt" 2>&1 || {
      echo "failed: calls-$mode n=$n" >&2; cat "$WORK/run.txt" >&2; exit 1
    }
    local maxrss wall_s
    maxrss=$(grep "Maximum resident set size" "$time_out" | grep -o "[0-9]*$")
    wall_s=$(grep "Elapsed (wall clock)" "$time_out" | grep -o "[0-9:.]*$" | python3 -c '
import sys; p=sys.stdin.read().strip().split(":"); print(round(sum(float(x)*60**i for i, x in enumerate(reversed(p))), 2))')
    printf "| %-9s | %10s | %10s | %12s | %10s | %12s |\n" "$mode" "$n" "$wall_s" \
      "$(python3 -c "print(f'{$maxrss/1024:.1f}')")" "$(python3 -c "print(round($n/$wall_s))")" \
      "$(python3 -c "import os; print(round(os.path.getsize('$WORK/mem.jsonl')/2**20))")"
    rm -f "$WORK/mem.jsonl"
  done

  echo
  echo "## Start-to-ready: one checkout with examples/checkout/app.py started and stopped"
  echo "## (bench/checkout-start.toml) vs the same request against a mock, no service (bench/checkout-nostart.toml)"
  local base="$TF run --golden-dir $WORK/golden --accept --logs $WORK/logs"
  # The third command is the Python start-up alone: the interpreter and the modules app.py imports.
  hyperfine --warmup 1 --runs "${START_RUNS:-10}" --style basic --export-json "$WORK/start.json" \
    -n "no service" "$base bench/checkout-nostart.toml" \
    -n "checkout service" "$base bench/checkout-start.toml" \
    -n "python3 imports" "python3 -c 'import json, os, sys, time, urllib.error, urllib.request, http.server'" \
    >"$WORK/hyperfine.txt" 2>&1 || {
    cat "$WORK/hyperfine.txt" >&2; exit 1
  }
  python3 - "$WORK/start.json" <<'PY'
import json, sys
rs = json.load(open(sys.argv[1]))["results"]
print(f"| {'command':<18} | {'mean ms':>9} | {'σ ms':>7} | {'median ms':>9} | {'min ms':>8} | {'max ms':>8} |")
print("|--------------------|-----------|---------|-----------|----------|----------|")
for r in rs:
    print(f"| {r['command']:<18} | {r['mean']*1e3:9.1f} | {r['stddev']*1e3:7.1f} | {r['median']*1e3:9.1f} | {r['min']*1e3:8.1f} | {r['max']*1e3:8.1f} |")
print(f"service start, ready and stop: +{(rs[1]['mean']-rs[0]['mean'])*1e3:.1f} ms (mean), +{(rs[1]['median']-rs[0]['median'])*1e3:.1f} ms (median)")
PY
}

read -ra parts <<<"${*:-proxy load scenarios delay scale virtual calls}"
need "${parts[@]}"
echo "machine: $(nproc) cores, $(python3 -c 'import os; print(round(os.sysconf("SC_PAGE_SIZE")*os.sysconf("SC_PHYS_PAGES")/2**30))') GiB, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
versions="$($TF --version)"
# Debian's `wrk -v` prints its version and exits 1.
command -v wrk >/dev/null && versions+=", $( (wrk -v 2>&1 || true) | head -1 | cut -d' ' -f1-2)"
[[ -x $NGINX ]] && versions+=", $($NGINX -v 2>&1)"
command -v oha >/dev/null && versions+=", $(oha --version)"
command -v hyperfine >/dev/null && versions+=", $(hyperfine --version)"
echo "versions: $versions"
for part in "${parts[@]}"; do "bench_$part"; done
