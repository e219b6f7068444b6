#!/usr/bin/env bash
# Text speed benchmark, same machine and same run: the official PyTorch LLaDA decode
# (tools/bench_text_reference.py) then `stipple bench text` on the same 134M-parameter
# checkpoint and prompt, reporting medians, the speed ratio, the forward-pass ratio and
# the token agreement. Then the cached / threshold variants of stipple.
#   PYTHON=.venv-text/bin/python tools/bench_text.sh [RUNS]
# PYTHON: a Python with the environment of tools/make_text_fixtures.py (transformers 4.46.x):
#   python3 -m venv .venv-text && .venv-text/bin/pip install torch==2.11.0 transformers==4.46.3 einops safetensors
# The reference code is read from local clones of the public repositories at pinned commits
# (no default location; see tools/bench_text_reference.py and tools/reference_code.py):
#   REF=$PWD/../stipple-ref   # any folder outside this checkout
#   git clone https://github.com/ML-GSAI/LLaDA $REF/LLaDA && git -C $REF/LLaDA checkout b7e6c3565f194352da44b38dd12b6970597309f3
#   git clone https://github.com/NVlabs/Fast-dLLM $REF/Fast-dLLM && git -C $REF/Fast-dLLM checkout 24cc59e75f20a6384bae8c905965bb090b96388e
#   export STIPPLE_LLADA_MIRROR=$REF/LLaDA STIPPLE_FASTDLLM_MIRROR=$REF/Fast-dLLM
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
PY=${PYTHON:-python3}
OUT=target/bench
mkdir -p "$OUT"
cargo build --release --quiet
"$PY" tools/bench_text_reference.py --runs "$RUNS" > "$OUT/reference.json"
./target/release/stipple --json bench text --model "$OUT/llada-134m" --reference "$OUT/reference.json" --runs "$RUNS" > "$OUT/stipple.json"
for v in "--cache prefix" "--cache dual" "--threshold 0.9" "--threshold 0.9 --cache dual"; do
  # shellcheck disable=SC2086
  ./target/release/stipple --json bench text --model "$OUT/llada-134m" --reference "$OUT/reference.json" --runs 1 $v > "$OUT/stipple-$(echo $v | tr -d ' -').json"
done
python3 - "$OUT" <<'PY'
import json, sys, glob
out = sys.argv[1]
ref = json.load(open(f"{out}/reference.json"))
print(f"reference (PyTorch {ref['threads']} threads): {ref['tokens_per_s']:.2f} tok/s, forward {ref['forward_ms']:.0f} ms")
for f in sorted(glob.glob(f"{out}/stipple*.json")):
    s = json.load(open(f))
    print(f"{f.split('/')[-1]:32} {s['tokens_per_s']:.2f} tok/s (x{s['speed_ratio']:.2f}), forward {s['forward_ms']:.0f} ms (x{s['forward_ratio']:.2f}), "
          f"nfe {s['nfe']}, token agreement {s['token_agreement']:.3f}")
PY
