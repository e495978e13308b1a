#!/usr/bin/env bash
# Runs each cargo-fuzz target (fuzz/: loader, nflog, listing) for RUNS
# executions (default 1,000,000) and prints, per target, executions, exec/s,
# wall time and the result. Needs the nightly toolchain (`rustup toolchain
# install nightly`); installs cargo-fuzz if missing. docs/testing.md
# ("Fuzzing") explains the targets and lists the figures.
#
#   hack/fuzz.sh [RUNS]
#
# Environment:
#   FUZZ_TARGETS   targets to run, in order (default "nflog listing loader")
#   FUZZ_MAX_TIME  seconds per target before it stops short of RUNS (default 3600)
#   FUZZ_RSS_MB    memory limit per target in MiB, over it counts as a leak/OOM (default 2048)
#   FUZZ_TIMEOUT   seconds one input may take before it counts as a hang (default 10)
#   FUZZ_JOBS      cargo build jobs (default: cargo's)
#   FUZZ_SANITIZER cargo fuzz's -s: address (default) or none (no ASan/LSan:
#                  several times the exec rate; memory growth is still caught
#                  by -rss_limit_mb, and src/ has no unsafe parsing code)
#   FUZZ_MAX_LEN   libFuzzer's -max_len in bytes (default: libFuzzer's, from
#                  the seeds); longer seeds are truncated to it
#
# The targets are built with cargo fuzz's defaults: release with debug
# assertions and AddressSanitizer, whose LeakSanitizer reports a leak at the
# end of the run (and -rss_limit_mb catches a runaway heap during it).
# Seeds come from testdata/ and rulesets/ (examples/fuzz_seeds.rs); the
# corpus grows in fuzz/corpus-generated/<target>/, crashes land in
# fuzz/artifacts/<target>/ with the run's log (both ignored by git).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=${1:-1000000}
targets=${FUZZ_TARGETS:-"nflog listing loader"}
max_time=${FUZZ_MAX_TIME:-3600}
rss_mb=${FUZZ_RSS_MB:-2048}
timeout=${FUZZ_TIMEOUT:-10}
jobs=()
[ -n "${FUZZ_JOBS:-}" ] && jobs=(--jobs "$FUZZ_JOBS")
sanitizer=${FUZZ_SANITIZER:-address}
extra=()
[ -n "${FUZZ_MAX_LEN:-}" ] && extra=(-max_len="$FUZZ_MAX_LEN")

command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo +nightly fuzz build -s "$sanitizer" "${jobs[@]}"
triple=$(rustc +nightly -vV | sed -n 's/^host: //p')
bin=fuzz/target/$triple/release

corpus=fuzz/corpus-generated
cargo run --quiet "${jobs[@]}" --example fuzz_seeds -- "$corpus/seeds"

status=0
summary=()
for t in $targets; do
  mkdir -p "$corpus/$t" "fuzz/artifacts/$t"
  log=fuzz/artifacts/$t/run.log
  echo "== $t: $runs runs (at most ${max_time}s), log in $log"
  start=$(date +%s.%N)
  set +e
  # The first directory receives new inputs; the seeds are only read.
  "$bin/$t" "$corpus/$t" "$corpus/seeds/$t" \
    -runs="$runs" -max_total_time="$max_time" -rss_limit_mb="$rss_mb" \
    -timeout="$timeout" -artifact_prefix="fuzz/artifacts/$t/" \
    -print_final_stats=1 "${extra[@]}" >"$log" 2>&1
  rc=$?
  set -e
  wall=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { print e - s }')
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$log" | tail -n 1)
  if [ "$rc" -eq 0 ] && [ "${execs:-0}" -ge "$runs" ]; then
    result=ok
  elif [ "$rc" -eq 0 ]; then
    result="stopped by the ${max_time}s limit (no crash)"
  else
    status=1
    result="FAILED (exit $rc): $(grep -m1 -E 'ERROR: (libFuzzer|AddressSanitizer|LeakSanitizer)|panicked at' "$log" || echo 'see log')"
    result+="; artifact: $(grep -m1 -o "fuzz/artifacts/$t/[a-z]*-[0-9a-f]*" "$log" || echo none)"
  fi
  line=$(printf '%-8s %10s execs %8s exec/s %8.1f s  peak %5s MB  %s' "$t" "${execs:-?}" "${rate:-?}" "$wall" "${rss:-?}" "$result")
  echo "$line"
  summary+=("$line")
done
echo "== summary (runs=$runs, sanitizer=$sanitizer${FUZZ_MAX_LEN:+, max_len=$FUZZ_MAX_LEN})"
printf '%s\n' "${summary[@]}"
exit "$status"
