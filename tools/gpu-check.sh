#!/usr/bin/env bash
# The device checks of the GPU path, as one script for the lent GPU machine (no Rust
# toolchain there, 15 minutes of device time in all): prepare here, run there.
#
#   tools/gpu-check.sh --prepare   # here: builds the `cuda` release binary and the kernels'
#                                  # CUDA test binary into gpu-kit/ (xz-compressed: the
#                                  # stripped binary is over the 64 MiB carry limit)
#   tools/gpu-check.sh             # there (or here, as a CPU fallback): prints one table
#
# It runs, in order: the CUDA kernels against their CPU twins (the kernels' test binary),
# then the tiny fixtures end to end on the GPU against the CPU: greedy text on the LLaDA
# and Dream fixtures must give the same tokens, f32 images on the SD 1.x fixture must stay
# within 2/255. Without a GPU it runs the same steps with the GPU side on the CPU, so the
# script itself is tested end to end. Still to come (issue 16): the text and UNet
# benchmarks against PyTorch on the same GPU.
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
  ls -la "$KIT"
  exit 0
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

# 3. images in f32: within 2/255
png_max_diff() {  # two 8-bit RGB PNGs -> largest channel difference (Python's standard library only)
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
            assert depth == 8 and color == 2, "8-bit RGB expected"
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    raw, stride, out, prev = zlib.decompress(idat), 3 * w, [], bytearray(3 * w)
    for y in range(h):
        f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - 3] if i >= 3 else 0
            b, c = prev[i], prev[i - 3] if i >= 3 else 0
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

echo "GPU check, $(date -u +%Y-%m-%d), device: $card"
printf '%s\n' "${rows[@]}"
! printf '%s\n' "${rows[@]}" | grep -q ' FAIL '
