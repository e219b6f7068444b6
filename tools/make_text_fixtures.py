#!/usr/bin/env python3
"""Tiny random text-diffusion checkpoints in the exact hub layouts, and the outputs the
*reference* code produces with them, for stipple-text's parity tests.

Models written under text/tests/fixtures/ (each a folder a user could pass to --model):
  * llada-tiny           LLaDA (modeling_llada.py vendored in NVlabs/Fast-dLLM), MHA,
                         untied head, one model.safetensors
  * llada-tiny-gqa       LLaDA with 2 key/value heads, tied head, logits scaling, saved
                         as two shards + model.safetensors.index.json
  * dream-tiny           Dream (Fast-dLLM's vendored modeling_dream.py), Qwen2 names,
                         2 key/value heads
Each has config.json, tokenizer.json (a byte-level BPE trained here on the text below),
tokenizer_config.json with a chat template, and expected.json:
  * first_logits: the model's logits for one canvas (prompt + masks), all rows, to 1e-4
  * cases: prompt ids (raw or through the chat template, tokenized by transformers) and
    the generated ids of the reference decoders, run unchanged:
      - ML-GSAI/LLaDA generate.py `generate` (semi-AR blocks, CFG, low-confidence),
      - Fast-dLLM llada/generate.py `generate` (threshold), `generate_with_prefix_cache`,
        `generate_with_dual_cache`,
      - Dream `diffusion_generate` (maskgit_plus, topk_margin, entropy).
References are read at run time from local clones of the public repositories, at the
commits pinned in tools/reference_code.py (never copied into the repository). There is
no default location: make the clones once (REF: any folder outside this checkout) and
point the variables at them:
  REF=$PWD/../stipple-ref
  git clone https://github.com/ML-GSAI/LLaDA $REF/LLaDA && git -C $REF/LLaDA checkout b7e6c3565f194352da44b38dd12b6970597309f3
  git clone https://github.com/NVlabs/Fast-dLLM $REF/Fast-dLLM && git -C $REF/Fast-dLLM checkout 24cc59e75f20a6384bae8c905965bb090b96388e
  export STIPPLE_LLADA_MIRROR=$REF/LLaDA STIPPLE_FASTDLLM_MIRROR=$REF/Fast-dLLM
Needs torch and transformers 4.46.x (the version the vendored modeling code targets) with
einops, in a Python environment of its own (PYTHON below), e.g.
  python3 -m venv .venv-text && .venv-text/bin/pip install torch==2.11.0 transformers==4.46.3 einops safetensors
  PYTHON=.venv-text/bin/python
  $PYTHON tools/make_text_fixtures.py [out_dir]
Deterministic: fixed seeds, CPU, float32.
"""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_code import FASTDLLM, LLADA, git_show, import_file, reference_repo  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "text", "tests", "fixtures")

# Training text for the toy tokenizer (written for this script).
CORPUS = """
The cat sat on the mat and looked at the garden. The dog ran after the ball in the park.
A small bird sang a song in the morning light. Rain fell on the roof of the old house.
She wrote a letter to her friend and walked to the post office before noon.
Numbers like 1, 2, 3, 42 and 2026 appear in text; so do dates such as 27 November.
What is the capital of France? The capital of France is Paris. How many legs has a spider? Eight.
def add(a, b): return a + b  # code also appears in training data
The quick brown fox jumps over the lazy dog while the sun sets behind the hills.
Music, images and text can all be made by removing noise step by step.
""" * 4

LLADA_SPECIAL = ["<|endoftext|>", "<|startoftext|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>", "<|mdm_mask|>"]
DREAM_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"]

