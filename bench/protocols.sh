#!/usr/bin/env bash
# HTTPS and HTTP/2 through `traceforge proxy` vs nginx `proxy_pass`, configured the same way, on
# loopback only.
#
#   bash bench/protocols.sh                       # every case, about 2 minutes a round
#   bash bench/protocols.sh tls-h1 tls-h2         # some of: h1 tls-h1 tls-h2 h2c
#   ROUNDS=3 DURATION=5 CONNS=32 H2_CONNS=4 H2_STREAMS=8 bash bench/protocols.sh   # the knobs
#
# Layout, as in bench/run.sh: both proxies pinned to core 0 with one worker (traceforge --workers 1,
# nginx worker_processes 1); the demo upstream (plain HTTP/1.1, --workers 1) and the load generator
# (h2load, one thread) pinned to core 1. Both proxies serve the same certificate and key (ECDSA
# P-256, made here with openssl) on a TLS listener that offers ALPN h2 and http/1.1, and speak
# HTTP/1.1 to the upstream over pooled keep-alive connections.
#
# Cases (the same client against both proxies):
#   h1      plain HTTP/1.1, CONNS connections (the reference: run.sh's row, with h2load)
#   tls-h1  HTTPS, ALPN http/1.1 (h2load --h1), CONNS connections: TLS termination
#   tls-h2  HTTPS, ALPN h2, H2_CONNS connections x H2_STREAMS streams each
#   h2c     HTTP/2 with prior knowledge on a clear-text port, H2_CONNS x H2_STREAMS
# Throughput is h2load's; p50/p99 come from its per-request log (--log-file), closed loop. CPU
# µs/request is the proxy's own CPU time (user + system, /proc/PID/stat; nginx's master and worker)
# over the run divided by the requests done: less sensitive to other tenants than throughput.
# A and B are interleaved for ROUNDS rounds; medians, and the ratio of medians, are printed.
# Installs what it uses (nginx-light, nghttp2-client, openssl via apt). Everything started is
# stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-5}       # seconds per h2load run
CONNS=${CONNS:-32}            # HTTP/1.1 connections
H2_CONNS=${H2_CONNS:-4}       # HTTP/2 connections ...
H2_STREAMS=${H2_STREAMS:-8}   # ... and concurrent streams on each
# shellcheck source=bench/lib.sh
source bench/lib.sh

need() {
  local missing=()
  command -v h2load >/dev/null || missing+=(nghttp2-client)
  command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx-light)
  command -v openssl >/dev/null || missing+=(openssl)
  command -v taskset >/dev/null || missing+=(util-linux)
  apt_need "${missing[@]}"
  build_release
}

# Starts a server in the background (not in a subshell, so its pid is kept for the cleanup) and
# sets STARTED_URL to the address it prints and STARTED_PID. Arguments: a log name, then the command.
start_bg() {
  local log=$WORK/$1.log; shift
  : >"$log"
  "$@" >"$log" 2>&1 &
  STARTED_PID=$!
  PIDS+=("$STARTED_PID")
  for _ in $(seq 1 100); do
    if grep -q "listening on" "$log"; then
      STARTED_URL=$(grep -m1 "listening on" "$log" | grep -o "https\?://[0-9.:]*")
      return
    fi
    sleep 0.05
  done
  echo "failed to start: $*" >&2; cat "$log" >&2; exit 1
}

wait_port() {
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return
    sleep 0.05
  done
  echo "nothing listens on $1" >&2; exit 1
}

# A CA and a leaf certificate for 127.0.0.1 and localhost signed by it, ECDSA P-256 (the key type
# `traceforge proxy --tls` generates when given no certificate).
make_cert() {
  local d=$WORK/tls
  mkdir -p "$d"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
    -subj "/CN=bench CA" -keyout "$d/ca.key" -out "$d/ca.pem" 2>/dev/null
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=127.0.0.1" \
    -keyout "$d/key.pem" -out "$d/leaf.csr" 2>/dev/null
  printf "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n" >"$d/ext.cnf"
  openssl x509 -req -in "$d/leaf.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial -days 2 \
    -extfile "$d/ext.cnf" -out "$d/cert.pem" 2>/dev/null
}

