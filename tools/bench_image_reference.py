#!/usr/bin/env python3
"""The image benchmark's model and its PyTorch / diffusers reference timings.

  make OUT           write a Stable Diffusion 1.5-shaped pipeline with random weights
                     (the real UNet / VAE / CLIP-L configs of stable-diffusion-v1-5, the
                     tokenizer from image/tests/fixtures/sd1-tiny) to OUT, in the diffusers layout
  unet OUT RUNS      time one UNet evaluation as the SD pipeline makes it: batch 2 (CFG),
                     64x64 latents (a 512x512 image), 77 x 768 context, f32; prints JSON
                     with every run and the median (DEVICE=cuda DTYPE=float16: on a GPU,
                     in half precision, with PyTorch's default SDPA attention)
  e2e OUT STEPS      one 512x512 txt2img generation (STEPS steps, PNDM, CFG 7.5); prints
                     JSON with the wall time (run it under /usr/bin/time -v for peak RSS)

Needs torch==2.11.0 diffusers==0.42.1 transformers==5.17.0 (see tools/bench_image.sh).
Threads: torch.set_num_threads(THREADS or 2), the same as stipple's rayon pool.
"""

import json
import os
import shutil
import statistics
import sys
import time

import torch

THREADS = int(os.environ.get("THREADS", "2"))
torch.set_num_threads(THREADS)
HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER = os.path.join(HERE, "..", "image", "tests", "fixtures", "sd1-tiny", "tokenizer")

SD15_UNET = dict(
    sample_size=64, in_channels=4, out_channels=4, layers_per_block=2, block_out_channels=[320, 640, 1280, 1280],
    down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    cross_attention_dim=768, attention_head_dim=8, norm_num_groups=32,
)
SD15_VAE = dict(
    in_channels=3, out_channels=3, latent_channels=4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
    down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4, norm_num_groups=32, sample_size=512,
)
SD15_SCHED = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "num_train_timesteps": 1000,
              "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1}


def make(out):
    from diffusers import AutoencoderKL, PNDMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    torch.manual_seed(0)
    tok = CLIPTokenizer.from_pretrained(TOKENIZER)
    text = CLIPTextModel(CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                        num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                                        projection_dim=768, bos_token_id=49406, eos_token_id=49407, pad_token_id=1))
    pipe = StableDiffusionPipeline(vae=AutoencoderKL(**SD15_VAE), text_encoder=text, tokenizer=tok,
                                   unet=UNet2DConditionModel(**SD15_UNET), scheduler=PNDMScheduler(**SD15_SCHED),
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    shutil.rmtree(out, ignore_errors=True)
    pipe.save_pretrained(out, safe_serialization=True)
    shutil.rmtree(os.path.join(out, "tokenizer"))
    shutil.copytree(TOKENIZER, os.path.join(out, "tokenizer"))
    print(json.dumps({"written": out}))


def unet(out, runs):
    from diffusers import UNet2DConditionModel

    dev, dtype = torch.device(os.environ.get("DEVICE", "cpu")), getattr(torch, os.environ.get("DTYPE", "float32"))
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)
    model = UNet2DConditionModel.from_pretrained(os.path.join(out, "unet")).eval().to(dev, dtype)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 64, 64, generator=g).to(dev, dtype)
    ctx = torch.randn(2, 77, 768, generator=g).to(dev, dtype)
    times = []
    with torch.no_grad():
        model(x, 500, encoder_hidden_states=ctx)  # warm-up
        for _ in range(runs):
            sync()
            t = time.perf_counter()
            model(x, 500, encoder_hidden_states=ctx)
            sync()
            times.append(time.perf_counter() - t)
    print(json.dumps({"what": f"diffusers UNet, batch 2, 64x64, {dtype}, {dev.type}", "threads": THREADS, "seconds": times,
                      "median_s": statistics.median(times)}))


def e2e(out, steps):
    from diffusers import StableDiffusionPipeline

    t0 = time.perf_counter()
    pipe = StableDiffusionPipeline.from_pretrained(out)
    pipe.set_progress_bar_config(disable=True)
    t1 = time.perf_counter()
    with torch.no_grad():
        pipe("a photo of a red cat", num_inference_steps=steps, guidance_scale=7.5, height=512, width=512,
             generator=torch.Generator().manual_seed(0), output_type="np")
    t2 = time.perf_counter()
    print(json.dumps({"what": f"diffusers txt2img 512x512 {steps} steps", "threads": THREADS, "load_s": t1 - t0,
                      "generate_s": t2 - t1, "total_s": t2 - t0}))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2])
    elif cmd == "unet":
        unet(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3)
    elif cmd == "e2e":
        e2e(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 20)
    else:
        sys.exit(__doc__)
