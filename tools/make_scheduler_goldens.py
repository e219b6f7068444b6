#!/usr/bin/env python3
"""Golden files for stipple-core's continuous samplers, written by HF diffusers itself.

For every sampler x scheduler config x step count this runs the same loop a diffusers
pipeline runs (scale_model_input -> model -> step) with a fixed, deterministic "model"
that both this script and the Rust test compute, records the timesteps, sigmas,
init_noise_sigma, every noise tensor the scheduler draws, and the sample after each step.
It also records img2img runs (add_noise at a start step) and the training schedules.

Run:  python3 -m venv .venv-ref && .venv-ref/bin/pip install torch==2.11.0 diffusers==0.42.1 numpy scipy
      PYTHON=.venv-ref/bin/python
      $PYTHON tools/make_scheduler_goldens.py core/tests/golden/schedulers
"""
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch
import diffusers
from diffusers import (
    DDIMScheduler, DDPMScheduler, PNDMScheduler, DPMSolverMultistepScheduler, EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler, HeunDiscreteScheduler, LCMScheduler,
    UniPCMultistepScheduler,
)

SHAPE = (2, 2, 4, 4)
STEP_COUNTS = [1, 2, 4, 7, 25]

# The scheduler_config.json files of the hub repositories (as published).
CONFIGS = {
    "sd15": {"_class_name": "PNDMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
             "num_train_timesteps": 1000, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
             "trained_betas": None, "clip_sample": False},
    "sd21v": {"_class_name": "DDIMScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
              "clip_sample": False, "num_train_timesteps": 1000, "prediction_type": "v_prediction", "set_alpha_to_one": False,
              "skip_prk_steps": True, "steps_offset": 1, "trained_betas": None},
    "sdturbo": {"_class_name": "EulerDiscreteScheduler", "beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085,
                "clip_sample": False, "interpolation_type": "linear", "num_train_timesteps": 1000, "prediction_type": "epsilon",
                "sample_max_value": 1.0, "set_alpha_to_one": False, "skip_prk_steps": True, "steps_offset": 1,
                "timestep_spacing": "trailing", "trained_betas": None, "use_karras_sigmas": False},
    # Not a hub config: zero-terminal-SNR v-prediction with trailing spacing, and the cosine schedule.
    "zsnr": {"beta_end": 0.012, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "num_train_timesteps": 1000,
             "prediction_type": "v_prediction", "rescale_betas_zero_snr": True, "timestep_spacing": "trailing",
             "set_alpha_to_one": False, "clip_sample": False},
    "cosine": {"beta_schedule": "squaredcos_cap_v2", "num_train_timesteps": 1000, "clip_sample": False,
               "timestep_spacing": "linspace", "set_alpha_to_one": False},
    "sd3": {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0},
    "flux": {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": 3.0,
             "use_dynamic_shifting": True, "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
             "max_image_seq_len": 4096},
}
FLOW_CONFIGS = {"sd3", "flux"}
FLUX_MU = 0.9

# name -> (class, config overrides, step kwargs). Names are the ones users type.
SAMPLERS = {
    "ddpm": (DDPMScheduler, {}, {}),
    "ddim": (DDIMScheduler, {}, {}),
    "ddim-eta": (DDIMScheduler, {}, {"eta": 0.6}),
    "pndm": (PNDMScheduler, {"skip_prk_steps": True}, {}),
    "euler": (EulerDiscreteScheduler, {}, {}),
    "euler-karras": (EulerDiscreteScheduler, {"use_karras_sigmas": True}, {}),
    "euler-exponential": (EulerDiscreteScheduler, {"use_exponential_sigmas": True}, {}),
    "euler-a": (EulerAncestralDiscreteScheduler, {}, {}),
    "heun": (HeunDiscreteScheduler, {}, {}),
    "heun-karras": (HeunDiscreteScheduler, {"use_karras_sigmas": True}, {}),
    "dpm++2m": (DPMSolverMultistepScheduler, {}, {}),
    "dpm++2m-karras": (DPMSolverMultistepScheduler, {"use_karras_sigmas": True}, {}),
    "dpm++2m-exponential": (DPMSolverMultistepScheduler, {"use_exponential_sigmas": True}, {}),
    "dpm++2m-sde": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++"}, {}),
    "dpm++2m-sde-karras": (DPMSolverMultistepScheduler, {"algorithm_type": "sde-dpmsolver++", "use_karras_sigmas": True}, {}),
    "unipc": (UniPCMultistepScheduler, {}, {}),
    "unipc-karras": (UniPCMultistepScheduler, {"use_karras_sigmas": True}, {}),
    "lcm": (LCMScheduler, {}, {}),
    "flow-euler": (FlowMatchEulerDiscreteScheduler, {}, {}),
}


def model(inp: torch.Tensor, t: float, base: torch.Tensor) -> torch.Tensor:
    """The fixed 'denoiser' (the Rust test computes the same function)."""
    a = 0.8 + 0.2 * math.cos(t * 0.0031)
    b = 0.3 * math.sin(t * 0.0017 + 1.0)
    return torch.tanh(inp * 0.7) * a + base * b


class NoiseRecorder:
    """Replaces diffusers' randn_tensor in the scheduler modules and records every draw."""

    def __init__(self, seed):
        self.rng = np.random.default_rng(seed)
        self.draws = []

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None):
        x = self.rng.standard_normal(tuple(shape)).astype(np.float32)
        self.draws.append(f32list(x))
        return torch.from_numpy(x).to(dtype or torch.float32)


