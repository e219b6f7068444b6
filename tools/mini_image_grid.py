#!/usr/bin/env python3
"""The README's sample grid of the stipple-mini image model: 16 prompts, each drawn by
`stipple image` (same seed) without guidance and with it, beside the training picture of
that caption, labelled. Needs Pillow (pip install pillow).

Usage: tools/mini_image_grid.py STIPPLE_BIN EMOJI_DATA_DIR OUT.png [--guidance G]
"""
import argparse
import json
import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

PROMPTS = [
    "red apple", "tangerine", "banana", "watermelon",
    "grinning face", "frog face", "dog face", "crab",
    "blue heart", "green heart", "fire", "snowman",
    "slice of pizza", "christmas tree", "rocket", "ghost",
]
SCALE = 3  # 32 px pictures shown at 96 px
LABEL_H = 18


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("stipple")
    ap.add_argument("data")
    ap.add_argument("out")
    ap.add_argument("--guidance", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    data = Path(a.data)
    files = {}
    for line in (data / "metadata.jsonl").read_text().splitlines():
        r = json.loads(line)
        files[r["text"]] = data / r["file_name"]
    font = ImageFont.load_default()
    with tempfile.TemporaryDirectory() as tmp:
        cells = []
        for i, prompt in enumerate(PROMPTS):
            shots = []
            for g in (1.0, a.guidance):
                out = Path(tmp) / f"{i}-{g}.png"
                subprocess.run([a.stipple, "--seed", str(a.seed + i), "image", prompt, "--guidance", str(g), "--out", str(out)],
                               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                shots.append(Image.open(out).convert("RGB"))
            shots.append(Image.open(files[prompt]).convert("RGB"))
            cells.append((prompt, shots))
        side = shots[0].width * SCALE
        pad = 6
        cell_w, cell_h = 3 * side + 2 * pad, side + LABEL_H
        cols, rows = 4, (len(cells) + 3) // 4
        head = 22
        grid = Image.new("RGB", (cols * (cell_w + 2 * pad), head + rows * (cell_h + 2 * pad)), "white")
        d = ImageDraw.Draw(grid)
        d.text((pad, 4), f"each cell: guidance 1 | guidance {a.guidance:g} | the training picture of the caption "
               f"(stipple image, its default 30 DDIM steps, seed {a.seed}+i)", fill="black", font=font)
        for k, (prompt, shots) in enumerate(cells):
            x0 = (k % cols) * (cell_w + 2 * pad) + pad
            y0 = head + (k // cols) * (cell_h + 2 * pad) + pad
            for j, im in enumerate(shots):
                grid.paste(im.resize((side, side), Image.NEAREST), (x0 + j * (side + pad), y0))
            d.text((x0, y0 + side + 3), f'"{prompt}"', fill="black", font=font)
        grid.save(a.out)


if __name__ == "__main__":
    main()
