#!/usr/bin/env bash
# The device checks of the GPU path, as one script for the lent GPU machine (no Rust
# toolchain there, 15 minutes of device time in all): prepare here, run there.
#
#   tools/gpu-check.sh --prepare   # here: builds the `cuda` release binary and the kernels'
#                                  # CUDA test binary into gpu-kit/ (xz-compressed: the
#                                  # stripped binary is over the 64 MiB carry limit)
#   tools/gpu-check.sh             # there (or here, as a CPU fallback): prints one table
#
# It runs, in order:
#   1. the CUDA kernels against their CPU twins (the kernels' test binary);
#   2. the tiny fixtures end to end on the GPU against the CPU: greedy text on the LLaDA
#      and Dream fixtures and sampled LLaDA text (counter-based noise) give the same
#      tokens, f32 images (SD 1.x) and music spectrograms (Riffusion) stay within 2/255;
#   3. `stipple bench kernels`: each fused kernel against the candle ops it replaces;
#   4. the benchmarks against PyTorch on the same GPU: one SD 1.5 UNet step (512x512,
#      batch 2, f16) against diffusers, and LLaDA-8B-shaped text (random bf16 weights,
#      256 tokens after a 64-token prompt) against the official generate.py (plain) and
#      Fast-dLLM (threshold 0.9 + dual cache).
# It prints one table and writes it, with the card and the date, to $GPU_CHECK_OUT
# (default: a temporary folder) as gpu-results.md. Without a GPU it runs the same steps
# with the GPU side on the CPU (the benchmarks at a tiny size, with GPU_CHECK_BENCH=1), so
# the script itself is tested end to end; no GPU figure comes from that run.
#
# --prepare also needs STIPPLE_LLADA_MIRROR and STIPPLE_FASTDLLM_MIRROR (see
# tools/reference_code.py): it snapshots the reference code into the kit (never
# committed) and downloads the Python wheels the GPU machine lacks (transformers 4.46.3
# for the LLaDA reference code, diffusers 0.42.1). Carry the kit: run with carry ["gpu-kit"].
# Knobs: GPU_CHECK_LAYERS (LLaDA-8B layers, default 32), GPU_CHECK_RUNS (default 3).
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${GPU_KIT:-gpu-kit}

