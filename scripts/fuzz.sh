#!/usr/bin/env bash
# Builds chatdrop's fuzz targets and runs each for SECONDS (default 30), or
# only the TARGETs named, from a copy of its committed seed corpus (so that
# the seeds in fuzz/corpus do not grow), then prints each target's
# executions, executions per second and coverage. Exits non-zero if any
# target crashed; the crashing input is kept in fuzz/artifacts/TARGET/.
# See docs/FUZZING.md.
#
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]
#
# Needs a nightly toolchain (`cargo +nightly`) and cargo-fuzz. Builds
# without a sanitizer unless CHATDROP_FUZZ_SANITIZER says otherwise (e.g.
# `address`): the fuzzed code is safe Rust, where panics are what the
# targets look for.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz="$root/fuzz"
seconds=30
if [[ $# -gt 0 && "$1" =~ ^[0-9]+$ ]]; then
  seconds="$1"
  shift
fi
if [[ "$seconds" -lt 1 ]]; then
  echo "fuzz.sh: SECONDS must be at least 1" >&2
  exit 2
fi
sanitizer="${CHATDROP_FUZZ_SANITIZER:-none}"

all=()
for f in "$fuzz"/fuzz_targets/*.rs; do
  all+=("$(basename "$f" .rs)")
done
if [[ $# -gt 0 ]]; then
  targets=("$@")
  for t in "${targets[@]}"; do
    if [[ ! -f "$fuzz/fuzz_targets/$t.rs" ]]; then
      echo "fuzz.sh: no target $t (targets: ${all[*]})" >&2
      exit 2
    fi
  done
else
  targets=("${all[@]}")
fi

cd "$root"
echo "== building ${#targets[@]} fuzz target(s) (sanitizer: $sanitizer)"
build_start=$(date +%s)
if [[ ${#targets[@]} -eq ${#all[@]} ]]; then
  cargo +nightly fuzz build --sanitizer "$sanitizer"
else
  for t in "${targets[@]}"; do
    cargo +nightly fuzz build --sanitizer "$sanitizer" "$t"
  done
fi
echo "== built in $(($(date +%s) - build_start)) s"

work="$(mktemp -d "${TMPDIR:-/tmp}/chatdrop-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# The value of `key: N` on a line of libFuzzer's.
field() {
  sed -n "s/.*[[:space:]]$1:[[:space:]]*\([0-9]*\).*/\1/p" <<<"$2" | head -n 1
}

rows=()
failed=()
for t in "${targets[@]}"; do
  corpus="$work/corpus-$t"
  mkdir -p "$corpus"
  if [[ -d "$fuzz/corpus/$t" ]]; then
    cp -R "$fuzz/corpus/$t/." "$corpus/"
  fi
  log="$work/$t.log"
  echo "== $t: ${seconds} s from $(find "$corpus" -type f | wc -l | tr -d ' ') seeds"
  status=ok
  # libFuzzer stops itself after -max_total_time; the outer timeout only
  # bounds a run that would not (one input taking longer than -timeout is
  # reported as a crash).
  if ! timeout --kill-after=10 $((seconds + 120)) \
    cargo +nightly fuzz run --sanitizer "$sanitizer" "$t" "$corpus" -- \
    -max_total_time="$seconds" -timeout=30 -print_final_stats=1 >"$log" 2>&1; then
    status=CRASH
    failed+=("$t")
    grep -E "panicked at|ERROR: libFuzzer|SUMMARY|Failing input|artifact_prefix|Test unit written" "$log" |
      sed "s/^/   $t: /" | head -n 12 || true
  fi
  execs=$(sed -n 's/^stat::number_of_executed_units:[[:space:]]*//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec:[[:space:]]*//p' "$log" | tail -n 1)
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  if [[ -z "$execs" ]]; then
    execs=$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$last")
  fi
  if [[ -z "$rate" ]]; then
    rate=$(field "exec/s" "$last")
  fi
  cov=$(field cov "$last")
  ft=$(field ft "$last")
  corp=$(sed -n 's/.*corp: \([0-9]*\)\/.*/\1/p' <<<"$last" | head -n 1)
  rows+=("$(printf '%-10s %-6s %12s %10s %7s %8s %7s' "$t" "$status" "${execs:--}" "${rate:--}" "${cov:--}" "${ft:--}" "${corp:--}")")
done

echo
echo "== fuzzing, ${seconds} s per target"
printf '%-10s %-6s %12s %10s %7s %8s %7s\n' target result executions exec/s cov ft corpus
for r in "${rows[@]}"; do
  echo "$r"
done
if [[ ${#failed[@]} -gt 0 ]]; then
  echo
  echo "fuzz.sh: crashed: ${failed[*]}; inputs in fuzz/artifacts/<target>/ (docs/FUZZING.md says what next)" >&2
  exit 1
fi