# nginx with one worker on core 0: proxy_pass to the upstream over pooled keep-alive HTTP/1.1
# connections, on a plain port (HTTP/1.1), a TLS port (ALPN h2 and http/1.1) and a clear-text
# HTTP/2 port (prior knowledge). Arguments: upstream URL, the three ports.
start_nginx() {
  cat >"$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  # TraceForge keeps a client connection for any number of requests; nginx's default closes it
  # after 1000, which over TLS would add a handshake every 1000 requests to nginx's side only.
  keepalive_requests 1000000;
  upstream backend { server ${1#http://}; keepalive 64; }
  server {
    listen 127.0.0.1:$2;
    listen 127.0.0.1:$3 ssl http2;
    listen 127.0.0.1:$4 http2;
    ssl_certificate $WORK/tls/cert.pem;
    ssl_certificate_key $WORK/tls/key.pem;
    ssl_protocols TLSv1.2 TLSv1.3;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
  # In the foreground of a background job, so it is this script's child: stopped and reaped here.
  taskset -c 0 "$NGINX" -c "$WORK/nginx.conf" -p "$WORK" &
  NGINX_PID=$!
  PIDS+=("$NGINX_PID")
  wait_port "$2"; wait_port "$3"; wait_port "$4"
}

# CPU time (user + system) of the given processes, all their threads, in clock ticks.
cpu_ticks() {
  local pid total=0
  for pid in "$@"; do
    # Fields 14 and 15 of /proc/PID/stat, counted after the command name (which may hold spaces).
    total=$((total + $(sed 's/^.*) //' "/proc/$pid/stat" | awk '{ print $12 + $13 }')))
  done
  echo "$total"
}

# One h2load run against URL with the case's flags, the proxy's processes given after the URL;
# prints "req_per_s p50_ms p99_ms cpu_us_per_request". The CPU time is the proxy's (nginx: master
# and worker) over the whole h2load run, connection set-up included, divided by the requests done.
h2load_run() {
  local case=$1 url=$2 log=$WORK/h2load-requests.tsv out=$WORK/h2load.txt flags=() before after
  shift 2
  case $case in
    h1 | tls-h1) flags=(--h1 -c "$CONNS" -m 1) ;;
    tls-h2 | h2c) flags=(-c "$H2_CONNS" -m "$H2_STREAMS") ;;
  esac
  rm -f "$log"
  before=$(cpu_ticks "$@")
  # A proxy that stops answering must not hold the script: h2load's -D alone would wait for it.
  # In the background and waited for, so a signal to this script ends it at once too.
  timeout $((DURATION + 30)) taskset -c 1 h2load -t 1 "${flags[@]}" -D "$DURATION" --log-file="$log" "$url" >"$out" 2>&1 &
  local h2load_pid=$!
  PIDS+=("$h2load_pid")
  wait "$h2load_pid" || {
    echo "h2load failed: $case $url" >&2; cat "$out" >&2; exit 1
  }
  after=$(cpu_ticks "$@")
  python3 - "$out" "$log" "$((after - before))" "$(getconf CLK_TCK)" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
done = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored", text)
if not done or int(done.group(5)) or int(done.group(6)) or int(done.group(4)) == 0:
    sys.exit("h2load reported failures:\n" + text)
statuses = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text)
if any(int(statuses.group(i)) for i in (2, 3, 4)):
    sys.exit("not every response was a 2xx:\n" + text)
rps = float(re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", text).group(1))
micros = sorted(int(line.split("\t")[2]) for line in open(sys.argv[2]) if line.strip())
pick = lambda q: micros[min(len(micros) - 1, int(q * len(micros)))] / 1000
cpu_us = int(sys.argv[3]) / int(sys.argv[4]) * 1e6 / int(done.group(3))
print(f"{rps:.0f} {pick(0.50):.3f} {pick(0.99):.3f} {cpu_us:.1f}")
PY
}

# What a TLS listener negotiates with h2load's client for a case: protocol, cipher, ALPN.
negotiated() {
  local case=$1 url=$2 flags=()
  [[ $case == tls-h1 ]] && flags=(--h1)
  timeout 10 h2load -n 1 -c 1 "${flags[@]}" "$url" 2>&1 | grep -E "^(TLS Protocol|Cipher|Server Temp Key|Application protocol)" | tr '\n' ' ' | sed 's/  */ /g'
}

bench_protocols() {
  local cases=("$@")
  local up tf tf_tls tf_pid tf_tls_pid nginx_plain nginx_tls nginx_h2c nginx_pids
  start_bg upstream taskset -c 1 "$TF" upstream --listen 127.0.0.1:0 --workers 1
  up=$STARTED_URL
  start_bg proxy taskset -c 0 "$TF" proxy --listen 127.0.0.1:0 --upstream "$up" --workers 1
  tf=$STARTED_URL tf_pid=$STARTED_PID
  start_bg proxy-tls taskset -c 0 "$TF" proxy --listen 127.0.0.1:0 --upstream "$up" --workers 1 \
    --tls-cert "$WORK/tls/cert.pem" --tls-key "$WORK/tls/key.pem"
  tf_tls=$STARTED_URL tf_tls_pid=$STARTED_PID
  nginx_plain=$(free_port); nginx_tls=$(free_port); nginx_h2c=$(free_port)
  start_nginx "$up" "$nginx_plain" "$nginx_tls" "$nginx_h2c"
  nginx_pids="$NGINX_PID $(pgrep -P "$NGINX_PID" | tr '\n' ' ')"
  local path=/api/resource
  url_of() { # case target
    case $1-$2 in
      h1-traceforge | h2c-traceforge) echo "$tf$path" ;;
      tls-*-traceforge) echo "$tf_tls$path" ;;
      h1-nginx) echo "http://127.0.0.1:$nginx_plain$path" ;;
      tls-*-nginx) echo "https://127.0.0.1:$nginx_tls$path" ;;
      h2c-nginx) echo "http://127.0.0.1:$nginx_h2c$path" ;;
    esac
  }
  pids_of() { # case target
    case $1-$2 in
      h1-traceforge | h2c-traceforge) echo "$tf_pid" ;;
      tls-*-traceforge) echo "$tf_tls_pid" ;;
      *-nginx) echo "$nginx_pids" ;;
    esac
  }
  local c t
  for c in "${cases[@]}"; do
    [[ $c == tls-* ]] || continue
    for t in traceforge nginx; do echo "negotiated, $c, $t: $(negotiated "$c" "$(url_of "$c" "$t")")"; done
  done
  declare -A rps p50 p99 cpu
  local r a b d e
  for r in $(seq 1 "$ROUNDS"); do
    for c in "${cases[@]}"; do
      for t in traceforge nginx; do
        # Not in a subshell, so h2load's pid reaches the cleanup.
        # shellcheck disable=SC2046
        h2load_run "$c" "$(url_of "$c" "$t")" $(pids_of "$c" "$t") >"$WORK/result.txt"
        read -r a b d e <"$WORK/result.txt"
        rps[$c-$t]+=" $a"; p50[$c-$t]+=" $b"; p99[$c-$t]+=" $d"; cpu[$c-$t]+=" $e"
        echo "round $r, $c, $t: $a req/s, p50 $b ms, p99 $d ms, proxy CPU $e µs/request" >&2
      done
    done
  done
  echo
  echo "## h2load -t1 -D$DURATION; h1: --h1 -c$CONNS -m1; h2: -c$H2_CONNS -m$H2_STREAMS; medians of $ROUNDS interleaved rounds"
  printf "| %-7s | %-10s | %10s | %8s | %8s | %14s | %-32s |\n" case target "req/s" "p50 ms" "p99 ms" "CPU µs/request" "req/s, each round"
  printf "|%s|%s|%s|%s|%s|%s|%s|\n" "---------" "------------" "------------" "----------" "----------" "----------------" "----------------------------------"
  for c in "${cases[@]}"; do
    for t in traceforge nginx; do
      # shellcheck disable=SC2086
      printf "| %-7s | %-10s | %10.0f | %8s | %8s | %14s | %-32s |\n" "$c" "$t" "$(median ${rps[$c-$t]})" \
        "$(median ${p50[$c-$t]})" "$(median ${p99[$c-$t]})" "$(median ${cpu[$c-$t]})" "$(echo ${rps[$c-$t]} | sed 's/ / \/ /g')"
    done
  done
  echo
  for c in "${cases[@]}"; do
    # shellcheck disable=SC2086
    echo "$c: traceforge / nginx throughput $(python3 -c "print(f'{$(median ${rps[$c-traceforge]})/$(median ${rps[$c-nginx]}):.2f}')"), per round: $(python3 -c "
a='${rps[$c-traceforge]}'.split(); b='${rps[$c-nginx]}'.split()
print(' / '.join(f'{float(x)/float(y):.2f}' for x, y in zip(a, b)))"); CPU per request $(python3 -c "print(f'{$(median ${cpu[$c-traceforge]})/$(median ${cpu[$c-nginx]}):.2f}')")"
  done
  kill "$NGINX_PID"; wait "$NGINX_PID" 2>/dev/null || true
}

read -ra cases <<<"${*:-h1 tls-h1 tls-h2 h2c}"
for c in "${cases[@]}"; do
  case $c in h1 | tls-h1 | tls-h2 | h2c) ;; *) echo "unknown case: $c (h1 tls-h1 tls-h2 h2c)" >&2; exit 2 ;; esac
done
need
make_cert
echo "machine: $(nproc) cores, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "versions: $($TF --version), $($NGINX -v 2>&1 | cut -d' ' -f3), $(h2load --version | head -1), $(openssl version | cut -d' ' -f1-2)"
bench_protocols "${cases[@]}"