# LLaDA-8B-Instruct's chat template and Qwen2's ChatML (Dream-Instruct).
LLADA_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def load_references(tmp):
    llada = reference_repo(*LLADA)
    fastdllm = reference_repo(*FASTDLLM)
    refs = {}
    git_show(llada, "generate.py", f"{tmp}/llada_official/generate.py")
    refs["llada_generate"] = import_file("ref_llada_generate", f"{tmp}/llada_official/generate.py")
    for f in ["__init__.py", "configuration_llada.py", "modeling_llada.py"]:
        git_show(fastdllm, f"llada/model/{f}", f"{tmp}/fdl/llada/model/{f}")
    git_show(fastdllm, "llada/generate.py", f"{tmp}/fdl/llada/generate.py")
    for f in ["__init__.py", "configuration_dream.py", "modeling_dream.py", "generation_utils.py", "generation_utils_block.py", "tokenization_dream.py"]:
        git_show(fastdllm, f"dream/model/{f}", f"{tmp}/fdl/dream/model/{f}")
    # Fast-dLLM's generate.py does `from model.modeling_llada import LLaDAModelLM`
    sys.path.insert(0, f"{tmp}/fdl/llada")
    refs["fastdllm_generate"] = import_file("ref_fastdllm_generate", f"{tmp}/fdl/llada/generate.py")
    refs["llada_modeling"] = sys.modules["model.modeling_llada"]
    refs["llada_config"] = sys.modules["model.configuration_llada"]
    sys.path.pop(0)
    for k in [k for k in sys.modules if k == "model" or k.startswith("model.")]:
        del sys.modules[k]
    sys.path.insert(0, f"{tmp}/fdl/dream")
    import model.modeling_dream as dm  # noqa: E402
    import model.configuration_dream as dc  # noqa: E402
    import model.generation_utils as dg  # noqa: E402
    refs["dream_modeling"], refs["dream_config"], refs["dream_gen"] = dm, dc, dg
    return refs


def train_tokenizer(special, bos):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([CORPUS], trainer)
    if bos is not None:
        tok.post_processor = processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, tok.token_to_id(bos))])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return tok


def spread_init(model, seed, head_gain, mask_id):
    """Re-draw every weight so the tiny model's outputs are varied and its logits well
    separated (greedy decoding must not hinge on float rounding): linear ~ N(0, 1/fan_in)
    (q/k x3 for sharp, position-dependent attention; head x head_gain), embeddings
    N(0, 0.3^2) so attention dominates the residual stream, norm weights 1 + N(0, 0.1),
    biases N(0, 0.1). The head row of [MASK] is scaled down: trained models never
    predict it, and a toy that does would make weak tests."""
    g = torch.Generator().manual_seed(seed)
    for name, p in sorted(model.named_parameters()):
        with torch.no_grad():
            if p.ndim == 2 and ("wte" in name or "embed_tokens" in name):
                p.copy_(0.3 * torch.randn(p.shape, generator=g))
            elif p.ndim == 2:
                head = "lm_head" in name or name.endswith("transformer.ff_out.weight")
                gain = head_gain if head else 3.0 if ("q_proj" in name or "k_proj" in name) else 1.0
                p.copy_(torch.randn(p.shape, generator=g) * gain / p.shape[1] ** 0.5)
            elif "norm" in name or "ln_f" in name:
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
    with torch.no_grad():
        model.get_output_embeddings().weight[mask_id] *= 0.1


def save_weights(model, folder, shards=1):
    from safetensors.torch import save_file

    sd = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
    # LLaDA ties through its own `weight_tying` (its tie_weights ignores tie_word_embeddings)
    tied = model.config.weight_tying if hasattr(model.config, "weight_tying") else model.config.tie_word_embeddings
    if tied:
        sd = {k: v for k, v in sd.items() if not (k.endswith("lm_head.weight") or k.endswith("transformer.ff_out.weight"))}
    keys = sorted(sd)
    if shards == 1:
        save_file(sd, f"{folder}/model.safetensors", metadata={"format": "pt"})
        return
    per = (len(keys) + shards - 1) // shards
    weight_map = {}
    total = 0
    for i in range(shards):
        name = f"model-{i + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: sd[k] for k in keys[i * per:(i + 1) * per]}
        save_file(part, f"{folder}/{name}", metadata={"format": "pt"})
        for k, v in part.items():
            weight_map[k] = name
            total += v.numel() * v.element_size()
    with open(f"{folder}/model.safetensors.index.json", "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=1, sort_keys=True)


def write_tokenizer(folder, tok, bos, eos, template, extra):
    from transformers import PreTrainedTokenizerFast

    tok.save(f"{folder}/tokenizer.json")
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "eos_token": eos, "chat_template": template, **extra}
    if bos is not None:
        cfg["bos_token"] = bos
    with open(f"{folder}/tokenizer_config.json", "w") as f:
        json.dump(cfg, f, indent=1)
    return PreTrainedTokenizerFast.from_pretrained(folder)


def encode(hf_tok, prompt, chat):
    if chat:
        text = hf_tok.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False)
        return hf_tok(text, add_special_tokens=False)["input_ids"]
    return hf_tok(prompt)["input_ids"]


