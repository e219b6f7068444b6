#!/usr/bin/env python3
"""Write a diffusers Stable Diffusion folder (SD 1.x / 2.x / SDXL) as one A1111-style
single-file checkpoint with the original LDM key names, the layout model sites distribute.
Used to check end to end, at full size, that `stipple image --model FILE.safetensors`
(no --config: configs derived from the shapes) gives the same image as the folder.

  .venv-ref/bin/python tools/single_file_from_folder.py FOLDER OUT.safetensors

The renaming is tools/make_image_fixtures.py's (checked there against diffusers' own
`from_single_file`). Tensors are read and written as stored (no dtype change).
"""

import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_image_fixtures import clip_to_ldm, open_clip_to_ldm, unet_to_ldm, vae_to_ldm  # noqa: E402


def weights(folder, component):
    d = os.path.join(folder, component)
    files = sorted(f for f in os.listdir(d) if f.endswith(".safetensors") and f.count(".") == 1)
    sd = {}
    for f in files:
        sd.update(load_file(os.path.join(d, f)))
    return sd


def main():
    folder, out = sys.argv[1], sys.argv[2]
    cfg = lambda c: json.load(open(os.path.join(folder, c, "config.json")))  # noqa: E731
    sd = {}
    sd.update(unet_to_ldm(weights(folder, "unet"), cfg("unet")))
    sd.update(vae_to_ldm(weights(folder, "vae"), cfg("vae")))
    if os.path.isdir(os.path.join(folder, "text_encoder_2")):
        sd.update(clip_to_ldm(weights(folder, "text_encoder"), "conditioner.embedders.0.transformer."))
        sd.update(open_clip_to_ldm(weights(folder, "text_encoder_2"), "conditioner.embedders.1.model."))
    elif cfg("text_encoder").get("hidden_act") == "gelu":
        sd.update(open_clip_to_ldm(weights(folder, "text_encoder"), "cond_stage_model.model."))
    else:
        sd.update(clip_to_ldm(weights(folder, "text_encoder"), "cond_stage_model.transformer."))
    save_file({k: v.contiguous() for k, v in sd.items()}, out)
    print(f"{out}: {len(sd)} tensors, {os.path.getsize(out) / 2**30:.2f} GiB")


if __name__ == "__main__":
    torch.set_grad_enabled(False)
    main()
