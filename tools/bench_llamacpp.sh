#!/usr/bin/env bash
# stipple against llama.cpp's llama-diffusion-cli, same machine, same run, same GGUF files:
#   * the 134M LLaDA-shaped benchmark model (tools/bench_text.sh makes it) as f32, Q8_0
#     and Q4_K_M: 128 tokens after the prompt, 128 steps, blocks of 32, greedy,
#     low-confidence remasking, 2 threads;
#   * the embedded stipple-mini text model (48 tokens), the small-job case.
# Each figure is the wall time of the whole process (start-up, loading, tokenizing,
# decoding), median of RUNS alternating rounds; the ratio is llama.cpp's time / stipple's.
#
#   PYTHON=.venv-text/bin/python tools/bench_llamacpp.sh [RUNS]
#
# llama.cpp is the one vendored in the llama-cpp-python sdist (pinned below), downloaded
# from PyPI and built here with cmake (pip's cmake when none is installed) unless
# STIPPLE_LLAMACPP points at a llama.cpp source tree already built (build/bin/). Its
# converter (convert_hf_to_gguf.py) needs PYTHON to have torch, transformers and its gguf
# package; tools/make_gguf_fixtures.py explains the one patch it needs (registering the
# pre-tokenizer of tokenizers it has no hash for).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
PY=${PYTHON:-.venv-text/bin/python}
OUT=target/bench/llamacpp
VERSION=0.3.36
SHA256=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
mkdir -p "$OUT"

SRC=${STIPPLE_LLAMACPP:-$OUT/llama_cpp_python-$VERSION/vendor/llama.cpp}
if [ ! -f "$SRC/convert_hf_to_gguf.py" ]; then
  url=$(python3 -c "import json,sys,urllib.request as u; d=json.load(u.urlopen('https://pypi.org/pypi/llama-cpp-python/$VERSION/json')); print([x['url'] for x in d['urls'] if x['packagetype']=='sdist'][0])")
  curl -sSL -o "$OUT/llama_cpp_python-$VERSION.tar.gz" "$url"
  echo "$SHA256  $OUT/llama_cpp_python-$VERSION.tar.gz" | sha256sum -c --quiet
  tar -xzf "$OUT/llama_cpp_python-$VERSION.tar.gz" -C "$OUT"
fi
if [ ! -x "$SRC/build/bin/llama-diffusion-cli" ] || [ ! -x "$SRC/build/bin/llama-quantize" ]; then
  command -v cmake >/dev/null || "$PY" -m pip install -q cmake
  CMAKE=$(command -v cmake || echo "$(dirname "$PY")/cmake")
  # the widest vector path the CPU has, named rather than -march=native: a native build
  # also turns on AMX where the CPU lists it, and its Q8_0/k-quant kernels then die of an
  # illegal instruction in VMs that do not grant AMX (seen on the build machine)
  if [ "$(uname -m)" = x86_64 ]; then
    ISA="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON"
    for f in avx512f:AVX512 avx512vbmi:AVX512_VBMI avx512_vnni:AVX512_VNNI avx512_bf16:AVX512_BF16; do
      if grep -qw "${f%%:*}" /proc/cpuinfo; then ISA="$ISA -DGGML_${f##*:}=ON"; fi
    done
  else
    ISA="-DGGML_NATIVE=ON"
  fi
  # shellcheck disable=SC2086
  "$CMAKE" -S "$SRC" -B "$SRC/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF $ISA \
    -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF >/dev/null
  "$CMAKE" --build "$SRC/build" -j "$(nproc)" --target llama-diffusion-cli llama-quantize >/dev/null
fi
"$PY" -c "import gguf" 2>/dev/null || "$PY" -m pip install -q "$SRC/gguf-py" sentencepiece
export STIPPLE_LLAMACPP=$SRC

if [ ! -f target/bench/llada-134m/model.safetensors ]; then
  echo "target/bench/llada-134m is missing: run tools/bench_text.sh once (it makes the benchmark model)" >&2
  exit 1
fi
cargo build --release --quiet

# The benchmark model with a byte-level BPE tokenizer (stipple-mini's) that llama.cpp's
# converter accepts; its word-level one has no BPE merges.
M=$OUT/llada-134m-bpe
mkdir -p "$M"
ln -sf "$PWD/target/bench/llada-134m/model.safetensors" "$M/model.safetensors"
cp target/bench/llada-134m/config.json "$M/"
cp models/stipple-mini/text/tokenizer.json "$M/"
"$PY" - "$M" "$OUT" <<'PY'
import json, os, sys
sys.path.insert(0, "tools")
from make_gguf_fixtures import convert, quantize, staged
m, out = sys.argv[1], sys.argv[2]
# BOS named, so llama.cpp (which prepends one to LLaDA prompts) and stipple (which reads
# the same metadata) prepend the same token
json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>", "mask_token": "<|mdm_mask|>"}, open(f"{m}/tokenizer_config.json", "w"))
for t in ["f32", "q8_0"]:
    if not os.path.exists(f"{out}/llada-134m-{t}.gguf"):
        convert(m, f"{out}/llada-134m-{t}.gguf", t)
