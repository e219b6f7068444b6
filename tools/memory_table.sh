#!/usr/bin/env bash
# Predicted peak memory (what stipple checks before a run) against the measured peak
# resident size, on the embedded stipple-mini models at several sizes, and on larger
# checkpoints when given: SD15=DIR (an SD 1.5-shaped pipeline folder, e.g. the one
# tools/bench_image.sh makes) and LLADA=DIR (a LLaDA-shaped folder, e.g. tools/bench_text.sh's).
# Prints a Markdown table for docs/robustness.md.
#   cargo build --release && tools/memory_table.sh
set -euo pipefail
cd "$(dirname "$0")/.."
S=$PWD/target/release/stipple
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
prompts() { for i in $(seq "$1"); do printf -- '--prompt prompt%s ' "$i"; done; }
cases=(
  "text:text hi"
  "text, 96 prompts:text $(prompts 96) --gen-len 64 --steps 8"
  "text, 256 prompts:text $(prompts 256) --gen-len 64 --steps 8"
  "text, 256 prompts, CFG:text $(prompts 256) --gen-len 64 --steps 8 --cfg 1"
  "text, 256 prompts, dual cache:text $(prompts 256) --gen-len 64 --steps 8 --cache dual --block-len 32"
  "image 32x32:image x --steps 2 --out o.png --overwrite"
  "image 128x128:image x --width 128 --height 128 --steps 2 --out o.png --overwrite"
  "image 256x256:image x --width 256 --height 256 --steps 2 --out o.png --overwrite"
  "image 512x512:image x --width 512 --height 512 --steps 2 --out o.png --overwrite"
  "image 256x256, batch 4:image x --width 256 --height 256 --batch 4 --steps 2 --out o.png --overwrite"
  "image 32x32, batch 16:image x --batch 16 --steps 2 --out o.png --overwrite"
  "music, one window:audio x --steps 2 --out o.wav --overwrite"
  "music 10 s:audio x --seconds 10 --steps 2 --strength 1 --out o.wav --overwrite"
  "music 60 s:audio x --seconds 60 --steps 2 --strength 1 --out o.wav --overwrite"
  "music 300 s:audio x --seconds 300 --steps 2 --strength 1 --out o.wav --overwrite"
  "music 600 s:audio x --seconds 600 --steps 1 --strength 1 --out o.wav --overwrite"
)
[ -n "${SD15:-}" ] && cases+=("SD 1.5-shaped, 256x256:image x --model $SD15 --steps 1 --width 256 --height 256 --out o.png --overwrite" "SD 1.5-shaped, 512x512:image x --model $SD15 --steps 1 --width 512 --height 512 --out o.png --overwrite")
[ -n "${LLADA:-}" ] && cases+=("LLaDA 134M-shaped, 4 prompts:text $(prompts 4) --model $LLADA --gen-len 64 --steps 8 --raw" "LLaDA 134M-shaped, 32 prompts, dual cache:text $(prompts 32) --model $LLADA --gen-len 64 --steps 8 --block-len 32 --cache dual --raw")
echo "| run | predicted peak | measured peak (resident) | predicted / measured |"
echo "|---|---|---|---|"
for c in "${cases[@]}"; do
  name=${c%%:*}; args=${c#*:}
  # shellcheck disable=SC2086
  line=$(cd "$W" && STIPPLE_MEMORY_REPORT=1 "$S" --seed 1 $args 2>&1 >/dev/null | grep '^memory:' || true)
  p=$(sed -E 's/.*predicted peak ([0-9]+).*/\1/' <<<"$line"); m=$(sed -E 's/.*measured peak resident ([0-9]+).*/\1/' <<<"$line")
  python3 -c "import sys; p,m=int(sys.argv[2]),int(sys.argv[3]); print(f'| {sys.argv[1]} | {p/2**20:.0f} MiB | {m/2**20:.0f} MiB | {p/m:.2f} |')" "$name" "$p" "$m"
done
