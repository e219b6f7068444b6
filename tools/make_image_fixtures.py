#!/usr/bin/env python3
"""Tiny random Stable Diffusion pipelines in the diffusers hub layout, and the images
diffusers itself makes with them, for stipple-image's parity tests.

Pipelines written under image/tests/fixtures/ (each a folder a user could pass to --model):
  * sd1-tiny          SD 1.x style: CLIP (quick_gelu, pad = eos), eps UNet, PNDM scheduler
                      config, VAE with 2 blocks (factor 2)
  * sd2v-tiny         SD 2.x style: CLIP (gelu, pad "!"), v-prediction, linear projections,
                      per-block head counts, DDIM config, VAE with 3 blocks (factor 4)
  * sdxl-tiny         SDXL style: two text encoders (the second with a projection and pooled
                      output), `text_time` micro-conditioning, 2 transformer layers per block
  * sd1-inpaint-tiny  a 9-channel inpainting UNet
  * lcm-tiny          an LCM-distilled UNet (`time_cond_proj_dim`) with LCMScheduler
  * sd-turbo-tiny     SD-Turbo style (Euler, trailing spacing; 1 step, no guidance)
plus `cases.json` at the top: each case names a pipeline, a prompt / negative prompt,
steps, guidance, a stipple scheduler name and the diffusers scheduler it corresponds to,
img2img / inpainting inputs, the noise diffusers drew (in order, `noise/<case>.npy`
stacked per draw), and diffusers' output image (`expected/<case>.npy`, float32 HWC in
[0, 1]) and the prompt ids of each tokenizer.

Noise: `randn_tensor` is replaced in every diffusers module by a recorder that draws from
a seeded torch generator and keeps each draw, so stipple can replay the exact stream
(initial latents, VAE posterior samples, img2img noise, ancestral/LCM noise).

Also `sd1-tiny.safetensors`: the same weights as sd1-tiny as one A1111-style checkpoint with
the original LDM key names; the script checks that diffusers' own `from_single_file` loads
it back to identical weights before writing it.

Needs torch==2.11.0 diffusers==0.42.1 transformers==5.17.0 tokenizers safetensors numpy
(and pillow), e.g.
  python3 -m venv .venv-ref && .venv-ref/bin/pip install torch==2.11.0 diffusers==0.42.1 transformers==5.17.0 tokenizers safetensors numpy pillow
  PYTHON=.venv-ref/bin/python
  $PYTHON tools/make_image_fixtures.py [out_dir]
Deterministic: fixed seeds, CPU, float32.
"""

import json
import os
import shutil
import sys

import numpy as np
import torch
from PIL import Image

OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "image", "tests", "fixtures")

CORPUS = """
a photo of a red cat sitting on a blue mat, highly detailed, 4k
an oil painting of a mountain lake at sunrise by an unknown artist
a watercolor fox in the snow; soft light, pastel colours
portrait of an astronaut riding a horse on mars, digital art
a bowl of fruit: apples, pears and grapes on a wooden table
low quality, blurry, ugly, deformed, watermark, text
a city street at night with neon signs and rain reflections
""" * 3

# ---------------------------------------------------------------- tokenizer (CLIP layout)


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("\xa1"), ord("\xac") + 1)) + list(range(ord("\xae"), ord("\xff") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def clip_vocab_files(n_merges=300):
    """vocab.json + merges.txt built the way OpenAI's CLIP builds its vocabulary: the 256
    byte characters, the same with `</w>`, one entry per merge, then the two specials.
    The merges are learned on CORPUS with the `tokenizers` BPE trainer."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers, Regex

    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tok.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""), behavior="removed", invert=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=100000, min_frequency=2, end_of_word_suffix="</w>",
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(CORPUS.splitlines(), trainer)
    merges = json.loads(tok.to_str())["model"]["merges"][:n_merges]
    merges = [m if isinstance(m, str) else " ".join(m) for m in merges]
    chars = bytes_to_unicode()
    vocab = chars + [c + "</w>" for c in chars]
    for m in merges:
        piece = m.replace(" ", "")
        if piece not in vocab:
            vocab.append(piece)
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    return {t: i for i, t in enumerate(vocab)}, merges


def write_tokenizer(folder, vocab, merges, pad_token):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w") as f:
        f.write("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>", "pad_token": pad_token}
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=2)
    with open(os.path.join(folder, "tokenizer_config.json"), "w") as f:
        json.dump({**special, "model_max_length": 77, "do_lower_case": True, "tokenizer_class": "CLIPTokenizer"}, f, indent=2)


# ---------------------------------------------------------------- models


def clip_config(vocab, hidden, act, projection=None):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=77, hidden_act=act, projection_dim=projection or hidden,
        bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"],
    )


def randomize(module, seed):
    """Random weights with a visible scale (fresh inits leave norms at 1/0 and many layers at 0)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.dim() > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=g) / max(fan_in, 1) ** 0.5)
    return module


