#!/usr/bin/env bash
# Writes the fuzz seed corpus under fuzz/corpus/<target>/: small valid inputs of each format
# (the fuzzer also starts from fixtures of the real layouts, named in fuzz/src/targets.rs).
# Needs python3 and a built stipple (for the PNGs it writes).
#   cargo build --release && tools/make_fuzz_corpus.sh
set -euo pipefail
cd "$(dirname "$0")/.."
C=fuzz/corpus
S=${STIPPLE:-target/release/stipple}
mkdir -p $C/{safetensors,shard_index,image_config,bpe_files,chat_template,infill_template,wav,png_metadata,spectrogram_png}
python3 - "$C" <<'PY'
import json, struct, sys, os
c = sys.argv[1]
def safetensors(path, tensors, meta=None):
    header, data = {}, b""
    if meta: header["__metadata__"] = meta
    for name, (dtype, shape, raw) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(raw)]}
        data += raw
    h = json.dumps(header).encode()
    open(path, "wb").write(struct.pack("<Q", len(h)) + h + data)
safetensors(f"{c}/safetensors/two.safetensors", {"w": ("F32", [2, 2], struct.pack("<4f", 1, 2, 3, 4)), "b": ("F16", [2], b"\x00\x3c\x00\x40")})
safetensors(f"{c}/safetensors/meta.safetensors", {"ids": ("I64", [3], struct.pack("<3q", 1, 2, 3)), "e": ("BF16", [0], b"")}, {"format": "pt"})
json.dump({"metadata": {"total_size": 16}, "weight_map": {"a": "model.safetensors", "b": "model.safetensors"}}, open(f"{c}/shard_index/text.json", "w"))
json.dump({"weight_map": {"encoder.conv_in.weight": "part-1.safetensors", "decoder.conv_out.weight": "part-1.safetensors"}}, open(f"{c}/shard_index/vae.json", "w"))
sd = "image/tests/fixtures/sd1-tiny"
for i, f in enumerate(["model_index.json", "unet/config.json", "vae/config.json", "text_encoder/config.json", "scheduler/scheduler_config.json"]):
    open(f"{c}/image_config/{i}-{os.path.basename(os.path.dirname(f)) or 'index'}.bin", "wb").write(bytes([i]) + open(f"{sd}/{f}", "rb").read())
for name, d in [("dream", "text/tests/fixtures/dream-slow-tok"), ("clip", f"{sd}/tokenizer")]:
    open(f"{c}/bpe_files/{name}.bin", "wb").write(open(f"{d}/vocab.json", "rb").read() + b"\0" + open(f"{d}/merges.txt", "rb").read())
for name, d in [("llada", "text/tests/fixtures/llada-tiny"), ("dream", "text/tests/fixtures/dream-slow-tok")]:
    t = json.load(open(f"{d}/tokenizer_config.json")).get("chat_template")
    if t: open(f"{c}/chat_template/{name}.jinja", "w").write(t)
for i, t in enumerate(["The [1 {whale,ship,sea}] was [2..4] and the [1..3] of the [2].", "[4 /[0-9]+/] items cost [3 chars:[0-9.]] dollars", "name: [2 named=first] [1..5]", "no holes at all"]):
    open(f"{c}/infill_template/{i}.txt", "w").write(t)
def wav(path, rate, channels, bits, fmt, frames):
    block = channels * bits // 8
    data = bytes((i * 37) % 256 for i in range(frames * block))
    fmt_chunk = struct.pack("<HHIIHH", fmt, channels, rate, rate * block, block, bits)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt_chunk)) + fmt_chunk + b"data" + struct.pack("<I", len(data)) + data
    open(path, "wb").write(b"RIFF" + struct.pack("<I", len(body)) + body)
wav(f"{c}/wav/pcm16-mono.wav", 16000, 1, 16, 1, 64)
wav(f"{c}/wav/float-stereo-44k.wav", 44100, 2, 32, 3, 32)
wav(f"{c}/wav/pcm24-8k.wav", 8000, 1, 24, 1, 16)
PY
tmp=$(mktemp -d)
"$S" --seed 1 image "a red heart" --steps 1 --out $C/png_metadata/stipple.png --overwrite >/dev/null 2>&1
"$S" audio spectrogram $C/wav/pcm16-mono.wav $C/spectrogram_png/tiny.png --params models/stipple-mini/music/spectrogram_params.json --overwrite >/dev/null 2>&1
rm -rf "$tmp"
du -sh $C
