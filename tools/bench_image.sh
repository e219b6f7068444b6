#!/usr/bin/env bash
# Image speed and memory benchmark, same machine and same run, stipple against diffusers
# (PyTorch 2.11, the same thread count):
#   1. one UNet evaluation of a Stable Diffusion 1.5-shaped UNet (real config, random
#      weights, f32), batch 2 (one CFG step), 64x64 latents (a 512x512 image): ROUNDS
#      rounds, each a diffusers run of 3 then a stipple run of 3 (`stipple bench image`),
#      so both see the same machine load; medians per round and overall;
#   2. a whole 512x512 txt2img generation (STEPS steps of the model's PNDM, CFG 7.5) by
#      each, under /usr/bin/time for the wall time and peak RSS.
#   PYTHON=.venv-ref/bin/python tools/bench_image.sh [ROUNDS] [STEPS]
# PYTHON: a Python with the packages tools/bench_image_reference.py needs, e.g.
#   python3 -m venv .venv-ref && .venv-ref/bin/pip install torch==2.11.0 diffusers==0.42.1 transformers==5.17.0
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
STEPS=${2:-20}
PY=${PYTHON:-python3}
OUT=target/bench
MODEL=${MODEL:-$OUT/sd15-random}
mkdir -p "$OUT"
cargo build --release --quiet
[ -f "$MODEL/model_index.json" ] || "$PY" tools/bench_image_reference.py make "$MODEL" > /dev/null
for r in $(seq "$ROUNDS"); do
  "$PY" tools/bench_image_reference.py unet "$MODEL" 3 2>/dev/null | tail -1 > "$OUT/image-ref-$r.json"
  ./target/release/stipple --json bench image --model "$MODEL" --runs 3 --reference "$OUT/image-ref-$r.json" > "$OUT/image-stipple-$r.json"
done
/usr/bin/time -f '{"max_rss_kb": %M, "wall_s": %e}' -o "$OUT/image-e2e-ref-time.json" \
  "$PY" tools/bench_image_reference.py e2e "$MODEL" "$STEPS" 2>/dev/null | tail -1 > "$OUT/image-e2e-ref.json"
rm -f "$OUT/image-e2e.png"
/usr/bin/time -f '{"max_rss_kb": %M, "wall_s": %e}' -o "$OUT/image-e2e-stipple-time.json" \
  ./target/release/stipple --json --seed 0 image "a photo of a red cat" --model "$MODEL" --steps "$STEPS" \
  --width 512 --height 512 --out "$OUT/image-e2e.png" > "$OUT/image-e2e-stipple.json"
python3 - "$OUT" "$ROUNDS" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
refs, ours = [], []
for r in range(1, rounds + 1):
    ref = json.load(open(f"{out}/image-ref-{r}.json"))
    s = json.load(open(f"{out}/image-stipple-{r}.json"))
    refs.append(ref["median_s"]); ours.append(s["median_s"])
    print(f"round {r}: diffusers {ref['median_s']:.2f} s/step, stipple {s['median_s']:.2f} s/step, diffusers/stipple {ref['median_s'] / s['median_s']:.2f}x")
print(f"median of rounds: diffusers {statistics.median(refs):.2f} s, stipple {statistics.median(ours):.2f} s "
      f"(ratio of medians {statistics.median(refs) / statistics.median(ours):.2f}x)")
for who in ("ref", "stipple"):
    t = json.load(open(f"{out}/image-e2e-{who}-time.json"))
    j = json.load(open(f"{out}/image-e2e-{who}.json" if who == "stipple" else f"{out}/image-e2e-ref.json"))
    name = "diffusers" if who == "ref" else "stipple"
    gen = j.get("generate_s", j.get("elapsed_ms", 0) / 1000)
    print(f"{name:9} 512x512 end to end: {t['wall_s']:.1f} s wall (process), generation {gen:.1f} s, peak RSS {t['max_rss_kb'] / 1048576:.2f} GiB")
PY