if [ "${1:-}" = "--prepare" ]; then
  eval "$(tools/cuda-toolchain.sh)"
  mkdir -p "$KIT"
  cargo build --release --features cuda
  test_bin=$(cargo test --release --features cuda -p stipple-kernels --lib --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json,sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        print(m["executable"])' | tail -1)
  [ -n "$test_bin" ] || { echo "the kernels' test binary was not built" >&2; exit 1; }
  for pair in "target/release/stipple:stipple" "$test_bin:kernel-tests"; do
    src=${pair%%:*} name=${pair##*:}
    cp "$src" "$KIT/$name" && strip "$KIT/$name" && xz -T2 -6 -f "$KIT/$name"
  done
  rm -rf "$KIT/ref" && python3 tools/reference_code.py snapshot "$KIT/ref"
  # wheels for Python 3.12 (the GPU image's), installed there with --no-deps into their own
  # folders: the LLaDA reference code needs transformers 4.x, the image has 5.x
  dl() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$@"; }
  rm -rf "$KIT/wheels-text" "$KIT/wheels-image"
  dl "$KIT/wheels-text" transformers==4.46.3 tokenizers==0.20.3 huggingface_hub==0.36.0
  dl "$KIT/wheels-image" diffusers==0.42.1 importlib_metadata==8.7.0

  # the working tree travels too (59.3 MiB) and leaves under 5 MiB of the 64 MiB per call: the
  # kit goes in 4 MiB parts, one per call, and is unpacked by the run that finds them all
  rm -f "$KIT"/part-*
  tar -C "$KIT" -cf - stipple.xz kernel-tests.xz ref wheels-text wheels-image | split -b 4M -d -a 2 - "$KIT/part-"
  n=$(ls "$KIT"/part-* | wc -l)
  echo "$n" > "$KIT/parts"
  ls -la "$KIT"/part-*
  echo "carry gpu-kit/parts and one part per call: run(carry=[\"gpu-kit/parts\", \"gpu-kit/part-NN\"], command=\"tools/gpu-check.sh --receive\"),"
  echo "then run(carry=[\"gpu-kit/parts\"], command=\"tools/gpu-check.sh\") on the same warm machine ($n parts)"
  exit 0
fi

# ---- on the GPU machine: collect the parts (kept there between calls while it is warm)
if [ "${1:-}" = "--receive" ]; then
  ls "$KIT"/part-* 2>/dev/null | sed 's/^/have: /'
  echo "$(ls "$KIT"/part-* 2>/dev/null | wc -l) of $(cat "$KIT/parts" 2>/dev/null || echo '?') parts"
  exit 0
fi
if [ -f "$KIT/parts" ] && [ ! -d "$KIT/ref" ]; then
  have=$(ls "$KIT"/part-* 2>/dev/null | wc -l)
  [ "$have" = "$(cat "$KIT/parts")" ] \
    || { echo "the kit is incomplete: $have of $(cat "$KIT/parts") parts (carry each with --receive first)" >&2; exit 2; }
  cat "$KIT"/part-* | tar -C "$KIT" -xf -
fi

# ---- the checks
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for name in stipple kernel-tests; do
  [ -f "$KIT/$name.xz" ] || { echo "$KIT/$name.xz missing: run tools/gpu-check.sh --prepare first" >&2; exit 2; }
  xz -dc "$KIT/$name.xz" > "$work/$name" && chmod +x "$work/$name"
done
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  GPU=cuda:0
  card=$(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader | head -1)
  # the CUDA runtime libraries from PyTorch's wheels, when there is no system toolkit
  cu=$(python3 -c 'import nvidia.cu13 as m; print(list(m.__path__)[0])' 2>/dev/null || true)
  [ -n "$cu" ] && export LD_LIBRARY_PATH="$cu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
  GPU=cpu
  card="none: CPU fallback (the GPU side runs on the CPU; no GPU figure)"
  stubs=${STIPPLE_CUDA_STUBS:-.venv-cuda/stubs}
  cu=$(ls -d .venv-cuda/lib/python3*/site-packages/nvidia/cu13 2>/dev/null | head -1)
  export LD_LIBRARY_PATH="$stubs${cu:+:$cu/lib}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
S="$work/stipple"
rows=()
row() { rows+=("$(printf '%-44s %-6s %s' "$1" "$2" "$3")"); }

# 1. kernels against their CPU twins (the CUDA tests skip, saying why, without a GPU)
if out=$("$work/kernel-tests" cuda_twin --nocapture 2>&1); then
  if grep -q skipped <<<"$out"; then row "kernels: CUDA twins vs CPU" skip "$(grep -m1 skipped <<<"$out" | cut -c1-60)"
  else row "kernels: CUDA twins vs CPU" pass "$(grep -c '\.\.\. ok' <<<"$out") test(s)"; fi
else
  row "kernels: CUDA twins vs CPU" FAIL "$(tail -3 <<<"$out" | tr '\n' ' ' | cut -c1-80)"
fi

# 2. greedy text: the same tokens on both devices
for fixture in llada-tiny dream-tiny; do
  ids() { "$S" --device "$1" --seed 1 --json text "hello" --raw --gen-len 16 --steps 8 --block-len 8 --model "text/tests/fixtures/$fixture" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["generated_ids"])'; }
  if a=$(ids cpu 2>&1) && b=$(ids "$GPU" 2>&1); then
    if [ "$a" = "$b" ]; then row "text $fixture: greedy tokens" pass "identical"; else row "text $fixture: greedy tokens" FAIL "cpu $a vs $GPU $b"; fi
  else
    row "text $fixture: greedy tokens" FAIL "$(tail -1 <<<"$b")"
  fi
done

# sampled LLaDA text: the counter-based Gumbel noise is the same on every device
sampled() { "$S" --device "$1" --seed 5 --json text "hello" --raw --gen-len 16 --steps 8 --block-len 8 --temperature 1 --model text/tests/fixtures/llada-tiny \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["generated_ids"])'; }
if a=$(sampled cpu 2>&1) && b=$(sampled "$GPU" 2>&1); then
  if [ "$a" = "$b" ]; then row "text llada-tiny: sampled tokens (T=1)" pass "identical"; else row "text llada-tiny: sampled tokens (T=1)" FAIL "cpu $a vs $GPU $b"; fi
else
  row "text llada-tiny: sampled tokens (T=1)" FAIL "$(tail -1 <<<"$b")"
fi

# 3. images in f32: within 2/255
png_max_diff() {  # two 8-bit PNGs (grey, RGB, RGBA) -> largest channel difference (Python's standard library only)
  python3 - "$1" "$2" <<'PY'
import struct, sys, zlib
def pixels(path):
    data = open(path, "rb").read()
    pos, idat, w, h = 8, b"", 0, 0
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            w, h, depth, color = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and color in (0, 2, 6), "8-bit grey, RGB or RGBA expected"
            bpp = {0: 1, 2: 3, 6: 4}[color]
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride = zlib.decompress(idat), bpp * w
    out, prev = [], bytearray(stride)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pred = [0, a, b, (a + b) // 2, a if abs(p - a) <= abs(p - b) and abs(p - a) <= abs(p - c) else (b if abs(p - b) <= abs(p - c) else c)][f]
            line[i] = (line[i] + pred) & 255
        out += line
        prev = line
    return out
a, b = pixels(sys.argv[1]), pixels(sys.argv[2])
print(max(abs(x - y) for x, y in zip(a, b)) if len(a) == len(b) else 999)
PY
}
img() { "$S" --device "$1" --seed 3 --json image "a red fox" --model image/tests/fixtures/sd1-tiny --steps 4 --no-metadata --overwrite --out "$2" > /dev/null; }
if img cpu "$work/cpu.png" 2>"$work/err" && img "$GPU" "$work/gpu.png" 2>"$work/err"; then
  d=$(png_max_diff "$work/cpu.png" "$work/gpu.png")
  if [ "$d" -le 2 ]; then row "image sd1-tiny f32: max pixel difference" pass "$d/255"; else row "image sd1-tiny f32: max pixel difference" FAIL "$d/255"; fi
else
  row "image sd1-tiny f32: max pixel difference" FAIL "$(tail -1 "$work/err")"
fi

# music: the spectrogram of the Riffusion fixture in f32, within 2/255
music() { "$S" --device "$1" --seed 3 --json audio "a jazz riff" --model audio/tests/fixtures/riffusion-tiny --steps 4 --overwrite --out "$2" > /dev/null; }
if music cpu "$work/cpu.wav" 2>"$work/err" && music "$GPU" "$work/gpu.wav" 2>"$work/err"; then
  d=$(png_max_diff "$work/cpu.png" "$work/gpu.png")
  if [ "$d" -le 2 ]; then row "music riffusion-tiny f32: spectrogram difference" pass "$d/255"; else row "music riffusion-tiny f32: spectrogram difference" FAIL "$d/255"; fi
else
  row "music riffusion-tiny f32: spectrogram difference" FAIL "$(tail -1 "$work/err")"
fi

# 3. each fused kernel against the candle ops it replaces, on the device
for dt in f32 bf16; do
  if "$S" --device "$GPU" --dtype "$dt" --json bench kernels --runs "${GPU_CHECK_RUNS:-3}" > "$work/kernels-$dt.json" 2>"$work/err"; then
    while IFS=$'\t' read -r name speedup detail; do row "kernel $dt: $name" "x$speedup" "$detail"; done < <(python3 - "$work/kernels-$dt.json" <<'PY'
import json, sys
for c in json.load(open(sys.argv[1]))["cases"]:
    print(f"{c['case']}\t{c['speedup']:.2f}\tstipple {c['stipple_ms']:.3f} ms, candle {c['candle_ms']:.3f} ms")
PY
)
  else
    row "kernel $dt: bench kernels" FAIL "$(tail -1 "$work/err")"
  fi
done

# 4. against PyTorch on the same device (tiny sizes in the CPU fallback, and only with GPU_CHECK_BENCH=1)
if [ "$GPU" != cpu ] || [ "${GPU_CHECK_BENCH:-0}" = 1 ]; then
  PY=${PYTHON:-python3}
  py_with() {  # py_with WHEELS-FOLDER ARGS...: python with the carried wheels (cp312, for the GPU image) first on the path
    local site="$work/site-$(basename "$1")"
    if [ "$GPU" != cpu ] && [ -d "$1" ] && [ ! -d "$site" ]; then "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$site" "$1"/*.whl >&2; fi
    shift
    PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}" "$PY" "$@"
  }
  export STIPPLE_LLADA_MIRROR=${STIPPLE_LLADA_MIRROR:-$PWD/$KIT/ref/LLaDA} STIPPLE_FASTDLLM_MIRROR=${STIPPLE_FASTDLLM_MIRROR:-$PWD/$KIT/ref/Fast-dLLM}
  runs=${GPU_CHECK_RUNS:-3}
  if [ "$GPU" != cpu ]; then
    dev=cuda ttorch=bfloat16 tdt=bf16 shape="--shape 8b --layers ${GPU_CHECK_LAYERS:-32}" plen=64 glen=256 steps=256
    tlabel="LLaDA-8B shape ${GPU_CHECK_LAYERS:-32} layers $tdt"
  else
    dev=cpu ttorch=float32 tdt=f32 shape="--shape 134m --layers 2" plen=16 glen=32 steps=32 runs=1
    tlabel="LLaDA 134M shape 2 layers $tdt"
  fi
  # text: the official generate.py (plain) and Fast-dLLM (threshold 0.9 + dual cache)
  tm="$work/llada-bench"
  # shellcheck disable=SC2086
  if py_with "$KIT/wheels-text" tools/bench_text_reference.py --out "$tm" $shape --dtype "$ttorch" --device "$dev" --fast --runs "$runs" \
       --prompt-len "$plen" --gen-len "$glen" --steps "$steps" --block-len 32 > "$work/text-ref.json" 2>"$work/err"; then
    for v in plain fast; do
      extra=(); [ "$v" = fast ] && extra=(--threshold 0.9 --cache dual)
      if "$S" --device "$GPU" --dtype "$tdt" --json bench text --model "$tm" --reference "$work/text-ref.json" --runs "$runs" \
           --gen-len "$glen" --steps "$steps" --block-len 32 "${extra[@]}" > "$work/text-$v.json" 2>"$work/err"; then
        IFS=$'\t' read -r ratio detail < <(python3 - "$work/text-ref.json" "$work/text-$v.json" "$v" <<'PY'
import json, sys
ref, s, v = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
key, ids = ("tokens_per_s", "generated_ids") if v == "plain" else ("fast_tokens_per_s", "fast_generated_ids")
agree = sum(a == b for a, b in zip(ref[ids], s["generated_ids"])) / max(1, len(ref[ids]))
print(f"x{s['tokens_per_s'] / ref[key]:.2f}\tstipple {s['tokens_per_s']:.1f} tok/s, PyTorch {ref[key]:.1f} tok/s, forward {s['forward_ms']:.1f} vs {ref['forward_ms']:.1f} ms, tokens agree {agree:.3f}")
PY
) || true
        row "text $tlabel, $v: tok/s vs PyTorch" "$ratio" "$detail"
      else
        row "text $tlabel, $v" FAIL "$(tail -1 "$work/err")"
      fi
    done
  else
    row "text $tlabel: PyTorch reference" FAIL "$(tail -1 "$work/err")"
  fi
  # the SD 1.5 UNet step, 512x512, batch 2, f16 (GPU only: making the model takes minutes on a small CPU)
  if [ "$GPU" != cpu ] || [ "${GPU_CHECK_IMAGE:-0}" = 1 ]; then
    im="$work/sd15-random" idt=f16 itorch=float16
    [ "$GPU" = cpu ] && idt=f32 itorch=float32
    if py_with "$KIT/wheels-image" tools/bench_image_reference.py make "$im" > /dev/null 2>"$work/err" \
       && DEVICE=$dev DTYPE=$itorch py_with "$KIT/wheels-image" tools/bench_image_reference.py unet "$im" "$runs" 2>"$work/err" | tail -1 > "$work/unet-ref.json" \
       && "$S" --device "$GPU" --dtype "$idt" --json bench image --model "$im" --runs "$runs" --reference "$work/unet-ref.json" > "$work/unet.json" 2>"$work/err"; then
      IFS=$'\t' read -r ratio detail < <(python3 - "$work/unet.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(f"x{s['speedup_vs_reference']:.2f}\tstipple {1e3 * s['median_s']:.1f} ms, diffusers {1e3 * s['reference_median_s']:.1f} ms")
PY
) || true
      row "image SD 1.5 UNet step 512x512 b2 $idt vs diffusers" "$ratio" "$detail"
    else
      row "image SD 1.5 UNet step vs diffusers" FAIL "$(tail -1 "$work/err")"
    fi
  fi
fi

report() {
  echo "GPU check, $(date -u +%Y-%m-%d), device: $card"
  printf '%s\n' "${rows[@]}"
}
report | sed 's/\t/ /g'
out=${GPU_CHECK_OUT:-$work}
{ echo '```'; report; echo '```'; } > "$out/gpu-results.md" 2>/dev/null || true
! printf '%s\n' "${rows[@]}" | grep -q ' FAIL '
