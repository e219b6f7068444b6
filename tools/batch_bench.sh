#!/usr/bin/env bash
# jobs/s of `stipple batch` for 100 image jobs on the embedded image model, one job at a
# time (--group 1) and made as model batches (--group 8, 16): REPEATS runs each (default 3),
# the median reported, as a Markdown table. Run it on a quiet machine:
#   tools/batch_bench.sh [REPEATS]
set -euo pipefail
cd "$(dirname "$0")/.."
repeats=${1:-3}
cargo build --release --locked -q
bin=target/release/stipple
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - "$work/jobs.jsonl" <<'PY'
import json, sys
prompts = ["a red heart", "a smiling fox face", "a green tree", "a blue star", "a yellow sun",
           "a pink flower", "a black cat", "a white cloud", "a brown dog", "an orange fish"]
with open(sys.argv[1], "w") as f:
    for i in range(100):
        f.write(json.dumps({"id": f"img{i:03d}", "kind": "image", "prompt": prompts[i % 10], "steps": 20}) + "\n")
PY
cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')
path=$(grep -qw avx512f /proc/cpuinfo && echo avx512 || (grep -qw avx2 /proc/cpuinfo && echo avx2 || echo portable))
echo "100 image jobs (stipple-mini image, 32x32, 20 steps, guidance 7.5), $cpu, $(nproc) cores, kernel path $path, median of $repeats"
echo
echo "| --group | jobs/s | seconds |"
echo "|---|---|---|"
for group in 1 8 16; do
  rates=()
  for r in $(seq "$repeats"); do
    rm -rf "$work/out"
    rates+=("$("$bin" --json batch "$work/jobs.jsonl" --out "$work/out" --group "$group" 2>/dev/null | tail -1 | python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["done"] == 100, d; print(d["jobs_per_s"])')")
  done
  median=$(printf '%s\n' "${rates[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  printf '| %s | %.2f | %.1f |\n' "$group" "$median" "$(python3 -c "print(100/$median)")"
done
