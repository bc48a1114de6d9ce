# shellcheck shell=bash
# Shared by the bench scripts: sourced after `set -euo pipefail` and `cd` to the repository.
#
#   source bench/lib.sh
#
# Sets ROOT, WORK (a temporary folder removed on exit) and TF (the release binary), and stops on
# exit, on SIGINT and on SIGTERM everything started with `start_tf` or `start_nginx`.

ROOT=$PWD
WORK=$(mktemp -d)
TF=$ROOT/target/release/traceforge
NGINX=$(command -v nginx || echo /usr/sbin/nginx)
PIDS=()

# Stops every server started with `start_tf` or `start_nginx` so far and forgets them (between
# the parts of a script too, so each has the cores to itself).
stop_servers() {
  # Servers started inside $(start_tf ...) are recorded here: a subshell cannot add to PIDS.
  if [[ -f $WORK/pids ]]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$WORK/pids"
    rm -f "$WORK/pids"
  fi
  local f
  for f in "$WORK"/nginx-*.pid; do
    if [[ -f $f ]]; then
      kill "$(cat "$f")" 2>/dev/null || true
      rm -f "$f"
    fi
  done
}

bench_cleanup() {
  for pid in "${PIDS[@]:-}"; do
    if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
  done
  stop_servers
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap bench_cleanup EXIT
# A signal ends the script (the EXIT trap then cleans up) instead of letting it carry on.
trap 'exit 130' INT
trap 'exit 143' TERM

# Installs Debian packages that are missing: apt_need PACKAGE...
apt_need() {
  (($#)) || return 0
  echo "==> installing $*"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

build_release() {
  echo "==> building traceforge (release)"
  cargo build --release --quiet
}

# Runs a command pinned to a CPU list, or unpinned when the list is empty: pin CPUS CMD...
pin() {
  local cpus=$1; shift
  if [[ -n $cpus ]]; then taskset -c "$cpus" "$@"; else "$@"; fi
}

# Starts a command in the background, waits for it to print its address, echoes the address. Its
# pid goes to $WORK/NAME.pid (taskset execs, so the pid is the server's). start_tf NAME CMD...
start_tf() {
  local name=$1 log=$WORK/$1.log; shift
  "$@" >"$log" 2>&1 &
  echo "$!" >>"$WORK/pids"
  echo "$!" >"$WORK/$name.pid"
  for _ in $(seq 1 100); do
    if grep -q "listening on" "$log"; then
      grep -m1 "listening on" "$log" | grep -o "http://[0-9.:]*"
      return
    fi
    sleep 0.05
  done
  echo "failed to start: $*" >&2; cat "$log" >&2; exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# Starts nginx with the given `http { }` body: start_nginx NAME CPUS WORKERS PORT HTTP_BODY.
# Its master's pid goes to $WORK/nginx-NAME.pid; `nginx_pids NAME` lists master and workers.
start_nginx() {
  local name=$1 cpus=$2 workers=$3 port=$4 body=$5
  cat >"$WORK/nginx-$name.conf" <<CONF
worker_processes $workers;
daemon on;
pid $WORK/nginx-$name.pid;
error_log $WORK/nginx-$name-error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 1000000;
$body
}
CONF
  pin "$cpus" "$NGINX" -c "$WORK/nginx-$name.conf" -p "$WORK"
  for _ in $(seq 1 100); do
    (exec 3<>/dev/tcp/127.0.0.1/"$port") 2>/dev/null && return
    sleep 0.05
  done
  echo "nginx $name did not start" >&2; cat "$WORK/nginx-$name-error.log" >&2; exit 1
}

nginx_pids() {
  local master
  master=$(cat "$WORK/nginx-$1.pid")
  echo "$master $(pgrep -P "$master" | tr '\n' ' ')"
}

# CPU time (user + system, every thread) of the given processes, in clock ticks.
cpu_ticks() {
  local total=0 pid u s
  for pid in "$@"; do
    read -r u s < <(awk '{print $14, $15}' "/proc/$pid/stat")
    total=$((total + u + s))
  done
  echo "$total"
}

median() { python3 -c 'import sys,statistics; v=[float(x) for x in sys.argv[1:]]; print(f"{statistics.median(v):.2f}")' "$@"; }

# "a / b / c" of a space-separated list.
each() { echo "$*" | sed 's/ / \/ /g'; }

# The ratio of two numbers, two decimals.
ratio() { python3 -c "print(f'{$1/$2:.2f}')"; }

# Per-round ratios of two space-separated lists: "1.10 / 0.95 / ...".
ratios() {
  python3 -c "
a='$1'.split(); b='$2'.split()
print(' / '.join(f'{float(x)/float(y):.2f}' for x, y in zip(a, b)))"
}

versions_line() {
  local versions
  versions="$($TF --version)"
  # Debian's `wrk -v` prints its version and exits 1.
  command -v wrk >/dev/null && versions+=", $( (wrk -v 2>&1 || true) | head -1 | cut -d' ' -f1-2)"
  [[ -x $NGINX ]] && versions+=", $($NGINX -v 2>&1)"
  command -v oha >/dev/null && versions+=", $(oha --version)"
  command -v k6 >/dev/null && versions+=", $(k6 version 2>/dev/null | head -1 | cut -d' ' -f1-2)"
  command -v hyperfine >/dev/null && versions+=", $(hyperfine --version)"
  echo "machine: $(nproc) cores, $(python3 -c 'import os; print(round(os.sysconf("SC_PAGE_SIZE")*os.sysconf("SC_PHYS_PAGES")/2**30))') GiB, $(uname -sr), load average $(cut -d' ' -f1-3 /proc/loadavg)"
  echo "versions: $versions"
}
