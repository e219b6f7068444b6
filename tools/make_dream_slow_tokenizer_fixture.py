#!/usr/bin/env python3
"""Dream as it is on the hub: a model folder whose tokenizer comes as the slow tokenizer's
files only (vocab.json, merges.txt, added_tokens.json, special_tokens_map.json and a
tokenizer_config.json naming DreamTokenizer; no tokenizer.json), as Dream-org/Dream-v0-*
ship it.

Writes text/tests/fixtures/dream-slow-tok from the dream-tiny fixture: its byte-level BPE
with the special tokens moved after the vocabulary (where Qwen2's added tokens live), its
weights and config (special ids updated), and `expected_tokenizer.json`: the ids (and
decoded texts) that Dream's own tokenizer class, `tokenization_dream.py` as vendored in
NVlabs/Fast-dLLM at the pinned commit, gives for a set of strings. stipple must rebuild the
same tokenizer from these files.

  python3 -m venv .venv-text && .venv-text/bin/pip install torch==2.11.0 transformers==4.46.3 einops safetensors
  export STIPPLE_FASTDLLM_MIRROR=...   # a clone of NVlabs/Fast-dLLM (see tools/reference_code.py)
  .venv-text/bin/python tools/make_dream_slow_tokenizer_fixture.py
"""

import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from reference_code import FASTDLLM, git_show, reference_repo  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.join(HERE, "..", "text", "tests", "fixtures", "dream-tiny")
OUT = os.path.join(HERE, "..", "text", "tests", "fixtures", "dream-slow-tok")
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|mask|>"]

# Strings that exercise the pre-tokenizer: contractions, digits (split one by one), runs of
# spaces and newlines, punctuation, non-ASCII letters, a decomposed accent (NFC), emoji,
# and special tokens inside text.
CASES = [
    "Hello world",
    "The cat sat on the mat.",
    "I'm sure you'll see it's THEY'RE",
    "Numbers like 12345 and 3.14159, dates 27 November 2026.",
    "  leading and   several    spaces  ",
    "lines\n\nwith\r\nbreaks\n",
    "caf\u00e9 na\u0131ve cafe\u0301 \u00fcber Stra\u00dfe",
    "emoji \U0001F600 and \u4e2d\u6587 text",
    "<|im_start|>user\nWhat is 2+2?<|im_end|>\n<|im_start|>assistant\n",
    "def add(a, b):\n    return a + b  # code",
    "<|mask|><|mask|> holes <|endoftext|>",
    "",
]


def main():
    src_tok = json.load(open(os.path.join(SRC, "tokenizer.json")))
    model = src_tok["model"]
    old = model["vocab"]
    specials = {s: old[s] for s in SPECIAL}
    # the BPE vocabulary without the specials, renumbered in order; specials after it
    plain = sorted((i, t) for t, i in old.items() if t not in specials)
    vocab = {t: n for n, (_, t) in enumerate(plain)}
    added = {s: len(vocab) + k for k, s in enumerate(SPECIAL)}
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]

    shutil.rmtree(OUT, ignore_errors=True)
    os.makedirs(OUT)
    with open(os.path.join(OUT, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(OUT, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    with open(os.path.join(OUT, "added_tokens.json"), "w") as f:
        json.dump(added, f, indent=2)
    src_cfg = json.load(open(os.path.join(SRC, "tokenizer_config.json")))
    tok_cfg = {
        "add_prefix_space": False,
        "added_tokens_decoder": {str(i): {"content": s, "lstrip": False, "normalized": False, "rstrip": False, "single_word": False,
                                          "special": True} for s, i in added.items()},
        "additional_special_tokens": ["<|im_start|>", "<|im_end|>"],
        "auto_map": {"AutoTokenizer": ["tokenization_dream.DreamTokenizer", None]},
        "bos_token": None,
        "chat_template": src_cfg["chat_template"],
        "clean_up_tokenization_spaces": False,
        "eos_token": "<|endoftext|>",
        "errors": "replace",
        "mask_token": "<|mask|>",
        "model_max_length": 131072,
        "pad_token": "<|endoftext|>",
        "split_special_tokens": False,
        "tokenizer_class": "DreamTokenizer",
        "unk_token": None,
    }
    with open(os.path.join(OUT, "tokenizer_config.json"), "w") as f:
        json.dump(tok_cfg, f, indent=2)
    with open(os.path.join(OUT, "special_tokens_map.json"), "w") as f:
        json.dump({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"], "eos_token": "<|endoftext|>",
                   "mask_token": "<|mask|>", "pad_token": "<|endoftext|>"}, f, indent=2)
    cfg = json.load(open(os.path.join(SRC, "config.json")))
    eos = added["<|endoftext|>"]
    cfg.update(bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, mask_token_id=added["<|mask|>"])
    with open(os.path.join(OUT, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1, sort_keys=True)
    shutil.copy(os.path.join(SRC, "model.safetensors"), OUT)

    # the reference: Dream's own slow tokenizer class on exactly these files
    repo = reference_repo(*FASTDLLM)
    with tempfile.TemporaryDirectory() as tmp:
        git_show(repo, "dream/model/tokenization_dream.py", f"{tmp}/tokenization_dream.py")
        sys.path.insert(0, tmp)
        from tokenization_dream import DreamTokenizer  # noqa: E402

        tok = DreamTokenizer.from_pretrained(OUT)
        cases = []
        for text in CASES:
            ids = tok.encode(text, add_special_tokens=False)
            cases.append({"text": text, "ids": ids, "decoded": tok.decode(ids, skip_special_tokens=False)})
        assert len(tok) == len(vocab) + len(added), (len(tok), len(vocab), len(added))
    with open(os.path.join(OUT, "expected_tokenizer.json"), "w", encoding="utf-8") as f:
        json.dump({"reference": f"tokenization_dream.py of {repo.url} at {repo.commit}", "cases": cases}, f, indent=1, ensure_ascii=False)
    print(f"wrote {OUT}: {len(vocab)} BPE tokens, {len(merges)} merges, {len(added)} added tokens, {len(cases)} cases")


if __name__ == "__main__":
    main()