MODULES = [diffusers.schedulers.scheduling_ddpm, diffusers.schedulers.scheduling_ddim, diffusers.schedulers.scheduling_pndm,
           diffusers.schedulers.scheduling_euler_discrete, diffusers.schedulers.scheduling_euler_ancestral_discrete,
           diffusers.schedulers.scheduling_dpmsolver_multistep, diffusers.schedulers.scheduling_lcm,
           diffusers.schedulers.scheduling_flow_match_euler_discrete]


def make_scheduler(cls, config_name, overrides, steps):
    cfg = dict(CONFIGS[config_name])
    cfg.pop("_class_name", None)
    sched = cls.from_config({**cfg, **overrides})
    if config_name == "flux":
        sched.set_timesteps(steps, mu=FLUX_MU)
    else:
        sched.set_timesteps(steps)
    return sched


def tolist(x):
    return [float(v) for v in (x.tolist() if hasattr(x, "tolist") else x)]


def f32list(x):
    """A float32 tensor as the shortest decimal strings that round-trip to the same f32."""
    return [float(str(v)) for v in np.asarray(x, dtype=np.float32).ravel()]


def run_case(config_name, sampler, steps, strength=None, seed=0):
    cls, overrides, step_kwargs = SAMPLERS[sampler]
    sched = make_scheduler(cls, config_name, overrides, steps)
    rng = np.random.default_rng(1000 + seed)
    base = torch.from_numpy(rng.standard_normal(SHAPE).astype(np.float32))
    init_noise = torch.from_numpy(rng.standard_normal(SHAPE).astype(np.float32))
    recorder = NoiseRecorder(2000 + seed)
    for m in MODULES:
        m.randn_tensor = recorder
    case = {"config": config_name, "sampler": sampler, "steps": steps,
            "timesteps": tolist(sched.timesteps),
            "sigmas": tolist(sched.sigmas) if hasattr(sched, "sigmas") and sched.sigmas is not None else None,
            "base": f32list(base), "init_noise": f32list(init_noise)}
    timesteps = sched.timesteps
    if strength is None:
        init_sigma = float(getattr(sched, "init_noise_sigma", 1.0))
        case["init_noise_sigma"] = init_sigma
        x = init_noise * init_sigma
        start = 0
    else:
        # img2img as StableDiffusionImg2ImgPipeline does it.
        order = sched.order
        init_timestep = min(int(steps * strength), steps)
        t_start = max(steps - init_timestep, 0)
        timesteps = sched.timesteps[t_start * order:]
        if hasattr(sched, "set_begin_index"):
            sched.set_begin_index(t_start * order)
        start = t_start * order
        x0 = torch.from_numpy(np.random.default_rng(3000 + seed).standard_normal(SHAPE).astype(np.float32))
        case["strength"] = strength
        case["init_latents"] = f32list(x0)
        case["start_index"] = start
        if len(timesteps) == 0:
            case["samples"] = []
            case["noises"] = []
            return case
        if isinstance(sched, FlowMatchEulerDiscreteScheduler):
            x = sched.scale_noise(x0, timesteps[:1], init_noise)
        else:
            x = sched.add_noise(x0, init_noise, timesteps[:1])
        case["noised"] = f32list(x)
    samples = []
    for t in timesteps:
        inp = sched.scale_model_input(x, t) if hasattr(sched, "scale_model_input") else x
        out = model(inp, float(t), base)
        x = sched.step(out, t, x, **step_kwargs).prev_sample
        samples.append(f32list(x))
    if not np.isfinite(np.asarray(samples)).all():
        raise FloatingPointError("diffusers produced non-finite samples")
    case["samples"] = samples
    case["noises"] = recorder.draws
    return case


def applies(config_name, sampler):
    flow = config_name in FLOW_CONFIGS
    if sampler == "flow-euler":
        return flow
    if flow:
        return False
    if sampler == "lcm":
        return config_name in ("sd15", "sdturbo", "zsnr")
    if sampler == "pndm":
        # PLMS as Stable Diffusion configs use it (PNDM has no zero-SNR rescale option)
        return config_name in ("sd15", "sd21v", "sdturbo")
    return True


def main():
    out_dir = Path(sys.argv[1] if len(sys.argv) > 1 else "core/tests/golden/schedulers")
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    for config_name in CONFIGS:
        cases = []
        for sampler in SAMPLERS:
            if not applies(config_name, sampler):
                continue
            for steps in STEP_COUNTS:
                try:
                    cases.append(run_case(config_name, sampler, steps))
                except (IndexError, AssertionError, FloatingPointError) as e:  # combinations diffusers itself cannot run
                    print(f"skipped {config_name}/{sampler}/{steps}: diffusers raised {type(e).__name__}: {e}")
            if config_name in ("sd15", "sd3"):
                for steps, strength in ((7, 0.6), (10, 0.35)):
                    cases.append(run_case(config_name, sampler, steps, strength=strength, seed=1))
        cfg_cls = FlowMatchEulerDiscreteScheduler if config_name in FLOW_CONFIGS else DDPMScheduler
        reference = cfg_cls.from_config({k: v for k, v in CONFIGS[config_name].items() if k != "_class_name"})
        doc = {"diffusers_version": diffusers.__version__, "torch_version": torch.__version__,
               "config_name": config_name, "config": CONFIGS[config_name], "shape": list(SHAPE),
               "flux_mu": FLUX_MU if config_name == "flux" else None,
               "alphas_cumprod": tolist(reference.alphas_cumprod) if hasattr(reference, "alphas_cumprod") else None,
               "cases": cases}
        path = out_dir / f"{config_name}.json"
        path.write_text(json.dumps(doc, separators=(",", ":")))
        print(f"{path}: {len(cases)} cases, {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