if not os.path.exists(f"{out}/llada-134m-q4_k_m.gguf"):
    quantize(f"{out}/llada-134m-f32.gguf", f"{out}/llada-134m-q4_k_m.gguf", "Q4_K_M")
if not os.path.exists(f"{out}/stipple-mini-f16.gguf"):
    mini = staged("models/stipple-mini/text", "<|mdm_mask|>", bos_token="<|endoftext|>")
    convert(mini, f"{out}/stipple-mini-f16.gguf", "f16")
PY

"$PY" - "$SRC/build/bin/llama-diffusion-cli" "$OUT" "$RUNS" <<'PY'
import json, os, platform, re, statistics, subprocess, sys, time
cli, out, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
stipple = "./target/release/stipple"
STORY = ("Once upon a time there was a little girl who lived in a village near the forest. She liked to walk "
         "under the tall trees with her dog, and every morning she brought bread to her grandmother, who told her "
         "stories about the king, the river and the old mill. One day the wind was strong and the sky grew dark, "
         "so she ran home along the path by the water, where the ducks were hiding in the reeds and the frogs sang. "
         "When she came to the door her mother was waiting with a lamp, and they sat together by the fire while the "
         "rain fell on the roof. Her grandmother had given her a small wooden box with a golden key, and that night "
         "she opened it and found a letter from a sailor who had crossed the sea many years before.").split()

def chatml(text):
    # llama-diffusion-cli always applies a chat template (ChatML when the model has none,
    # as here) and has no switch to turn it off: stipple gets the same ChatML text as a
    # raw prompt, so both decode the same canvas
    return f"<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n"

def prompt_len(model, text):
    r = subprocess.run([stipple, "--json", "text", "--model", model, "--raw", "--gen-len", "1", "--steps", "1", chatml(text)], capture_output=True, text=True, check=True)
    return len(json.loads(r.stdout.strip().splitlines()[-1])["prompt_ids"])

def fit_prompt(model, n):
    """The story's first characters whose prompt is exactly n tokens (BOS and ChatML
    included). llama-diffusion-cli counts its blocks over the whole canvas, prompt included
    (max_length / block_length, each starting after the prompt), so the prompt length is
    chosen to make its blocks and stipple's the same work: as many forwards over the same
    canvas."""
    story = " ".join(STORY)
    lo, hi = 1, len(story)
    while lo <= hi:
        mid = (lo + hi) // 2
        got = prompt_len(model, story[:mid])
        if got == n:
            return story[:mid]
        lo, hi = (mid + 1, hi) if got < n else (lo, mid - 1)
    for k in range(max(1, hi - 8), min(len(story), hi + 8) + 1):
        if prompt_len(model, story[:k]) == n:
            return story[:k]
    sys.exit(f"no prefix of the story is exactly {n} tokens for {model}")

def wall(cmd):
    t = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True)  # bytes: llama.cpp may print partial UTF-8
    if r.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:].decode(errors='replace')}")
    return time.perf_counter() - t

def case(name, model, n, gen, steps, block, stipple_model=None):
    text = fit_prompt(model, n)
    llama = [cli, "-m", model, "-p", text, "-t", "2", "-ub", str(n + gen), "-c", str(n + gen),
             "--diffusion-steps", str(steps), "--diffusion-block-length", str(block), "--temp", "0"]
    # greedy in both (stipple-mini's generation_config.json would otherwise sample)
    ours = [stipple, "text", "--model", stipple_model or model, "--raw", "--temperature", "0", "--gen-len", str(gen), "--steps", str(steps), "--block-len", str(block), chatml(text)]
    wall(llama), wall(ours)  # warm the page cache
    tl, ts = [], []
    for _ in range(runs):
        tl.append(wall(llama))
        ts.append(wall(ours))
    ml, ms = statistics.median(tl), statistics.median(ts)
    print(f"{name:34} llama.cpp {ml:6.2f} s   stipple {ms:6.2f} s   ratio x{ml / ms:.2f}   (prompt {n} tokens, {gen} generated)")
    return {"case": name, "llamacpp_s": ml, "stipple_s": ms, "ratio": ml / ms}

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
flags = next((l for l in open("/proc/cpuinfo") if l.startswith("flags")), "")
widest = "avx512" if " avx512f" in flags else "avx2" if " avx2" in flags else "portable"
print(f"CPU: {cpu} ({widest}), {os.cpu_count()} cores; medians of {runs} alternating rounds, whole-process wall time")
rows = []
for t in ["f32", "q8_0", "q4_k_m"]:
    rows.append(case(f"llada-134m {t} (128 tok, 128 steps)", f"{out}/llada-134m-{t}.gguf", 128, 128, 128, 32))
rows.append(case("stipple-mini f16 GGUF (48 tok)", f"{out}/stipple-mini-f16.gguf", 48, 48, 48, 16))
rows.append(case("stipple-mini, stipple's own folder", f"{out}/stipple-mini-f16.gguf", 48, 48, 48, 16, stipple_model="models/stipple-mini/text"))
json.dump({"cpu": cpu, "vector_path": widest, "runs": runs, "rows": rows}, open(f"{out}/results.json", "w"), indent=1)
PY
