#!/usr/bin/env python3
"""What real single-file Stable Diffusion checkpoints hold, and the configs diffusers gives
them, for testing stipple's config derivation at full size without full-size weights.

For SD 1.5, SD 2.1 (768, v-prediction) and SDXL base, from the original LDM inference
configs (the reference's input) this script asks diffusers (0.42.1) for the UNet and VAE
configs (`create_unet_diffusers_config_from_ldm`, `create_vae_diffusers_config_from_ldm`),
builds the networks with them on PyTorch's meta device (shapes, no memory), renames their
tensors to the original LDM / OpenCLIP names with the converters of
tools/make_image_fixtures.py (checked there against diffusers' own `from_single_file`), and
writes every tensor's name and shape next to the expected configs:
image/tests/fixtures/single_file_listings.json.gz.

The text encoders are the published ones: OpenAI CLIP ViT-L/14 (SD 1.x, SDXL's first),
OpenCLIP ViT-H/14 (SD 2.x, 24 layers, of which diffusers' config keeps 23: SD 2 reads the
penultimate layer) and OpenCLIP ViT-bigG/14 (SDXL's second).

The LDM configs are read from STIPPLE_LDM_CONFIGS, a folder holding
  v1-inference.yaml      CompVis/stable-diffusion configs/stable-diffusion/v1-inference.yaml
                         (commit 36de52cb6e05c3bb1b435afcccc29279a4fdf616)
  v2-inference-v.yaml    Stability-AI/stablediffusion configs/stable-diffusion/intel/v2-inference-v-fp32.yaml
                         (commit fa4401ece1bced3d237ecded5b8ad363f4ac3971)
  sd_xl_base.yaml        Stability-AI/generative-models configs/inference/sd_xl_base.yaml
                         (commit 3df5c81a2b58d838b23ab9d56d54dd23e05bc55e)

  STIPPLE_LDM_CONFIGS=... .venv-ref/bin/python tools/make_single_file_listings.py
"""

import gzip
import json
import os
import sys

import torch
import yaml
from diffusers import AutoencoderKL, UNet2DConditionModel
from diffusers.loaders.single_file_utils import create_unet_diffusers_config_from_ldm, create_vae_diffusers_config_from_ldm
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from make_image_fixtures import clip_to_ldm, open_clip_to_ldm, unet_to_ldm, vae_to_ldm  # noqa: E402

OUT = os.path.join(HERE, "..", "image", "tests", "fixtures", "single_file_listings.json.gz")

CLIP_L = dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
              max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768)
OPEN_CLIP_H = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                   max_position_embeddings=77, hidden_act="gelu", projection_dim=1024)
OPEN_CLIP_BIGG = dict(vocab_size=49408, hidden_size=1280, intermediate_size=5120, num_hidden_layers=32, num_attention_heads=20,
                      max_position_embeddings=77, hidden_act="gelu", projection_dim=1280)

FAMILIES = {
    "sd1": ("v1-inference.yaml", 512, [("cond_stage_model.transformer.", CLIP_L, False)]),
    "sd2": ("v2-inference-v.yaml", 768, [("cond_stage_model.model.", OPEN_CLIP_H, True)]),
    "sdxl": ("sd_xl_base.yaml", 1024, [("conditioner.embedders.0.transformer.", CLIP_L, False),
                                      ("conditioner.embedders.1.model.", OPEN_CLIP_BIGG, True)]),
}


def shapes(sd):
    return {k: list(v.shape) for k, v in sd.items()}


def main():
    root = os.environ.get("STIPPLE_LDM_CONFIGS")
    if not root:
        sys.exit("set STIPPLE_LDM_CONFIGS (see this script's docstring)")
    out = {}
    for family, (yaml_name, image_size, encoders) in FAMILIES.items():
        original = yaml.safe_load(open(os.path.join(root, yaml_name)))
        unet_cfg = create_unet_diffusers_config_from_ldm(original, {}, image_size=image_size)
        vae_cfg = create_vae_diffusers_config_from_ldm(original, {}, image_size=image_size)
        keys = {}
        with torch.device("meta"):
            unet = UNet2DConditionModel(**unet_cfg)
            vae = AutoencoderKL(**vae_cfg)
            keys.update(shapes(unet_to_ldm(unet.state_dict(), unet.config)))
            keys.update(shapes(vae_to_ldm(vae.state_dict(), vae.config)))
            for prefix, cfg, open_clip in encoders:
                cls = CLIPTextModelWithProjection if open_clip else CLIPTextModel
                model = cls(CLIPTextConfig(**cfg))
                sd = model.state_dict()
                keys.update(shapes(open_clip_to_ldm(sd, prefix) if open_clip else clip_to_ldm(sd, prefix)))
        out[family] = {
            "keys": keys,
            "unet": unet_cfg,
            "vae": vae_cfg,
            "text_encoders": [dict(cfg, num_hidden_layers=cfg["num_hidden_layers"] - (1 if family == "sd2" else 0)) for _, cfg, _ in encoders],
        }
        print(f"{family}: {len(keys)} tensors")
    with open(OUT, "wb") as f:
        f.write(gzip.compress(json.dumps(out, separators=(",", ":"), sort_keys=True).encode(), compresslevel=9, mtime=0))
    print(f"{OUT}: {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
