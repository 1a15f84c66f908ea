#!/usr/bin/env bash
# Smoke-runs every cargo-fuzz target for a few seconds each, starting from the
# committed seed corpus (fuzz/corpus/<target>/seed-*) and the dictionary.
# Fails on any crash, panic, leak or timeout libFuzzer reports.
#
#   bash fuzz/smoke.sh [SECONDS_PER_TARGET]     (default 30)
#
# Skips, saying so and exiting 0, when the nightly toolchain or cargo-fuzz is
# not installed: fuzzing needs nightly (-Zsanitizer), the crate itself does not.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-30}"
targets=(header token scope record verify scan)

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz smoke: SKIPPED — the nightly toolchain is not installed (rustup toolchain install nightly)"
  exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz smoke: SKIPPED — cargo-fuzz is not installed (cargo install cargo-fuzz --locked)"
  exit 0
fi

echo "fuzz smoke: ${#targets[@]} targets, ${seconds}s each ($(cargo +nightly fuzz --version), $(rustc +nightly --version))"
cargo +nightly fuzz build

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# One libFuzzer process per core at a time (FUZZ_JOBS overrides): each is
# single-threaded, so running them side by side keeps every target's
# executions and divides the wall time.
jobs="${FUZZ_JOBS:-$(nproc 2>/dev/null || echo 1)}"
((jobs >= 1)) || jobs=1

# Runs one target; its exit status is libFuzzer's.
run_target() {
  local t="$1"
  mkdir -p "$work/$t" "artifacts/$t"
  # New inputs go to the scratch corpus (first directory); the seeds are read only.
  cargo +nightly fuzz run "$t" "$work/$t" "corpus/$t" -- \
    -dict=dict/authorization.dict -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 >"$work/$t.log" 2>&1
}

# Reports one finished target, adding it to `failed` if it failed.
report() {
  local t="$1" rc="$2" log="$work/$1.log" runs
  if ((rc == 0)); then
    runs="$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')"
    echo "fuzz smoke: $t ok ($runs executions)"
  else
    echo "fuzz smoke: $t FAILED; last lines of its log:"
    tail -n 40 "$log"
    failed+=("$t")
  fi
}

echo "fuzz smoke: ${jobs} at a time"
failed=()
for ((i = 0; i < ${#targets[@]}; i += jobs)); do
  batch=("${targets[@]:i:jobs}")
  pids=()
  for t in "${batch[@]}"; do
    run_target "$t" &
    pids+=($!)
  done
  for k in "${!batch[@]}"; do
    rc=0
    wait "${pids[$k]}" || rc=$?
    report "${batch[$k]}" "$rc"
  done
done

if ((${#failed[@]})); then
  echo "fuzz smoke: FAILED targets: ${failed[*]} (crash inputs under fuzz/artifacts/<target>/)"
  exit 1
fi
echo "fuzz smoke: all targets passed"
