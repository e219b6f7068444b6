#!/usr/bin/env python3
"""The README's music samples of the stipple-mini music model: a few prompts, each made by
`stipple audio` (fixed seed, 4 s) into docs/music/NAME.wav + NAME.png, and one labelled
sheet of their spectrograms (docs/stipple-mini-music.png). Needs Pillow (pip install pillow).

Usage: tools/mini_music_samples.py STIPPLE_BIN [OUT_DIR]   (OUT_DIR default: docs)
"""
import subprocess
import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

SAMPLES = [
    ("bass-70bpm", "bass chords in c major, 70 bpm, with drums"),
    ("piano-110bpm", "piano chords in c major, 110 bpm, with drums"),
    ("flute-150bpm", "flute chords in c major, 150 bpm, with drums"),
    ("violin-melody", "violin melody in a minor, 90 bpm"),
]
SECONDS = "4"
SCALE = 2  # 64-bin spectrograms shown 128 px high
LABEL_H = 18


def main():
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    stipple = sys.argv[1]
    out = Path(sys.argv[2] if len(sys.argv) > 2 else "docs")
    (out / "music").mkdir(parents=True, exist_ok=True)
    tiles = []
    for i, (name, prompt) in enumerate(SAMPLES):
        wav = out / "music" / f"{name}.wav"
        subprocess.run([stipple, "--seed", str(i), "audio", prompt, "--seconds", SECONDS, "--out", str(wav), "--overwrite"], check=True)
        spec = Image.open(wav.with_suffix(".png")).convert("RGB")
        tiles.append((prompt, spec.resize((spec.width * SCALE, spec.height * SCALE), Image.NEAREST)))
    width = max(t.width for _, t in tiles)
    sheet = Image.new("RGB", (width, sum(t.height + LABEL_H for _, t in tiles)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    y = 0
    for prompt, tile in tiles:
        draw.text((2, y + 3), prompt, fill="black", font=font)
        sheet.paste(tile, (0, y + LABEL_H))
        y += tile.height + LABEL_H
    sheet.save(out / "stipple-mini-music.png")
    print(f"wrote {len(tiles)} clips to {out / 'music'} and {out / 'stipple-mini-music.png'}")


if __name__ == "__main__":
    main()
