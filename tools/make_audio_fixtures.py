#!/usr/bin/env python3
"""Reference spectrograms for stipple-audio's codec tests, made with torchaudio (the
library Riffusion's converter is built on) and Riffusion's published parameters.

For each test sound (three synthetic ones and two CC0 Sonic Pi samples from the npm
package `supersonic-scsynth-samples`) it writes, under audio/tests/fixtures/:
  NAME.wav              the input, 16-bit mono 44.1 kHz, 1.5 s
  NAME.mel.npy          torchaudio Spectrogram(power=None) -> abs -> MelScale, float32 [512, frames]
  NAME.png              Riffusion's image mapping of it (max-normalise, ^0.25, x255, invert,
                        uint8 truncation, flip), saved by Pillow with Riffusion's EXIF tags
  NAME.linear.npy       InverseMelScale (torchaudio's lstsq + relu) of the mel, frames 60..63
  NAME.gl_ones.npy      GriffinLim(rand_init=False, 32 iterations, momentum 0.99) of the full
                        inverse, float32 samples
and reference.json with torchaudio's round-trip spectral convergence (audio -> image -> audio,
random phase init) per sound, and the torchaudio version.

It also writes riffusion-tiny/: a tiny random Stable Diffusion 1.x pipeline saved by diffusers in
the layout of riffusion/riffusion-model-v1 (model_index.json, unet/, vae/, text_encoder/,
tokenizer/ with vocab.json + merges.txt, scheduler/ with Riffusion's PNDM config), plus a
spectrogram_params.json with small parameters (16 kHz, 64 mel bins) so the whole text-to-music
path runs in tests in seconds. Its windows are 64 columns (0.64 s).

Samples are read as int16 values in float (pydub's get_array_of_samples, as Riffusion does).
Run with a Python that has torch, torchaudio, numpy, pillow, soundfile:
    python tools/make_audio_fixtures.py [SONIC_PI_SAMPLES_DIR]
(without the folder it runs `npm pack supersonic-scsynth-samples@0.84.2` in a temp dir).
"""
import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torchaudio
from PIL import Image

OUT = os.path.join(os.path.dirname(__file__), "..", "audio", "tests", "fixtures")
SR = 44100
SECONDS = 1.5

# Riffusion's SpectrogramParams defaults
N_FFT, HOP, WIN = int(0.4 * SR), int(0.01 * SR), int(0.1 * SR)
N_MELS, F_MIN, F_MAX, POWER = 512, 0, 10000, 0.25
EXIF = {11000: SR, 11005: False, 11010: 10, 11020: 100, 11030: 400, 11040: N_MELS, 11050: F_MIN, 11060: F_MAX, 11070: float(POWER)}


def synthetic():
    t = np.arange(int(SR * SECONDS)) / SR
    rng = np.random.default_rng(7)
    sweep = 0.6 * np.sin(2 * np.pi * (100 * t + (8000 - 100) / (2 * SECONDS) * t**2))
    chord = sum(0.2 / k * np.sin(2 * np.pi * f * k * t) for f in (220.0, 277.18, 329.63) for k in (1, 2, 3))
    beat = 0.05 * rng.standard_normal(t.size)
    for start in np.arange(0, SECONDS, 0.25):  # 240 BPM clicks with decaying noise bursts
        i = int(start * SR)
        n = min(2000, t.size - i)
        beat[i : i + n] += 0.8 * rng.standard_normal(n) * np.exp(-np.arange(n) / 300)
    return {"sweep": sweep, "chord": chord, "beat": beat}


def sonic_pi(folder):
    import soundfile

    out = {}
    for name in ("loop_amen", "ambi_piano"):
        data, rate = soundfile.read(os.path.join(folder, name + ".flac"), dtype="float64", always_2d=True)
        mono = data.mean(axis=1)
        if rate != SR:
            raise SystemExit(f"{name}: {rate} Hz, expected {SR}")
        out[name] = mono[: int(SR * SECONDS)]
    return out


def to_int16(x):
    x = x / max(1.0, np.abs(x).max() / 0.9)
    return np.round(x * 32767).astype(np.int16)


def write_wav(path, pcm):
    import wave

    with wave.open(path, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SR)
        w.writeframes(pcm.tobytes())


TINY_PARAMS = {
    "sample_rate": 16000, "stereo": False, "step_size_ms": 10, "window_duration_ms": 50, "padded_duration_ms": 100,
    "num_frequencies": 64, "min_frequency": 0.0, "max_frequency": 6000.0, "mel_scale": "htk", "mel_norm_slaney": False,
    "griffin_lim_iters": 32, "griffin_lim_momentum": 0.99, "power_for_image": 0.25,
}