def vae(blocks, seed):
    from diffusers import AutoencoderKL

    torch.manual_seed(seed)
    n = len(blocks)
    return randomize(AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=blocks, layers_per_block=1,
        down_block_types=["DownEncoderBlock2D"] * n, up_block_types=["UpDecoderBlock2D"] * n, norm_num_groups=4,
        sample_size=32,
    ), seed)


def unet(seed, **kw):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    base = dict(sample_size=16, in_channels=4, out_channels=4, layers_per_block=1, norm_num_groups=8)
    base.update(kw)
    return randomize(UNet2DConditionModel(**base), seed)


SD1_SCHED = {"_class_name": "PNDMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
             "trained_betas": None, "clip_sample": False}
SD2_SCHED = {"_class_name": "DDIMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "num_train_timesteps": 1000, "set_alpha_to_one": False, "steps_offset": 1, "clip_sample": False,
             "prediction_type": "v_prediction"}
SDXL_SCHED = {"_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
              "num_train_timesteps": 1000, "steps_offset": 1, "timestep_spacing": "leading", "interpolation_type": "linear",
              "prediction_type": "epsilon", "use_karras_sigmas": False}
LCM_SCHED = {"_class_name": "LCMScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
             "num_train_timesteps": 1000, "set_alpha_to_one": True, "steps_offset": 1, "clip_sample": False,
             "original_inference_steps": 50, "timestep_scaling": 10.0, "prediction_type": "epsilon"}
TURBO_SCHED = {"_class_name": "EulerDiscreteScheduler", "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
               "num_train_timesteps": 1000, "steps_offset": 1, "timestep_spacing": "trailing", "prediction_type": "epsilon"}


def scheduler_from(cfg):
    import diffusers

    cfg = dict(cfg)
    cls = getattr(diffusers, cfg.pop("_class_name"))
    return cls.from_config(cfg)


