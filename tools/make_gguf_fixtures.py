#!/usr/bin/env python3
"""GGUF files of the tiny text fixtures, written by llama.cpp's own
converter (`convert_hf_to_gguf.py`) and quantizer (`llama-quantize`), so that stipple's GGUF
reader is tested on files exactly as llama.cpp users have them.

Writes text/tests/fixtures/gguf/:
  llada-tiny-{f32,f16,q8_0,q4_k_m}.gguf   from text/tests/fixtures/llada-tiny
  dream-tiny-{f32,q8_0}.gguf              from text/tests/fixtures/dream-tiny

(stipple-mini's Q8_0 file is made by text/tests/gguf.rs itself with candle's quantizer, which
gives the converter's Q8_0 bytes, checked there on the tiny LLaDA: 4.5 MB less to commit.)

The converter names each tokenizer's pre-tokenizer by hashing how it splits a test string,
and refuses tokenizers it has no hash for (every tiny fixture). This
script registers the name for them (`gpt-2`: they split with GPT-2's byte-level regex),
which is what `convert_hf_to_gguf_update.py` would add; the files are otherwise the
converter's. It also puts the [MASK] token in tokenizer_config.json (`mask_token`), from
which the converter writes `tokenizer.ggml.mask_token_id` (llama-diffusion-cli needs it).

llama.cpp comes from the llama-cpp-python sdist (vendor/llama.cpp), built with cmake:

  curl -LO <llama_cpp_python-0.3.36.tar.gz from PyPI> && tar xzf llama_cpp_python-0.3.36.tar.gz
  export STIPPLE_LLAMACPP=$PWD/llama_cpp_python-0.3.36/vendor/llama.cpp
  cmake -S $STIPPLE_LLAMACPP -B $STIPPLE_LLAMACPP/build -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF
  cmake --build $STIPPLE_LLAMACPP/build -j --target llama-quantize llama-diffusion-cli
  .venv-text/bin/pip install $STIPPLE_LLAMACPP/gguf-py sentencepiece
  .venv-text/bin/python tools/make_gguf_fixtures.py

(tools/bench_llamacpp.sh does the download and build.)
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
OUT = os.path.join(ROOT, "text", "tests", "fixtures", "gguf")


def llamacpp():
    path = os.environ.get("STIPPLE_LLAMACPP")
    if not path or not os.path.isfile(os.path.join(path, "convert_hf_to_gguf.py")):
        sys.exit("set STIPPLE_LLAMACPP to a llama.cpp source tree (see this script's docstring)")
    return path


def convert(model_dir, outfile, outtype, pre="gpt-2", name=None):
    """Run llama.cpp's converter with `pre` registered for the model's tokenizer."""
    name = name or os.path.basename(outfile).rsplit("-", 1)[0]
    src = llamacpp()
    code = f"""
import runpy, sys
sys.path.insert(0, {os.path.join(src, 'gguf-py')!r})
sys.path.insert(0, {src!r})
import conversion.base as base
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: {pre!r}
sys.argv = ["convert_hf_to_gguf.py", {model_dir!r}, "--outfile", {outfile!r}, "--outtype", {outtype!r}, "--model-name", {name!r}]
runpy.run_path({os.path.join(src, 'convert_hf_to_gguf.py')!r}, run_name="__main__")
"""
    subprocess.run([sys.executable, "-c", code], check=True)


def quantize(infile, outfile, kind):
    binary = os.path.join(llamacpp(), "build", "bin", "llama-quantize")
    if not os.path.isfile(binary):
        sys.exit(f"{binary} is missing: build llama.cpp first (see this script's docstring)")
    subprocess.run([binary, infile, outfile, kind], check=True)


def staged(model_dir, mask_token, **tokenizer_config):
    """A copy of a model folder whose tokenizer_config.json names the [MASK] token (and
    any other `tokenizer_config` entries given)."""
    tmp = tempfile.mkdtemp(prefix="stipple-gguf-")
    for name in os.listdir(model_dir):
        if name.endswith((".json", ".safetensors", ".txt")):
            shutil.copy(os.path.join(model_dir, name), tmp)
    cfg_path = os.path.join(tmp, "tokenizer_config.json")
    cfg = json.load(open(cfg_path)) if os.path.exists(cfg_path) else {}
    cfg["mask_token"] = mask_token
    cfg.update(tokenizer_config)
    json.dump(cfg, open(cfg_path, "w"), indent=1)
    return tmp


def main():
    os.makedirs(OUT, exist_ok=True)
    fixtures = os.path.join(ROOT, "text", "tests", "fixtures")

    llada = staged(os.path.join(fixtures, "llada-tiny"), "<|mdm_mask|>")
    for t in ["f32", "f16", "q8_0"]:
        convert(llada, os.path.join(OUT, f"llada-tiny-{t}.gguf"), t)
    quantize(os.path.join(OUT, "llada-tiny-f32.gguf"), os.path.join(OUT, "llada-tiny-q4_k_m.gguf"), "Q4_K_M")

    dream = staged(os.path.join(fixtures, "dream-tiny"), "<|mask|>")
    for t in ["f32", "q8_0"]:
        convert(dream, os.path.join(OUT, f"dream-tiny-{t}.gguf"), t)

    for d in (llada, dream):
        shutil.rmtree(d)
    for name in sorted(os.listdir(OUT)):
        print(name, os.path.getsize(os.path.join(OUT, name)))


if __name__ == "__main__":
    main()