def llada_config(vocab, mask_id, eos_id, **shape):
    """LLaDA-8B's config.json options (Llama blocks, RMS norm, SwiGLU, RoPE 500000, no
    biases, untied head) with the given shape."""
    cfg = dict(
        mlp_ratio=4, vocab_size=vocab, embedding_size=vocab, rope_theta=500000.0, rms_norm_eps=1e-5,
        include_bias=False, include_qkv_bias=False, weight_tying=False,
        scale_logits=False, input_emb_norm=False, layer_norm_type="rms", block_type="llama",
        activation_type="silu", rope=True, rope_full_precision=True, alibi=False, flash_attention=False,
        attention_layer_norm=False, multi_query_attention=None, block_group_size=1,
        mask_token_id=mask_id, eos_token_id=eos_id, pad_token_id=eos_id, init_device="cpu",
    )
    cfg.update(shape)
    return cfg


def make_llada(refs, name, seed, cfg_extra, shards, cases):
    folder = f"{OUT}/{name}"
    os.makedirs(folder, exist_ok=True)
    tok = train_tokenizer(LLADA_SPECIAL, "<|startoftext|>")
    vocab = tok.get_vocab_size()
    mask_id, eos_id = tok.token_to_id("<|mdm_mask|>"), tok.token_to_id("<|endoftext|>")
    hf_tok = write_tokenizer(folder, tok, "<|startoftext|>", "<|endoftext|>", LLADA_TEMPLATE, {"pad_token": "<|endoftext|>"})
    shape = dict(d_model=64, n_heads=4, n_kv_heads=4, n_layers=2, mlp_hidden_size=96, max_sequence_length=256)
    config = llada_config(vocab, mask_id, eos_id, **{**shape, **cfg_extra})
    LLaDAConfig = refs["llada_config"].LLaDAConfig
    cfg = LLaDAConfig(**config)
    torch.manual_seed(seed)
    model = refs["llada_modeling"].LLaDAModelLM(cfg, init_params=True).eval()
    spread_init(model, seed, 4.0, mask_id)
    save_weights(model, folder, shards)
    conf = dict(config, model_type="llada", architectures=["LLaDAModelLM"], torch_dtype="float32")
    conf.pop("init_device")
    with open(f"{folder}/config.json", "w") as f:
        json.dump(conf, f, indent=1, sort_keys=True)

    gen = refs["llada_generate"].generate
    fdl = refs["fastdllm_generate"]
    out = {"mask_id": mask_id, "eos_id": eos_id, "cases": []}
    prompt_ids = encode(hf_tok, "The cat sat on", False)
    canvas = prompt_ids + [mask_id] * 12
    with torch.no_grad():
        logits = model(torch.tensor([canvas])).logits[0]
    out["first_logits"] = {"canvas": canvas, "logits": logits.tolist()}
    for c in cases:
        ids = encode(hf_tok, c["prompt"], c.get("chat", False))
        x = torch.tensor([ids])
        kw = dict(steps=c["steps"], gen_length=c["gen_len"], block_length=c["block_len"], temperature=0.0, mask_id=mask_id)
        with torch.no_grad():
            if c.get("decoder") == "fastdllm":
                fn = {"none": fdl.generate, "prefix": fdl.generate_with_prefix_cache, "dual": fdl.generate_with_dual_cache}[c.get("cache", "none")]
                y, nfe = fn(model, x, remasking="low_confidence", threshold=c.get("threshold"), **kw)
            else:
                y = gen(model, x, attention_mask=torch.ones_like(x), cfg_scale=c.get("cfg", 0.0), remasking="low_confidence", **kw)
                nfe = c["steps"] * (2 if c.get("cfg", 0.0) > 0 else 1)
        out["cases"].append(dict(c, prompt_ids=ids, generated_ids=y[0, len(ids):].tolist(), nfe=nfe))
    with open(f"{folder}/expected.json", "w") as f:
        json.dump(out, f)
    print(name, "vocab", vocab, "cases", len(cases))


