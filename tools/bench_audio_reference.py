#!/usr/bin/env python3
"""torchaudio's time to render a spectrogram as Riffusion does (InverseMelScale, then
GriffinLim with 32 iterations and momentum 0.99, Riffusion's parameters), on the same
deterministic signal `stipple bench audio` uses. Prints JSON with every run and the median.

    python tools/bench_audio_reference.py [SECONDS] [RUNS]

Needs torch==2.11.0 torchaudio==2.11.0. Threads: torch.set_num_threads(THREADS or 2), the
same as stipple's rayon pool.
"""
import json
import os
import statistics
import sys
import time

import numpy as np
import torch
import torchaudio

torch.set_num_threads(int(os.environ.get("THREADS", "2")))
SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 else 5.12
RUNS = int(sys.argv[2]) if len(sys.argv) > 2 else 3
SR = 44100
N_FFT, HOP, WIN = int(0.4 * SR), int(0.01 * SR), int(0.1 * SR)

t = np.arange(int(round(SECONDS * SR))) / SR
click = np.where(np.modf(t * 4.0)[0] < 0.01, 0.5, 0.0)
x = (0.3 * np.sin(2 * np.pi * 220.0 * t) + 0.2 * np.sin(2 * np.pi * 554.37 * t) + click).astype(np.float32) * 32768
spec = torchaudio.transforms.Spectrogram(n_fft=N_FFT, hop_length=HOP, win_length=WIN, power=None, center=True, pad_mode="reflect")
mel_scale = torchaudio.transforms.MelScale(n_mels=512, sample_rate=SR, f_min=0, f_max=10000, n_stft=N_FFT // 2 + 1, norm=None, mel_scale="htk")
inv = torchaudio.transforms.InverseMelScale(n_stft=N_FFT // 2 + 1, n_mels=512, sample_rate=SR, f_min=0, f_max=10000, norm=None, mel_scale="htk")
gl = torchaudio.transforms.GriffinLim(n_fft=N_FFT, n_iter=32, win_length=WIN, hop_length=HOP, window_fn=torch.hann_window, power=1.0, momentum=0.99, rand_init=True)
with torch.no_grad():
    mel = mel_scale(spec(torch.from_numpy(x)[None]).abs())
    gl(inv(mel))  # warm-up
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        gl(inv(mel))
        times.append(time.perf_counter() - start)
print(json.dumps({
    "what": f"torchaudio {torchaudio.__version__} InverseMelScale + GriffinLim (32 iterations), {SECONDS:.2f} s at {SR} Hz, mel {tuple(mel.shape[1:])}",
    "threads": torch.get_num_threads(),
    "render_seconds": times,
    "render_median_s": statistics.median(times),
}))
