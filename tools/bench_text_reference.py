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

On a GPU (tools/gpu-check.sh): --shape 8b writes LLaDA-8B's shape instead (d_model 4096,
32 layers of 32 heads, SwiGLU 12288, vocab 126464; --layers N for fewer layers) with
random weights in --dtype bfloat16, made on --device cuda; --fast also times Fast-dLLM's
`generate_with_dual_cache` with threshold 0.9 (fast_tokens_per_s, fast_generated_ids).

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
    ap.add_argument("--shape", choices=["134m", "8b"], default="134m")
    ap.add_argument("--layers", type=int, default=0, help="override the number of layers")
    ap.add_argument("--dtype", choices=["float32", "bfloat16"], default="float32")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--fast", action="store_true", help="also time Fast-dLLM dual cache + threshold 0.9")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    dev, dtype = torch.device(args.device), getattr(torch, args.dtype)
    if args.shape == "8b":
        vocab, shape = 126464, dict(d_model=4096, n_heads=32, n_kv_heads=32, n_layers=32, mlp_hidden_size=12288)
    else:
        vocab, shape = 32000, dict(d_model=768, n_heads=12, n_kv_heads=12, n_layers=12, mlp_hidden_size=2048)
    if args.layers:
        shape["n_layers"] = args.layers
    mask_id, eos_id = vocab - 1, vocab - 2
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    with tempfile.TemporaryDirectory() as tmp:
        refs = load_references(tmp)
        cfg = refs["llada_config"].LLaDAConfig(**llada_config(vocab, mask_id, eos_id, max_sequence_length=4096, **shape))
        torch.manual_seed(0)
        if args.shape == "8b":
            # random weights made where they run: N(0, 0.02), norms 1 (init_params would
            # take minutes on the CPU at this size)
            cfg.init_device = args.device
            torch.set_default_dtype(dtype)
            model = refs["llada_modeling"].LLaDAModelLM(cfg, init_params=False).eval()
            torch.set_default_dtype(torch.float32)
            with torch.no_grad():
                for name, p in model.named_parameters():
                    p.fill_(1.0) if "norm" in name else p.normal_(0.0, 0.02)
        else:
            model = refs["llada_modeling"].LLaDAModelLM(cfg, init_params=True).eval().to(dev, dtype)
        os.makedirs(args.out, exist_ok=True)
        weights = f"{args.out}/model.safetensors"
        if not os.path.exists(weights) and not os.path.exists(weights + ".index.json"):
            save_weights(model, args.out, 1 if args.shape == "134m" else 8)
            conf = {k: v for k, v in cfg.to_dict().items() if k not in ("init_device",)}
            conf.update(model_type="llada", architectures=["LLaDAModelLM"], torch_dtype=args.dtype)
            with open(f"{args.out}/config.json", "w") as f:
                json.dump(conf, f, indent=1, sort_keys=True, default=str)
            write_tokenizer(args.out, vocab)
        elif os.path.exists(weights):
            from safetensors.torch import load_file

            model.load_state_dict(load_file(weights, device=args.device), strict=False)
        else:
            sys.exit(f"{args.out} holds sharded weights from an earlier run: delete it to make them again")
        params = sum(p.numel() for p in model.parameters())
        g = torch.Generator().manual_seed(1)
        prompt = torch.randint(0, vocab - 2, (1, args.prompt_len), generator=g).to(dev)
        gen = refs["llada_generate"].generate
        canvas = torch.cat([prompt, torch.full((1, args.gen_len), mask_id, device=dev)], dim=1)
        fwd = []
        with torch.no_grad():
            model(canvas)
            for _ in range(5):
                sync()
                t = time.perf_counter()
                model(canvas)
                sync()
                fwd.append(time.perf_counter() - t)

        def timed(run):
            rates, out = [], None
            for _ in range(args.runs):
                sync()
                t = time.perf_counter()
                out = run()
                sync()
                rates.append(args.gen_len / (time.perf_counter() - t))
            return rates, out

        tps, out = timed(lambda: gen(model, prompt, attention_mask=torch.ones_like(prompt), steps=args.steps, gen_length=args.gen_len,
                                     block_length=args.block_len, temperature=0.0, cfg_scale=0.0, remasking="low_confidence", mask_id=mask_id))
        result = {
            "reference": "ML-GSAI/LLaDA generate.py + Fast-dLLM modeling_llada.py, torch " + torch.__version__,
            "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu",
            "dtype": args.dtype,
            "threads": torch.get_num_threads(),
            "params": params,
            "tokens_per_s": statistics.median(tps),
            "tokens_per_s_runs": tps,
            "forward_ms": 1e3 * statistics.median(fwd),
            "prompt_ids": prompt[0].tolist(),
            "generated_ids": out[0, args.prompt_len:].tolist(),
        }
        if args.fast:
            fast = refs["fastdllm_generate"].generate_with_dual_cache
            ftps, fout = timed(lambda: fast(model, prompt, steps=args.steps, gen_length=args.gen_len, block_length=args.block_len,
                                            temperature=0.0, remasking="low_confidence", mask_id=mask_id, threshold=0.9))
            fout = fout[0] if isinstance(fout, tuple) else fout
            result.update(fast_reference="NVlabs/Fast-dLLM generate_with_dual_cache, threshold 0.9",
                          fast_tokens_per_s=statistics.median(ftps), fast_tokens_per_s_runs=ftps,
                          fast_generated_ids=fout[0, args.prompt_len:].tolist())
        print(json.dumps(result))


if __name__ == "__main__":
    main()
