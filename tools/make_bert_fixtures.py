#!/usr/bin/env python3
"""Tiny random BERT and ModernBERT masked LMs in the hub layout, with the outputs of the
reference implementations, for stipple-text's BERT-family parity tests.

Writes text/tests/fixtures/{bert-tiny,modernbert-tiny}/ (config.json in the hub's
format, model.safetensors, tokenizer.json: a WordPiece vocabulary trained here,
tokenizer_config.json) and expected.json:
  * first_logits: transformers' *ForMaskedLM logits for one canvas (to 1e-4);
  * cases: greedy decodes by the official ML-GSAI/LLaDA generate.py run unchanged on the
    BERT model (any masked LM works with it), read at the commit pinned in
    tools/reference_code.py from a local clone named by STIPPLE_LLADA_MIRROR. There is no
    default location: make the clone once (REF: any folder outside this checkout):
      REF=$PWD/../stipple-ref
      git clone https://github.com/ML-GSAI/LLaDA $REF/LLaDA && git -C $REF/LLaDA checkout b7e6c3565f194352da44b38dd12b6970597309f3
      export STIPPLE_LLADA_MIRROR=$REF/LLaDA
Needs torch and transformers >= 4.48 (ModernBERT), e.g. the environment of the image
fixtures (transformers==5.17.0):
  python3 -m venv .venv-ref && .venv-ref/bin/pip install torch==2.11.0 transformers==5.17.0 tokenizers safetensors
  PYTHON=.venv-ref/bin/python
  $PYTHON tools/make_bert_fixtures.py [out_dir]
"""

import json
import os
import sys
import tempfile

import torch

sys.path.insert(0, os.path.dirname(__file__))
from make_text_fixtures import CORPUS  # noqa: E402
from reference_code import LLADA, git_show, import_file, reference_repo  # noqa: E402

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "text", "tests", "fixtures")


def wordpiece_tokenizer(folder):
    """A WordPiece tokenizer over the corpus, built deterministically (the tokenizers
    trainer breaks frequency ties differently from run to run): the special tokens, every
    character and its `##` continuation, then every word, each group sorted."""
    import re

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    text = CORPUS.lower()
    words = sorted(set(re.findall(r"[a-z0-9]+", text)))
    chars = sorted(set(c for c in text if not c.isspace()))
    pieces = special + chars + ["##" + c for c in chars if c.isalnum()] + [w for w in words if len(w) > 1]
    vocab = {p: i for i, p in enumerate(dict.fromkeys(pieces))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    tok.save(f"{folder}/tokenizer.json")
    with open(f"{folder}/tokenizer_config.json", "w") as f:
        json.dump({"tokenizer_class": "PreTrainedTokenizerFast", "mask_token": "[MASK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]", "unk_token": "[UNK]"}, f, indent=1)
    return tok


def spread(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=g) * (1.0 if "embeddings" in name else 2.0 / p.shape[1] ** 0.5))
            elif "norm" in name.lower() and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            else:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))


def make(name, family, seed, generate):
    from safetensors.torch import save_file
    from transformers import BertConfig, BertForMaskedLM, ModernBertConfig, ModernBertForMaskedLM, PreTrainedTokenizerFast

    folder = f"{OUT}/{name}"
    os.makedirs(folder, exist_ok=True)
    tok = wordpiece_tokenizer(folder)
    vocab = tok.get_vocab_size()
    mask_id, pad_id = tok.token_to_id("[MASK]"), tok.token_to_id("[PAD]")
    if family == "bert":
        hub = dict(model_type="bert", architectures=["BertForMaskedLM"], vocab_size=vocab, hidden_size=64, num_hidden_layers=2,
                   num_attention_heads=4, intermediate_size=128, hidden_act="gelu", hidden_dropout_prob=0.0,
                   attention_probs_dropout_prob=0.0, max_position_embeddings=128, type_vocab_size=2, initializer_range=0.02,
                   layer_norm_eps=1e-12, pad_token_id=pad_id, position_embedding_type="absolute", classifier_dropout=None)
        model = BertForMaskedLM(BertConfig(**hub))
    else:
        hub = dict(model_type="modernbert", architectures=["ModernBertForMaskedLM"], vocab_size=vocab, hidden_size=64,
                   intermediate_size=96, num_hidden_layers=3, num_attention_heads=4, hidden_activation="gelu",
                   max_position_embeddings=128, norm_eps=1e-5, norm_bias=False, pad_token_id=pad_id,
                   eos_token_id=tok.token_to_id("[SEP]"), bos_token_id=tok.token_to_id("[CLS]"),
                   cls_token_id=tok.token_to_id("[CLS]"), sep_token_id=tok.token_to_id("[SEP]"),
                   global_attn_every_n_layers=3, local_attention=128, global_rope_theta=160000.0, local_rope_theta=10000.0,
                   attention_bias=False, mlp_bias=False, decoder_bias=True, tie_word_embeddings=True,
                   classifier_pooling="cls", sparse_prediction=False)
        model = ModernBertForMaskedLM(ModernBertConfig(**hub))
        model.config._attn_implementation = "eager"
    model.eval()
    spread(model, seed)
    # trained masked LMs never predict [MASK] itself (stipple never proposes it either)
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("bias") and tuple(p.shape) == (vocab,):
                p[mask_id] = -10.0
    sd = {k: v.contiguous().clone() for k, v in model.state_dict().items()}
    if family == "modernbert":
        sd.pop("decoder.weight", None)  # tied to the embeddings, as in the hub files
    save_file(sd, f"{folder}/model.safetensors", metadata={"format": "pt"})
    with open(f"{folder}/config.json", "w") as f:
        json.dump(hub, f, indent=1, sort_keys=True)
    hf_tok = PreTrainedTokenizerFast.from_pretrained(folder)
    out = {"mask_id": mask_id, "cases": []}
    prompt = hf_tok("the cat sat on")["input_ids"]
    canvas = prompt + [mask_id] * 10
    with torch.no_grad():
        out["first_logits"] = {"canvas": canvas, "logits": model(torch.tensor([canvas])).logits[0].tolist()}
    for case in [dict(id="plain", prompt="the cat sat on", gen_len=10, steps=10, block_len=10),
                 dict(id="semi-ar", prompt="a small bird sang", gen_len=12, steps=6, block_len=4)]:
        ids = hf_tok(case["prompt"])["input_ids"]
        x = torch.tensor([ids])
        with torch.no_grad():
            y = generate(model, x, attention_mask=torch.ones_like(x), steps=case["steps"], gen_length=case["gen_len"],
                         block_length=case["block_len"], temperature=0.0, cfg_scale=0.0, remasking="low_confidence", mask_id=mask_id)
        out["cases"].append(dict(case, prompt_ids=ids, generated_ids=y[0, len(ids):].tolist(), nfe=case["steps"]))
    with open(f"{folder}/expected.json", "w") as f:
        json.dump(out, f)
    print(name, "vocab", vocab)


def main():
    llada = reference_repo(*LLADA)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        git_show(llada, "generate.py", f"{tmp}/generate.py")
        generate = import_file("ref_llada_generate", f"{tmp}/generate.py").generate
        make("bert-tiny", "bert", 5, generate)
        make("modernbert-tiny", "modernbert", 6, generate)


if __name__ == "__main__":
    main()