def riffusion_tiny():
    """A tiny SD 1.x pipeline in Riffusion's layout (built with the image fixtures' helpers)."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import shutil

    import make_image_fixtures as mif
    from diffusers import StableDiffusionPipeline
    from transformers import CLIPTextModel, CLIPTokenizer

    vocab, merges = mif.clip_vocab_files()
    folder = os.path.join(OUT, "riffusion-tiny")
    shutil.rmtree(folder, ignore_errors=True)
    mif.write_tokenizer(folder + "_tok", vocab, merges, "<|endoftext|>")
    tok = CLIPTokenizer.from_pretrained(folder + "_tok")
    torch.manual_seed(21)
    text = mif.randomize(CLIPTextModel(mif.clip_config(vocab, 16, "quick_gelu")), 21).eval()
    unet = mif.unet(22, sample_size=32, cross_attention_dim=16, attention_head_dim=2,
                    down_block_types=["CrossAttnDownBlock2D", "DownBlock2D"], up_block_types=["UpBlock2D", "CrossAttnUpBlock2D"],
                    block_out_channels=[16, 32])
    pipe = StableDiffusionPipeline(vae=mif.vae([8, 16], 23), text_encoder=text, tokenizer=tok, unet=unet,
                                   scheduler=mif.scheduler_from(mif.SD1_SCHED), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.save_pretrained(folder, safe_serialization=True)
    shutil.rmtree(folder + "_tok")
    # the hub layout of SD tokenizers (riffusion-model-v1's too): vocab.json + merges.txt
    shutil.rmtree(os.path.join(folder, "tokenizer"))
    mif.write_tokenizer(os.path.join(folder, "tokenizer"), vocab, merges, "<|endoftext|>")
    with open(os.path.join(folder, "spectrogram_params.json"), "w") as f:
        json.dump(TINY_PARAMS, f, indent=1)


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else None
    if folder is None:
        tmp = tempfile.mkdtemp()
        subprocess.run(["npm", "pack", "supersonic-scsynth-samples@0.84.2"], cwd=tmp, check=True, capture_output=True)
        subprocess.run(["tar", "xzf", "supersonic-scsynth-samples-0.84.2.tgz"], cwd=tmp, check=True)
        folder = os.path.join(tmp, "package", "samples")
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    spec = torchaudio.transforms.Spectrogram(n_fft=N_FFT, hop_length=HOP, win_length=WIN, pad=0, window_fn=torch.hann_window, power=None, normalized=False, center=True, pad_mode="reflect", onesided=True)
    mel_scale = torchaudio.transforms.MelScale(n_mels=N_MELS, sample_rate=SR, f_min=F_MIN, f_max=F_MAX, n_stft=N_FFT // 2 + 1, norm=None, mel_scale="htk")
    inv_mel = torchaudio.transforms.InverseMelScale(n_stft=N_FFT // 2 + 1, n_mels=N_MELS, sample_rate=SR, f_min=F_MIN, f_max=F_MAX, norm=None, mel_scale="htk")
    gl = lambda rand: torchaudio.transforms.GriffinLim(n_fft=N_FFT, n_iter=32, win_length=WIN, hop_length=HOP, window_fn=torch.hann_window, power=1.0, momentum=0.99, length=None, rand_init=rand)
    report = {"torchaudio": torchaudio.__version__, "torch": torch.__version__, "sounds": {}}
    sounds = {**synthetic(), **sonic_pi(folder)}
    for name, x in sounds.items():
        pcm = to_int16(x)
        write_wav(os.path.join(OUT, name + ".wav"), pcm)
        wave_t = torch.from_numpy(pcm.astype(np.float32))[None]
        mags = spec(wave_t).abs()
        mel = mel_scale(mags)[0]
        np.save(os.path.join(OUT, name + ".mel.npy"), np.ascontiguousarray(mel.numpy(), dtype=np.float32))
        # Riffusion's image mapping
        max_value = float(mel.max())
        data = 255 - np.power(mel.numpy() / max_value, POWER) * 255
        img = Image.fromarray(data.astype(np.uint8), mode="L").convert("RGB").transpose(Image.Transpose.FLIP_TOP_BOTTOM)
        exif = img.getexif()
        exif.update({**EXIF, 11080: max_value}.items())
        img.save(os.path.join(OUT, name + ".png"), exif=exif, format="PNG")
        # inverse mel of the exact mel (deterministic), a few frames kept
        linear = inv_mel(mel[None])[0]
        np.save(os.path.join(OUT, name + ".linear.npy"), np.ascontiguousarray(linear[:, 60:64].numpy(), dtype=np.float32))
        ones = gl(False)(linear[None])[0]
        np.save(os.path.join(OUT, name + ".gl_ones.npy"), np.ascontiguousarray(ones.numpy(), dtype=np.float32))
        # round trip through the 8-bit image with random phases, as users get it
        back = np.array(Image.open(os.path.join(OUT, name + ".png")).convert("RGB"))[::-1, :, 0].astype(np.float32)
        mel_back = torch.from_numpy(np.power((255 - back) / 255, 1 / POWER) * max_value).float()
        audio = gl(True)(inv_mel(mel_back[None]))[0]
        rebuilt = spec(audio[None]).abs()[0]
        target = mags[0]
        frames = min(rebuilt.shape[1], target.shape[1])
        sc = float(torch.linalg.norm(rebuilt[:, :frames] - target[:, :frames]) / torch.linalg.norm(target[:, :frames]))
        report["sounds"][name] = {"spectral_convergence": sc, "frames": int(mel.shape[1]), "max_value": max_value}
        print(name, mel.shape, f"SC {sc:.4f}")
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(report, f, indent=1)
    riffusion_tiny()


if __name__ == "__main__":
    main()