def make_dream(refs, name, seed, cases):
    folder = f"{OUT}/{name}"
    os.makedirs(folder, exist_ok=True)
    tok = train_tokenizer(DREAM_SPECIAL, None)
    vocab = tok.get_vocab_size()
    mask_id, eos_id = tok.token_to_id("<|mask|>"), tok.token_to_id("<|endoftext|>")
    hf_tok = write_tokenizer(folder, tok, None, "<|endoftext|>", CHATML_TEMPLATE, {"pad_token": "<|endoftext|>", "mask_token": "<|mask|>"})
    config = dict(
        vocab_size=vocab, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, hidden_act="silu", max_position_embeddings=256, rms_norm_eps=1e-6,
        tie_word_embeddings=False, rope_theta=10000.0, rope_scaling=None, use_sliding_window=False,
        attention_dropout=0.0, mask_token_id=mask_id, pad_token_id=eos_id, bos_token_id=eos_id, eos_token_id=eos_id,
    )
    DreamConfig = refs["dream_config"].DreamConfig
    cfg = DreamConfig(**config)
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(seed)
    model = refs["dream_modeling"].DreamModel(cfg).eval()
    spread_init(model, seed, 4.0, mask_id)
    save_weights(model, folder, 1)
    conf = dict(config, model_type="Dream", architectures=["DreamModel"], torch_dtype="float32")
    with open(f"{folder}/config.json", "w") as f:
        json.dump(conf, f, indent=1, sort_keys=True)

    out = {"mask_id": mask_id, "eos_id": eos_id, "cases": []}
    prompt_ids = encode(hf_tok, "The cat sat on", False)
    canvas = prompt_ids + [mask_id] * 12
    with torch.no_grad():
        logits = model(torch.tensor([canvas]), "full", None).logits[0]
    out["first_logits"] = {"canvas": canvas, "logits": logits.tolist()}
    GenCfg = refs["dream_gen"].DreamGenerationConfig
    for c in cases:
        ids = encode(hf_tok, c["prompt"], c.get("chat", False))
        gc = GenCfg(mask_token_id=mask_id, pad_token_id=eos_id, eos_token_id=eos_id, max_new_tokens=c["gen_len"],
                    steps=c["steps"], alg=c["alg"], temperature=0.0, return_dict_in_generate=True)
        with torch.no_grad():
            y = model.diffusion_generate(torch.tensor([ids]), generation_config=gc).sequences
        out["cases"].append(dict(c, prompt_ids=ids, generated_ids=y[0, len(ids):].tolist(), nfe=c["steps"]))
    with open(f"{folder}/expected.json", "w") as f:
        json.dump(out, f)
    print(name, "vocab", vocab, "cases", len(cases))


def main():
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        refs = load_references(tmp)
        llada_cases = [
            dict(id="plain", prompt="The cat sat on", gen_len=16, steps=16, block_len=16),
            dict(id="few-steps", prompt="The dog ran after", gen_len=16, steps=4, block_len=16),
            dict(id="semi-ar", prompt="A small bird", gen_len=16, steps=8, block_len=4),
            dict(id="cfg", prompt="Rain fell on the roof", gen_len=12, steps=6, block_len=12, cfg=1.5),
            dict(id="chat", prompt="What is the capital of France?", chat=True, gen_len=16, steps=16, block_len=8),
            dict(id="threshold", decoder="fastdllm", prompt="The quick brown fox", gen_len=16, steps=16, block_len=8, threshold=0.5),
            dict(id="prefix-cache", decoder="fastdllm", cache="prefix", prompt="The cat sat on", gen_len=16, steps=16, block_len=8),
            dict(id="dual-cache", decoder="fastdllm", cache="dual", prompt="The cat sat on", gen_len=16, steps=16, block_len=8),
            dict(id="dual-cache-threshold", decoder="fastdllm", cache="dual", prompt="Music, images and", gen_len=16, steps=16, block_len=8, threshold=0.5),
        ]
        make_llada(refs, "llada-tiny", 1, {}, 1, llada_cases)
        make_llada(refs, "llada-tiny-gqa", 2, dict(n_kv_heads=2, weight_tying=True, scale_logits=True), 2, llada_cases[:5])
        dream_cases = [
            dict(id="maskgit", prompt="The cat sat on", gen_len=16, steps=16, alg="maskgit_plus"),
            dict(id="few-steps", prompt="The dog ran after", gen_len=16, steps=5, alg="maskgit_plus"),
            dict(id="margin", prompt="A small bird", gen_len=12, steps=12, alg="topk_margin"),
            dict(id="entropy", prompt="What is the capital", gen_len=12, steps=6, alg="entropy"),
            dict(id="chat", prompt="What is the capital of France?", chat=True, gen_len=12, steps=12, alg="maskgit_plus"),
            # one prompt token: position 1 reads the shifted logits of row 0
            dict(id="one-token-prompt", prompt="The", gen_len=8, steps=8, alg="maskgit_plus"),
        ]
        make_dream(refs, "dream-tiny", 3, dream_cases)


if __name__ == "__main__":
    main()