def build_pipelines(vocab, merges):
    from diffusers import (LatentConsistencyModelPipeline, StableDiffusionInpaintPipeline, StableDiffusionPipeline,
                           StableDiffusionXLPipeline)
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    tmp = os.path.join(OUT, "_tok")
    write_tokenizer(tmp + "/eos", vocab, merges, "<|endoftext|>")
    write_tokenizer(tmp + "/bang", vocab, merges, "!")
    tok_eos = CLIPTokenizer.from_pretrained(tmp + "/eos")
    tok_bang = CLIPTokenizer.from_pretrained(tmp + "/bang")

    def text_model(hidden, act, seed, cls=CLIPTextModel):
        torch.manual_seed(seed)
        return randomize(cls(clip_config(vocab, hidden, act)), seed).eval()

    sd_blocks = dict(down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
                     block_out_channels=[16, 32])
    pipes = {}
    pipes["sd1-tiny"] = StableDiffusionPipeline(
        vae=vae([8, 16], 1), text_encoder=text_model(16, "quick_gelu", 2), tokenizer=tok_eos,
        unet=unet(3, cross_attention_dim=16, attention_head_dim=2, **sd_blocks), scheduler=scheduler_from(SD1_SCHED),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipes["sd2v-tiny"] = StableDiffusionPipeline(
        vae=vae([8, 16, 16], 4), text_encoder=text_model(24, "gelu", 5), tokenizer=tok_bang,
        unet=unet(6, cross_attention_dim=24, attention_head_dim=[2, 4, 4], use_linear_projection=True,
                  down_block_types=["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
                  up_block_types=["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"], block_out_channels=[16, 32, 32]),
        scheduler=scheduler_from(SD2_SCHED), safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipes["sdxl-tiny"] = StableDiffusionXLPipeline(
        vae=vae([8, 16], 7), text_encoder=text_model(16, "quick_gelu", 8), tokenizer=tok_eos,
        text_encoder_2=text_model(24, "gelu", 9, CLIPTextModelWithProjection), tokenizer_2=tok_bang,
        unet=unet(10, cross_attention_dim=40, attention_head_dim=[2, 4], use_linear_projection=True,
                  transformer_layers_per_block=[1, 2], addition_embed_type="text_time", addition_time_embed_dim=8,
                  projection_class_embeddings_input_dim=6 * 8 + 24,
                  down_block_types=["DownBlock2D", "CrossAttnDownBlock2D"], up_block_types=["CrossAttnUpBlock2D", "UpBlock2D"],
                  block_out_channels=[16, 32]),
        scheduler=scheduler_from(SDXL_SCHED), force_zeros_for_empty_prompt=True, add_watermarker=False)
    pipes["sd1-inpaint-tiny"] = StableDiffusionInpaintPipeline(
        vae=vae([8, 16], 11), text_encoder=text_model(16, "quick_gelu", 12), tokenizer=tok_eos,
        unet=unet(13, in_channels=9, cross_attention_dim=16, attention_head_dim=2, **sd_blocks),
        scheduler=scheduler_from(SD1_SCHED), safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipes["lcm-tiny"] = LatentConsistencyModelPipeline(
        vae=vae([8, 16], 14), text_encoder=text_model(16, "quick_gelu", 15), tokenizer=tok_eos,
        unet=unet(16, cross_attention_dim=16, attention_head_dim=2, time_cond_proj_dim=8, **sd_blocks),
        scheduler=scheduler_from(LCM_SCHED), safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipes["sd-turbo-tiny"] = StableDiffusionPipeline(
        vae=vae([8, 16], 17), text_encoder=text_model(24, "gelu", 18), tokenizer=tok_bang,
        unet=unet(19, cross_attention_dim=24, attention_head_dim=[2, 4], use_linear_projection=True, **sd_blocks),
        scheduler=scheduler_from(TURBO_SCHED), safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    shutil.rmtree(tmp)
    return pipes


def taesd(seed):
    """A tiny random TAESD (diffusers AutoencoderTiny) matching sd1-tiny's 2x VAE factor."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    return randomize(AutoencoderTiny(encoder_block_out_channels=(8, 8), decoder_block_out_channels=(8, 8),
                                     num_encoder_blocks=(1, 1), num_decoder_blocks=(1, 1), latent_channels=4), seed)


# ---------------------------------------------------------------- single-file (LDM) checkpoints


def resnet_to_ldm(name, vae=False):
    pairs = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
             ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]
    if vae:
        pairs = [("conv_shortcut", "nin_shortcut")]
    for a, b in pairs:
        if name.startswith(a + "."):
            return b + name[len(a):]
    return name


def unet_to_ldm(sd, cfg):
    """diffusers UNet names -> the original LDM `model.diffusion_model.*` names."""
    n, L = len(cfg["block_out_channels"]), cfg["layers_per_block"]
    m = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
         "add_embedding.linear_1": "label_emb.0.0", "add_embedding.linear_2": "label_emb.0.2",
         "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2",
         "mid_block.resnets.0": "middle_block.0", "mid_block.attentions.0": "middle_block.1", "mid_block.resnets.1": "middle_block.2"}
    resnets = {"mid_block.resnets.0", "mid_block.resnets.1"}
    for i in range(n):
        for j in range(L):
            m[f"down_blocks.{i}.resnets.{j}"] = f"input_blocks.{1 + i * (L + 1) + j}.0"
            resnets.add(f"down_blocks.{i}.resnets.{j}")
            m[f"down_blocks.{i}.attentions.{j}"] = f"input_blocks.{1 + i * (L + 1) + j}.1"
        m[f"down_blocks.{i}.downsamplers.0.conv"] = f"input_blocks.{(i + 1) * (L + 1)}.0.op"
        attn = "CrossAttn" in cfg["up_block_types"][i]
        for j in range(L + 1):
            m[f"up_blocks.{i}.resnets.{j}"] = f"output_blocks.{i * (L + 1) + j}.0"
            resnets.add(f"up_blocks.{i}.resnets.{j}")
            m[f"up_blocks.{i}.attentions.{j}"] = f"output_blocks.{i * (L + 1) + j}.1"
        m[f"up_blocks.{i}.upsamplers.0.conv"] = f"output_blocks.{i * (L + 1) + L}.{2 if attn else 1}.conv"
    out = {}
    for k, v in sd.items():
        prefix = max((p for p in m if k.startswith(p + ".")), key=len)
        rest = k[len(prefix) + 1:]
        if prefix in resnets:
            rest = resnet_to_ldm(rest)
        out["model.diffusion_model." + m[prefix] + "." + rest] = v
    return out


def vae_to_ldm(sd, cfg):
    n = len(cfg["block_out_channels"])
    m = {"encoder.mid_block.resnets.0": "encoder.mid.block_1", "encoder.mid_block.resnets.1": "encoder.mid.block_2",
         "decoder.mid_block.resnets.0": "decoder.mid.block_1", "decoder.mid_block.resnets.1": "decoder.mid.block_2",
         "encoder.mid_block.attentions.0": "encoder.mid.attn_1", "decoder.mid_block.attentions.0": "decoder.mid.attn_1",
         "encoder.conv_norm_out": "encoder.norm_out", "decoder.conv_norm_out": "decoder.norm_out"}
    for i in range(n):
        for j in range(cfg["layers_per_block"] + 1):
            m[f"encoder.down_blocks.{i}.resnets.{j}"] = f"encoder.down.{i}.block.{j}"
            m[f"decoder.up_blocks.{i}.resnets.{j}"] = f"decoder.up.{n - 1 - i}.block.{j}"
        m[f"encoder.down_blocks.{i}.downsamplers.0.conv"] = f"encoder.down.{i}.downsample.conv"
        m[f"decoder.up_blocks.{i}.upsamplers.0.conv"] = f"decoder.up.{n - 1 - i}.upsample.conv"
    attn = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
    out = {}
    for k, v in sd.items():
        prefixes = [p for p in m if k.startswith(p + ".")]
        if not prefixes:
            out["first_stage_model." + k] = v
            continue
        prefix = max(prefixes, key=len)
        rest = k[len(prefix) + 1:]
        if "attn_1" in m[prefix]:
            a = max((a for a in attn if rest.startswith(a + ".")), key=len)
            rest = attn[a] + rest[len(a):]
            if rest.endswith("weight") and v.dim() == 2:
                v = v[:, :, None, None]
        else:
            rest = resnet_to_ldm(rest, vae=True)
        out["first_stage_model." + m[prefix] + "." + rest] = v
    return out


def clip_to_ldm(sd, prefix):
    """transformers CLIP (v5 names, no `text_model.` prefix) -> `<prefix>text_model.*`."""
    return {prefix + "text_model." + k.removeprefix("text_model."): v for k, v in sd.items()}


def open_clip_to_ldm(sd, prefix):
    """transformers CLIPTextModelWithProjection -> OpenCLIP names (SD 2.x / SDXL bigG)."""
    sd = {k.removeprefix("text_model."): v for k, v in sd.items()}
    out = {}
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj", "self_attn.out_proj": "attn.out_proj"}
    layers = {int(k.split(".")[2]) for k in sd if k.startswith("encoder.layers.")}
    for i in sorted(layers):
        p = f"encoder.layers.{i}."
        for kind in ("weight", "bias"):
            out[f"{prefix}transformer.resblocks.{i}.attn.in_proj_{kind}"] = torch.cat(
                [sd[f"{p}self_attn.{x}_proj.{kind}"] for x in ("q", "k", "v")], 0)
        for a, b in names.items():
            for kind in ("weight", "bias"):
                out[f"{prefix}transformer.resblocks.{i}.{b}.{kind}"] = sd[f"{p}{a}.{kind}"]
    out[prefix + "token_embedding.weight"] = sd["embeddings.token_embedding.weight"]
    out[prefix + "positional_embedding"] = sd["embeddings.position_embedding.weight"]
    out[prefix + "ln_final.weight"] = sd["final_layer_norm.weight"]
    out[prefix + "ln_final.bias"] = sd["final_layer_norm.bias"]
    out[prefix + "text_projection"] = sd["text_projection.weight"].T.contiguous()
    return out


def write_single_file(pipe, folder, path):
    """One A1111-style checkpoint with the pipeline's weights under the original names;
    diffusers' own `from_single_file` must load it back to identical weights."""
    from diffusers import DiffusionPipeline
    from safetensors.torch import save_file

    sd = {}
    sd.update(unet_to_ldm(pipe.unet.state_dict(), pipe.unet.config))
    sd.update(vae_to_ldm(pipe.vae.state_dict(), pipe.vae.config))
    if getattr(pipe, "text_encoder_2", None) is not None:
        sd.update(clip_to_ldm(pipe.text_encoder.state_dict(), "conditioner.embedders.0.transformer."))
        sd.update(open_clip_to_ldm(pipe.text_encoder_2.state_dict(), "conditioner.embedders.1.model."))
    else:
        sd.update(clip_to_ldm(pipe.text_encoder.state_dict(), "cond_stage_model.transformer."))
    save_file({k: v.contiguous() for k, v in sd.items()}, path)
    back = type(pipe).from_single_file(path, config=folder, local_files_only=True)
    for comp in ("unet", "vae", "text_encoder", "text_encoder_2"):
        a, b = getattr(pipe, comp, None), getattr(back, comp, None)
        if a is None:
            continue
        sa, sb = a.state_dict(), b.state_dict()
        assert set(sa) == set(sb), (comp, set(sa) ^ set(sb))
        for k in sa:
            assert torch.equal(sa[k], sb[k]), (comp, k)
    print(f"{os.path.basename(path)}: {len(sd)} tensors, diffusers from_single_file loads identical weights")


# ---------------------------------------------------------------- noise recording


class NoiseRecorder:
    """Stands in for diffusers' `randn_tensor`: seeded draws, each one kept."""

    def __init__(self):
        self.draws = []
        self.gen = None

    def reset(self, seed):
        self.draws = []
        self.gen = torch.Generator().manual_seed(seed)

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        x = torch.randn(tuple(shape), generator=self.gen, dtype=torch.float32)
        self.draws.append(x.numpy().copy())
        return x.to(dtype=dtype or torch.float32)


def install_recorder():
    rec = NoiseRecorder()
    for name, mod in list(sys.modules.items()):
        if name.startswith("diffusers") and hasattr(mod, "randn_tensor"):
            setattr(mod, "randn_tensor", rec)
    return rec


# ---------------------------------------------------------------- inputs


def init_image(w, h):
    """A synthetic picture: a colour gradient with a bright disc and a dark bar."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.stack([x / w, y / h, 1.0 - x / w * 0.5], -1)
    disc = (x - w * 0.6) ** 2 + (y - h * 0.4) ** 2 < (min(w, h) * 0.25) ** 2
    img[disc] = [1.0, 0.9, 0.2]
    img[int(h * 0.75):int(h * 0.85), :] *= 0.2
    return Image.fromarray((img * 255).round().astype(np.uint8))


def mask_image(w, h):
    m = np.zeros((h, w), np.uint8)
    m[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 255
    return Image.fromarray(m)


# ---------------------------------------------------------------- cases

# (case, pipeline, kind, prompt, negative, steps, guidance, stipple scheduler, diffusers class, config overrides, extra)
CASES = [
    ("sd1-default", "sd1-tiny", "txt2img", "a photo of a red cat", "", 4, 7.5, "pndm", None, {}, {}),
    ("sd1-euler", "sd1-tiny", "txt2img", "a watercolor fox in the snow", "blurry", 5, 5.0, "euler", "EulerDiscreteScheduler", {}, {}),
    ("sd1-euler-a", "sd1-tiny", "txt2img", "portrait of an astronaut", "", 4, 7.5, "euler-a", "EulerAncestralDiscreteScheduler", {}, {}),
    ("sd1-dpmpp-karras", "sd1-tiny", "txt2img", "a bowl of fruit", "low quality", 6, 6.0, "dpm++2m-karras", "DPMSolverMultistepScheduler", {"use_karras_sigmas": True}, {}),
    ("sd1-unipc-rescale", "sd1-tiny", "txt2img", "a city street at night", "", 5, 7.0, "unipc", "UniPCMultistepScheduler", {}, {"guidance_rescale": 0.7}),
    ("sd1-noguide", "sd1-tiny", "txt2img", "an oil painting of a lake", "", 3, 1.0, "euler", "EulerDiscreteScheduler", {}, {}),
    ("sd1-heun", "sd1-tiny", "txt2img", "a red cat", "", 3, 4.0, "heun", "HeunDiscreteScheduler", {}, {}),
    ("sd1-wide", "sd1-tiny", "txt2img", "a mountain lake, 4k", "", 4, 7.5, "euler", "EulerDiscreteScheduler", {}, {"width": 48, "height": 32}),
    ("sd1-batch", "sd1-tiny", "txt2img", "a red cat on a blue mat", "ugly", 3, 7.5, "dpm++2m", "DPMSolverMultistepScheduler", {}, {"num_images_per_prompt": 2}),
    ("sd1-img2img", "sd1-tiny", "img2img", "a fox in the snow", "", 10, 7.5, "euler", "EulerDiscreteScheduler", {}, {"strength": 0.6}),
    ("sd1-img2img-ddim", "sd1-tiny", "img2img", "a bowl of apples", "blurry", 8, 5.0, "ddim", "DDIMScheduler", {}, {"strength": 0.35}),
    ("sd2v-ddim", "sd2v-tiny", "txt2img", "a city street at night", "", 4, 7.5, "ddim", None, {}, {"width": 48, "height": 32}),
    ("sd2v-euler", "sd2v-tiny", "txt2img", "a watercolor fox", "low quality", 5, 6.0, "euler", "EulerDiscreteScheduler", {}, {}),
    ("sd2v-dpmpp", "sd2v-tiny", "txt2img", "an astronaut riding a horse", "", 5, 7.5, "dpm++2m", "DPMSolverMultistepScheduler", {}, {"guidance_rescale": 0.5}),
    ("sdxl-euler", "sdxl-tiny", "txt2img", "a photo of a red cat", "", 4, 5.0, "euler", None, {}, {}),
    ("sdxl-negative", "sdxl-tiny", "txt2img", "a bowl of fruit", "blurry, watermark", 4, 7.0, "dpm++2m", "DPMSolverMultistepScheduler", {}, {"width": 48, "height": 32}),
    ("sdxl-img2img", "sdxl-tiny", "img2img", "a mountain lake", "", 6, 5.0, "euler", None, {}, {"strength": 0.5}),
    ("inpaint-9ch", "sd1-inpaint-tiny", "inpaint", "a yellow sun", "", 6, 7.5, "euler", "EulerDiscreteScheduler", {}, {"strength": 1.0}),
    ("inpaint-9ch-strength", "sd1-inpaint-tiny", "inpaint", "a red cat", "blurry", 8, 5.0, "ddim", "DDIMScheduler", {}, {"strength": 0.75}),
    ("inpaint-4ch", "sd1-tiny", "inpaint", "a red cat", "", 6, 7.5, "euler", "EulerDiscreteScheduler", {}, {"strength": 1.0}),
    ("inpaint-4ch-strength", "sd1-tiny", "inpaint", "a blue mat", "", 8, 7.5, "dpm++2m", "DPMSolverMultistepScheduler", {}, {"strength": 0.6}),
    ("lcm-4", "lcm-tiny", "txt2img", "a watercolor fox in the snow", "", 4, 8.5, "lcm", None, {}, {}),
    ("lcm-1", "lcm-tiny", "txt2img", "a red cat", "", 1, 3.0, "lcm", None, {}, {}),
    ("turbo-1", "sd-turbo-tiny", "txt2img", "a photo of a red cat", "", 1, 0.0, "euler", None, {}, {}),
    ("turbo-euler-a", "sd-turbo-tiny", "txt2img", "a bowl of fruit", "", 2, 0.0, "euler-a", "EulerAncestralDiscreteScheduler", {}, {}),
    ("sd1-taesd", "sd1-tiny", "txt2img", "a red cat", "", 4, 7.5, "euler", "EulerDiscreteScheduler", {}, {"taesd": "taesd-tiny"}),
]


def main():
    from diffusers import (StableDiffusionImg2ImgPipeline, StableDiffusionInpaintPipeline, StableDiffusionXLImg2ImgPipeline,
                           StableDiffusionXLPipeline)

    torch.set_num_threads(2)
    os.makedirs(OUT, exist_ok=True)
    vocab, merges = clip_vocab_files()
    pipes = build_pipelines(vocab, merges)
    for name, pipe in pipes.items():
        folder = os.path.join(OUT, name)
        shutil.rmtree(folder, ignore_errors=True)
        pipe.save_pretrained(folder, safe_serialization=True)
        # the hub layout of SD tokenizers: vocab.json + merges.txt, no tokenizer.json
        for sub in ("tokenizer", "tokenizer_2"):
            if getattr(pipe, sub, None) is not None:
                shutil.rmtree(os.path.join(folder, sub))
                write_tokenizer(os.path.join(folder, sub), vocab, merges, str(getattr(pipe, sub).pad_token))
    # reload exactly as a user would, so nothing differs from what is on disk
    from diffusers import DiffusionPipeline

    loaded = {name: DiffusionPipeline.from_pretrained(os.path.join(OUT, name)) for name in pipes}
    for p in loaded.values():
        p.set_progress_bar_config(disable=True)
    for name in ("sd1-tiny", "sdxl-tiny"):
        write_single_file(loaded[name], os.path.join(OUT, name), os.path.join(OUT, f"{name}.safetensors"))
    tiny = taesd(20)
    shutil.rmtree(os.path.join(OUT, "taesd-tiny"), ignore_errors=True)
    tiny.save_pretrained(os.path.join(OUT, "taesd-tiny"), safe_serialization=True)
    tiny = type(tiny).from_pretrained(os.path.join(OUT, "taesd-tiny")).eval()
    # the same decoder in the original madebyollin/taesd layout (layer i of the diffusers
    # decoder is layer i + 1 there, after the clamp)
    from safetensors.torch import save_file
    orig = os.path.join(OUT, "taesd-tiny-original")
    shutil.rmtree(orig, ignore_errors=True)
    os.makedirs(orig)
    dec = {k[len("decoder.layers."):]: v for k, v in tiny.state_dict().items() if k.startswith("decoder.layers.")}
    save_file({f"{int(k.split('.')[0]) + 1}.{k.split('.', 1)[1]}": v.contiguous() for k, v in dec.items()}, os.path.join(orig, "taesd_decoder.safetensors"))
    shutil.copy(os.path.join(OUT, "taesd-tiny", "config.json"), orig)
    rec = install_recorder()

    init_image(32, 32).save(os.path.join(OUT, "init.png"))
    mask_image(32, 32).save(os.path.join(OUT, "mask.png"))
    for d in ("noise", "expected"):
        shutil.rmtree(os.path.join(OUT, d), ignore_errors=True)
        os.makedirs(os.path.join(OUT, d))

    cases = []
    for i, (case, pname, kind, prompt, negative, steps, guidance, sched_name, sched_cls, overrides, extra) in enumerate(CASES):
        base = loaded[pname]
        cfg = dict(base.scheduler.config)
        if sched_cls is not None:
            cfg["_class_name"] = sched_cls
        cfg.update(overrides)
        scheduler = scheduler_from(cfg)
        extra = dict(extra)
        extra_taesd = None
        width, height = extra.pop("width", 32), extra.pop("height", 32)
        kwargs = dict(prompt=prompt, num_inference_steps=steps, guidance_scale=guidance, output_type="np", **extra)
        if pname != "lcm-tiny":
            kwargs["negative_prompt"] = negative or None
        comps = dict(base.components)
        comps["scheduler"] = scheduler
        if "taesd" in extra:
            comps["vae"] = tiny
            extra_taesd = extra.pop("taesd")
        if kind == "txt2img":
            pipe = type(base)(**comps)
            kwargs.update(width=width, height=height)
        elif kind == "img2img":
            cls = StableDiffusionXLImg2ImgPipeline if isinstance(base, StableDiffusionXLPipeline) else StableDiffusionImg2ImgPipeline
            pipe = cls(**comps)
            kwargs["image"] = Image.open(os.path.join(OUT, "init.png")).convert("RGB")
        else:
            pipe = StableDiffusionInpaintPipeline(**comps)
            kwargs["image"] = Image.open(os.path.join(OUT, "init.png")).convert("RGB")
            kwargs["mask_image"] = Image.open(os.path.join(OUT, "mask.png"))
            kwargs.update(width=width, height=height)
        pipe.set_progress_bar_config(disable=True)
        rec.reset(1000 + i)
        with torch.no_grad():
            images = pipe(**kwargs).images
        images = np.asarray(images, dtype=np.float32)
        np.save(os.path.join(OUT, "expected", f"{case}.npy"), images)
        np.savez(os.path.join(OUT, "noise", f"{case}.npz"), *rec.draws)
        tok = base.tokenizer
        entry = dict(
            taesd=extra_taesd if "taesd" in CASES[i][10] else None,
            name=case, pipeline=pname, kind=kind, prompt=prompt, negative_prompt=negative, steps=steps,
            guidance=guidance, scheduler=sched_name, diffusers_scheduler=type(scheduler).__name__,
            scheduler_overrides=overrides, width=width, height=height,
            strength=kwargs.get("strength"), guidance_rescale=kwargs.get("guidance_rescale", 0.0),
            batch=kwargs.get("num_images_per_prompt", 1), noise_shapes=[list(d.shape) for d in rec.draws],
            prompt_ids=tok(prompt, padding="max_length", max_length=77, truncation=True).input_ids,
        )
        if getattr(base, "tokenizer_2", None) is not None:
            entry["prompt_ids_2"] = base.tokenizer_2(prompt, padding="max_length", max_length=77, truncation=True).input_ids
        cases.append(entry)
        print(f"{case}: {images.shape} mean {images.mean():.4f} draws {len(rec.draws)}")

    # tokenizer checks beyond the prompts above
    tok_texts = ["Hello,   World!", "a photo of an astronaut riding a horse on mars", "It's 4K: (ultra-detailed) 12345",
                 "Café crème", "tabs\tand\nnewlines", "", "x" * 300, "😀 emoji and ümlauts"]
    tokenizer_cases = [dict(text=t, eos=loaded["sd1-tiny"].tokenizer(t, padding="max_length", max_length=77, truncation=True).input_ids,
                            bang=loaded["sd2v-tiny"].tokenizer(t, padding="max_length", max_length=77, truncation=True).input_ids)
                       for t in tok_texts]
    with open(os.path.join(OUT, "cases.json"), "w") as f:
        json.dump({"cases": cases, "tokenizer": tokenizer_cases}, f, indent=1, ensure_ascii=False)


if __name__ == "__main__":
    main()
