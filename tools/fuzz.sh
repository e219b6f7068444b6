#!/usr/bin/env bash
# Long fuzz runs of every parser of untrusted bytes (fuzz/src/targets.rs): SECONDS per target
# (default 600), JOBS targets at a time (default 2), release build. Prints each target's
# inputs run, distinct errors and findings; findings are saved under target/fuzz-findings/.
#   tools/fuzz.sh [SECONDS] [TARGET-FILTER]
# The batch-file target lives in the binary: it runs with the same budget.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-600}
FILTER=${2:-}
LOG=target/fuzz-$(date +%Y%m%d-%H%M%S).log
mkdir -p target
export STIPPLE_FUZZ_SECONDS=$SECONDS_PER_TARGET
status=0
cargo test --release --locked -p stipple-fuzz --test short_run -- --nocapture --test-threads "${JOBS:-2}" $FILTER 2>&1 | tee "$LOG" | grep -E '^fuzz |panicked|FAILED' || status=1
if [ -z "$FILTER" ] || [[ batch_file == *"$FILTER"* ]]; then
  cargo test --release --locked -p stipple --bin stipple fuzz_batch_lines -- --nocapture 2>&1 | tee -a "$LOG" | grep -E '^fuzz |panicked|FAILED' || status=1
fi
grep -q 'test result: FAILED' "$LOG" && status=1
echo "log: $LOG"
exit $status
