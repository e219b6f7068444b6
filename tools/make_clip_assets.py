#!/usr/bin/env python3
"""The CLIP BPE vocabulary stipple ships for single-file checkpoints that come without a
tokenizer, and the token ids the reference tokenizer gives for a set of prompts.

From the open-clip-torch 3.3.0 wheel on PyPI (MIT; its `bpe_simple_vocab_16e6.txt.gz` is
the BPE file of OpenAI's CLIP, which every Stable Diffusion text encoder uses):
  image/assets/clip/merges.txt.gz   the 48,894 merges CLIP's 49,408-token vocabulary uses
                                     (of the file's 262,144), gzip -9 with no timestamp
  image/assets/clip/NOTICE           open_clip's licence
  image/tests/fixtures/clip_builtin_tokens.json
                                     open_clip's own SimpleTokenizer on the prompts below
                                     (77 ids each: start, tokens, end, zero padding)

  .venv-ref/bin/pip install open-clip-torch==3.3.0 ftfy regex
  .venv-ref/bin/python tools/make_clip_assets.py
"""

import gzip
import importlib.metadata
import json
import os

import open_clip.tokenizer as oct

HERE = os.path.dirname(os.path.abspath(__file__))
ASSETS = os.path.join(HERE, "..", "image", "assets", "clip")
FIXTURE = os.path.join(HERE, "..", "image", "tests", "fixtures", "clip_builtin_tokens.json")

PROMPTS = [
    "a photograph of an astronaut riding a horse",
    "A Cozy Cabin in the woods, 4k, highly detailed, trending on artstation!!!",
    "portrait of a woman, oil painting by John Singer Sargent (1890)",
    "emoji \U0001F600 and caf\u00e9 cr\u00e8me",
    "  lots   of\nwhitespace\tand  CAPS  ",
    "numbers 12345 and 3.14, dates 2026-12-05",
    "",
]


def main():
    assert importlib.metadata.version("open-clip-torch") == "3.3.0", "pin open-clip-torch==3.3.0"
    src = os.path.join(os.path.dirname(oct.__file__), "bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(src).read().decode("utf-8").split("\n")
    merges = lines[1 : 49152 - 256 - 2 + 1]
    os.makedirs(ASSETS, exist_ok=True)
    with open(os.path.join(ASSETS, "merges.txt.gz"), "wb") as f:
        f.write(gzip.compress(("\n".join(merges) + "\n").encode("utf-8"), compresslevel=9, mtime=0))
    dist = importlib.metadata.distribution("open-clip-torch")
    licence = next(p for p in dist.files if p.name == "LICENSE")
    with open(os.path.join(ASSETS, "NOTICE"), "w") as f:
        f.write(
            "merges.txt.gz: the first 48,894 merges of bpe_simple_vocab_16e6.txt.gz, the byte-level BPE\n"
            "of OpenAI's CLIP, as shipped in the open-clip-torch 3.3.0 package (PyPI), whose licence follows.\n"
            "Extracted by tools/make_clip_assets.py.\n\n" + licence.read_text()
        )
    tok = oct.SimpleTokenizer()
    cases = [{"prompt": p, "ids": tok([p])[0].tolist()} for p in PROMPTS]
    json.dump({"tokenizer": "open_clip.tokenizer.SimpleTokenizer 3.3.0", "cases": cases}, open(FIXTURE, "w"), indent=1)
    print(f"{len(merges)} merges, {os.path.getsize(os.path.join(ASSETS, 'merges.txt.gz'))} bytes; {len(cases)} prompts")


if __name__ == "__main__":
    main()
