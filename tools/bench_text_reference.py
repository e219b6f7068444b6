#!/usr/bin/env python3
"""The text speed benchmark's model and its PyTorch reference timing.

Writes a 134M-parameter LLaDA-shaped checkpoint (d_model 768, 12 layers, 12 heads,
SwiGLU 2048, vocab 32000, random weights, float32) in the hub layout to OUT (default
target/bench/llada-134m), with a word-level tokenizer.json so any tool can load it,
then times the official ML-GSAI/LLaDA `generate.py` (with the LLaDA modeling code
vendored in NVlabs/Fast-dLLM, read at the pinned commits from the local clones named by
STIPPLE_LLADA_MIRROR and STIPPLE_FASTDLLM_MIRROR, as in make_text_fixtures.py):
128 tokens after a 32-token prompt, 128 steps, block 32, greedy, low-confidence.
Also times one forward pass over the 160-token canvas.

Prints one JSON object: tokens_per_s (median of --runs), forward_ms (median), the
generated ids, and the prompt ids (so stipple can run the same decode and compare).

There is no default location for the reference code: make the clones once (REF: any
folder outside this checkout) and point the variables at them:
  REF=$PWD/../stipple-ref
  git clone https://github.com/ML-GSAI/LLaDA $REF/LLaDA && git -C $REF/LLaDA checkout b7e6c3565f194352da44b38dd12b6970597309f3
  git clone https://github.com/NVlabs/Fast-dLLM $REF/Fast-dLLM && git -C $REF/Fast-dLLM checkout 24cc59e75f20a6384bae8c905965bb090b96388e
  export STIPPLE_LLADA_MIRROR=$REF/LLaDA STIPPLE_FASTDLLM_MIRROR=$REF/Fast-dLLM
Needs the Python environment of make_text_fixtures.py (transformers 4.46.x):
  python3 -m venv .venv-text && .venv-text/bin/pip install torch==2.11.0 transformers==4.46.3 einops safetensors
  PYTHON=.venv-text/bin/python
  $PYTHON tools/bench_text_reference.py [--out DIR] [--runs N] [--threads N]
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from make_text_fixtures import llada_config, load_references, save_weights  # noqa: E402


def write_tokenizer(folder, vocab):
    tok = {
        "version": "1.0",
        "truncation": None,
        "padding": None,
        "added_tokens": [
            {"id": vocab - 2, "content": "<|endoftext|>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
            {"id": vocab - 1, "content": "<|mdm_mask|>", "single_word": False, "lstrip": False, "rstrip": False, "normalized": False, "special": True},
        ],
        "normalizer": None,
        "pre_tokenizer": {"type": "WhitespaceSplit"},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "WordLevel", "vocab": {**{f"w{i}": i for i in range(vocab - 2)}, "<|endoftext|>": vocab - 2, "<|mdm_mask|>": vocab - 1}, "unk_token": "w0"},
    }
    with open(f"{folder}/tokenizer.json", "w") as f:
        json.dump(tok, f)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "target", "bench", "llada-134m"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--prompt-len", type=int, default=32)
    ap.add_argument("--gen-len", type=int, default=128)
    ap.add_argument("--steps", type=int, default=128)
    ap.add_argument("--block-len", type=int, default=32)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    vocab = 32000
    mask_id, eos_id = vocab - 1, vocab - 2
    with tempfile.TemporaryDirectory() as tmp:
        refs = load_references(tmp)
        cfg = refs["llada_config"].LLaDAConfig(**llada_config(
            vocab, mask_id, eos_id, d_model=768, n_heads=12, n_kv_heads=12, n_layers=12,
            mlp_hidden_size=2048, max_sequence_length=4096))
        torch.manual_seed(0)
        model = refs["llada_modeling"].LLaDAModelLM(cfg, init_params=True).eval()
        os.makedirs(args.out, exist_ok=True)
        if not os.path.exists(f"{args.out}/model.safetensors"):
            save_weights(model, args.out, 1)
            conf = {k: v for k, v in cfg.to_dict().items() if k not in ("init_device",)}
            conf.update(model_type="llada", architectures=["LLaDAModelLM"], torch_dtype="float32")
            with open(f"{args.out}/config.json", "w") as f:
                json.dump(conf, f, indent=1, sort_keys=True, default=str)
            write_tokenizer(args.out, vocab)
        else:
            from safetensors.torch import load_file

            model.load_state_dict(load_file(f"{args.out}/model.safetensors"), strict=False)
        params = sum(p.numel() for p in model.parameters())
        g = torch.Generator().manual_seed(1)
        prompt = torch.randint(0, vocab - 2, (1, args.prompt_len), generator=g)
        gen = refs["llada_generate"].generate
        canvas = torch.cat([prompt, torch.full((1, args.gen_len), mask_id)], dim=1)
        fwd = []
        with torch.no_grad():
            model(canvas)
            for _ in range(5):
                t = time.perf_counter()
                model(canvas)
                fwd.append(time.perf_counter() - t)
        tps, out = [], None
        for _ in range(args.runs):
            t = time.perf_counter()
            out = gen(model, prompt, attention_mask=torch.ones_like(prompt), steps=args.steps, gen_length=args.gen_len,
                      block_length=args.block_len, temperature=0.0, cfg_scale=0.0, remasking="low_confidence", mask_id=mask_id)
            tps.append(args.gen_len / (time.perf_counter() - t))
        print(json.dumps({
            "reference": "ML-GSAI/LLaDA generate.py + Fast-dLLM modeling_llada.py, torch " + torch.__version__,
            "threads": torch.get_num_threads(),
            "params": params,
            "tokens_per_s": statistics.median(tps),
            "tokens_per_s_runs": tps,
            "forward_ms": 1e3 * statistics.median(fwd),
            "prompt_ids": prompt[0].tolist(),
            "generated_ids": out[0, args.prompt_len:].tolist(),
        }))


if __name__ == "__main__":
    main()
