#!/usr/bin/env bash
# Runs the AFL fuzz targets for a bounded time each and turns every crash into a regression test.
#
#   fuzz/run.sh [--smoke] [SECONDS_PER_TARGET] [TARGET...]
#
#   SECONDS_PER_TARGET  how long each target runs (default 60; 10 with --smoke)
#   TARGET              some of: scenario_bytes scenario_structured compact overrides proxy_http
#                       upstream_http (default: all)
#   --smoke             CI mode: the corpus in fuzz/corpus/ is read but not updated
#   FUZZ_EXECS=N        also stop a target after about N executions
#
# Each target starts from fuzz/corpus/<target>/ and works in fuzz/out/<target>/ (not committed).
# Without --smoke, the new inputs that reach new code are merged back into fuzz/corpus/<target>/
# (minimised with afl-cmin). Every crash is minimised, printed with its panic message and copied
# to fuzz/regressions/<target>/, which `cargo test` replays (tests/fuzz_regressions.rs). An input
# AFL reports as a hang is run again on its own for 60 s: if it still does not finish, it is a
# real hang and is kept the same way. The script exits 1 when it kept any.
#
# Installs cargo-afl when it is missing. Runs afl-fuzz at nice 10 (the machine is shared).
set -euo pipefail
cd "$(dirname "$0")"

ALL_TARGETS=(scenario_bytes scenario_structured compact overrides proxy_http upstream_http)
smoke=false
seconds=""
targets=()
for arg in "$@"; do
  case "$arg" in
    --smoke) smoke=true ;;
    -h | --help)
      sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'
      exit 0
      ;;
    '' | *[!0-9]*) targets+=("$arg") ;;
    *) seconds="$arg" ;;
  esac
done
if [ -z "$seconds" ]; then
  if $smoke; then seconds=10; else seconds=60; fi
fi
[ ${#targets[@]} -gt 0 ] || targets=("${ALL_TARGETS[@]}")
for t in "${targets[@]}"; do
  [[ " ${ALL_TARGETS[*]} " == *" $t "* ]] || {
    echo "unknown target $t; targets: ${ALL_TARGETS[*]}" >&2
    exit 2
  }
done

# ---- AFL: cargo-afl on stable Rust ----
if ! cargo afl --version >/dev/null 2>&1; then
  echo "==> installing cargo-afl"
  cargo install --locked cargo-afl
fi
# AFL++ itself is built once per toolchain (`afl-fuzz -h` exits 1, so look at what it prints).
afl_help=$(cargo afl fuzz -h 2>&1 || true)
if [[ "$afl_help" != *afl-fuzz* ]]; then
  echo "==> building AFL++"
  cargo afl config --build
fi

echo "==> building the targets"
cargo afl build --release --locked --bins
bin=target/release

# A container has no CPU frequency governor AFL can read, and may have a core_pattern AFL
# cannot change: neither matters for finding crashes. No UI: the output goes to logs.
export AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_NO_UI=1
# Other builds share the cores: do not pin a CPU.
export AFL_NO_AFFINITY=1
# Calibrate each new input briefly: time limits here are short.
export AFL_FAST_CAL=1

kept=0
table="| target | executions | exec/s | seconds | crashes | hangs |"$'\n'"| --- | ---: | ---: | ---: | ---: | ---: |"
stat() { sed -n "s/^$1 *: *//p" "$2" | head -1; }

for t in "${targets[@]}"; do
  out="out/$t"
  rm -rf "$out"
  mkdir -p "$out" "regressions/$t"
  echo "==> $t: ${seconds}s from corpus/$t ($(find "corpus/$t" -type f | wc -l) inputs)"
  limit=(-V "$seconds")
  [ -n "${FUZZ_EXECS:-}" ] && limit+=(-E "$FUZZ_EXECS")
  # -t: a generous per-input time limit in ms; the targets bound themselves on the virtual
  # clock, so only a real busy loop runs into it.
  nice -n 10 cargo afl fuzz -i "corpus/$t" -o "$out" -t 2000 -m none "${limit[@]}" \
    -- "$bin/$t" >"$out/afl.log" 2>&1 || {
    echo "afl-fuzz failed on $t; the end of its log:" >&2
    tail -20 "$out/afl.log" >&2
    exit 3
  }
  stats="$out/default/fuzzer_stats"
  execs=$(stat execs_done "$stats")
  runtime=$(stat run_time "$stats")
  crashes=$(stat saved_crashes "$stats")
  hangs=$(stat saved_hangs "$stats")
  rate=$(awk -v e="$execs" -v s="$runtime" 'BEGIN { printf "%d", (s > 0 ? e / s : 0) }')
  table+=$'\n'"| $t | $execs | $rate | $runtime | $crashes | $hangs |"
  echo "    $execs executions, $rate/s, ${runtime}s, $crashes crashes, $hangs hangs"

  # Crashes: minimise, show, keep.
  for crash in "$out"/default/crashes/id:*; do
    [ -f "$crash" ] || continue
    small="$out/$(basename "$crash" | cut -d, -f1).min"
    timeout 120 cargo afl tmin -i "$crash" -o "$small" -- "$bin/$t" >/dev/null 2>&1 || cp "$crash" "$small"
    name="crash-$(sha1sum "$small" | cut -c1-12)"
    cp "$small" "regressions/$t/$name"
    kept=$((kept + 1))
    echo "    CRASH kept as fuzz/regressions/$t/$name:"
    # The panic line and its message (the subshell keeps the shell's "Aborted" notice out).
    (RUST_BACKTRACE=0 "$bin/$t" <"$small" 2>&1 || true) 2>/dev/null | grep -A1 "panicked" | sed 's/^/      /' || true
  done
  # Hangs: AFL counts any input slower than -t; only one that still does not finish on its own
  # (with room for a busy machine) is real.
  for hang in "$out"/default/hangs/id:*; do
    [ -f "$hang" ] || continue
    if ! timeout 60 "$bin/$t" <"$hang" >/dev/null 2>&1; then
      name="hang-$(sha1sum "$hang" | cut -c1-12)"
      cp "$hang" "regressions/$t/$name"
      kept=$((kept + 1))
      echo "    HANG kept as fuzz/regressions/$t/$name"
    fi
  done

  # The corpus: what this run found, merged and minimised (not in CI).
  if ! $smoke; then
    merged="$out/merged"
    mkdir -p "$merged"
    cp "corpus/$t"/* "$merged"/ 2>/dev/null || true
    cp "$out"/default/queue/id:* "$merged"/ 2>/dev/null || true
    if nice -n 10 cargo afl cmin -i "$merged" -o "$out/cmin" -t 5000 -- "$bin/$t" >"$out/cmin.log" 2>&1; then
      rm -rf "corpus/$t"
      mkdir -p "corpus/$t"
      for f in "$out"/cmin/*; do
        # Seeds keep their names; AFL's finds (id:...,src:...) are named by their content.
        name=$(basename "$f")
        [[ "$name" == id:* ]] && name="$(sha1sum "$f" | cut -c1-16)"
        cp "$f" "corpus/$t/$name"
      done
      echo "    corpus/$t: $(find "corpus/$t" -type f | wc -l) inputs after afl-cmin"
    else
      echo "    afl-cmin failed (see $out/cmin.log); corpus/$t left as it was"
    fi
  fi
done

echo
echo "$table"
echo "$table" >out/campaign.md
if [ "$kept" -gt 0 ]; then
  echo
  echo "$kept new failing input(s) in fuzz/regressions/; cargo test replays them." >&2
  exit 1
fi
