//! The parameters of a spectrogram image: the STFT, the mel scale and the image mapping.
//!
//! Defaults are Riffusion's (`riffusion/spectrogram_params.py`): 44.1 kHz mono, 10 ms hop,
//! 100 ms Hann window padded to 400 ms, 512 HTK mel bins over 0-10 kHz without
//! normalisation, amplitudes raised to 0.25 in the image. Other spectrogram models use the
//! same struct with their own values. The values travel inside the PNG as Riffusion's
//! EXIF tags, so an image can be rendered back with the parameters it was made with.

use crate::error::{AudioError, Result};
use serde::{Deserialize, Serialize};
use stipple_core::params::{Param, Range, Rule, Table};

/// Frequency-to-mel mapping (torchaudio's `mel_scale`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MelScale {
    /// `2595 log10(1 + f / 700)`.
    Htk,
    /// Linear below 1 kHz, logarithmic above (Slaney's auditory toolbox).
    Slaney,
}

/// Spectrogram and image parameters (a file may give only some: the rest are Riffusion's).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SpectrogramParams {
    /// Samples per second.
    pub sample_rate: u32,
    /// Whether the image holds two channels (G and B) instead of one.
    pub stereo: bool,
    /// Hop between STFT frames, in milliseconds.
    pub step_size_ms: u32,
    /// Hann window length, in milliseconds.
    pub window_duration_ms: u32,
    /// FFT length (the window zero-padded to it), in milliseconds.
    pub padded_duration_ms: u32,
    /// Mel bins: the image height.
    pub num_frequencies: usize,
    /// Lowest mel filter edge, Hz.
    pub min_frequency: f64,
    /// Highest mel filter edge, Hz.
    pub max_frequency: f64,
    /// The mel mapping.
    pub mel_scale: MelScale,
    /// Whether each mel filter is scaled to unit area (torchaudio's `norm="slaney"`).
    pub mel_norm_slaney: bool,
    /// Griffin-Lim iterations when rendering audio.
    pub griffin_lim_iters: usize,
    /// Griffin-Lim momentum (torchaudio's `momentum`).
    pub griffin_lim_momentum: f64,
    /// Power applied to normalised amplitudes in the image.
    pub power_for_image: f64,
}

impl Default for SpectrogramParams {
    fn default() -> Self {
        Self::riffusion()
    }
}

impl SpectrogramParams {
    /// Riffusion's parameters (riffusion-model-v1).
    pub fn riffusion() -> Self {
        Self {
            sample_rate: 44_100,
            stereo: false,
            step_size_ms: 10,
            window_duration_ms: 100,
            padded_duration_ms: 400,
            num_frequencies: 512,
            min_frequency: 0.0,
            max_frequency: 10_000.0,
            mel_scale: MelScale::Htk,
            mel_norm_slaney: false,
            griffin_lim_iters: 32,
            griffin_lim_momentum: 0.99,
            power_for_image: 0.25,
        }
    }

    /// Samples per FFT (the padded window), truncated as Riffusion does.
    pub fn n_fft(&self) -> usize {
        ms_to_samples(self.padded_duration_ms, self.sample_rate)
    }

    /// Samples in the Hann window.
    pub fn win_length(&self) -> usize {
        ms_to_samples(self.window_duration_ms, self.sample_rate)
    }

    /// Samples between frames.
    pub fn hop_length(&self) -> usize {
        ms_to_samples(self.step_size_ms, self.sample_rate)
    }

    /// Seconds of audio covered by `columns` image columns.
    pub fn seconds_for_columns(&self, columns: usize) -> f64 {
        (columns * self.hop_length()) as f64 / self.sample_rate as f64
    }

    /// Image columns (STFT frames) for `samples` samples: `1 + samples / hop`.
    pub fn columns_for_samples(&self, samples: usize) -> usize {
        1 + samples / self.hop_length().max(1)
    }

    /// Parameters from a JSON file (the struct's fields), validated.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::error::file_err(path, e))?;
        let params: Self = serde_json::from_str(&text).map_err(|e| crate::error::file_err(path, format!("not valid spectrogram parameters: {e}")))?;
        params.validate()?;
        Ok(params)
    }

    /// Checks that the values describe a computable spectrogram ([`PARAMS`]).
    pub fn validate(&self) -> Result<()> {
        PARAMS.validate(self).map_err(|e| match e {
            stipple_core::Error::InvalidArgument(msg) => AudioError::Params(msg),
            other => AudioError::Params(other.to_string()),
        })
    }
}

/// `SpectrogramParams`' ranges and rules (a `--params` file, a PNG's EXIF tags, a model's
/// `spectrogram_params.json`).
pub static PARAMS: Table<SpectrogramParams> = Table {
    commands: "audio spectrogram / render, spectrogram_params.json (SpectrogramParams)",
    params: &[
        Param { name: "sample_rate", flag: "", range: Range::int(1000, 384_000), help: "samples per second", get: |p| Some(p.sample_rate as f64), set: |p, v| p.sample_rate = v as u32 },
        Param { name: "step_size_ms", flag: "", range: Range::int(1, 1000), help: "hop between frames, ms", get: |p| Some(p.step_size_ms as f64), set: |p, v| p.step_size_ms = v as u32 },
        Param { name: "window_duration_ms", flag: "", range: Range::int(1, 10_000), help: "Hann window, ms", get: |p| Some(p.window_duration_ms as f64), set: |p, v| (p.window_duration_ms, p.padded_duration_ms) = (v as u32, p.padded_duration_ms.max(v as u32)) },
        Param { name: "padded_duration_ms", flag: "", range: Range::int(1, 10_000), help: "FFT length, ms", get: |p| Some(p.padded_duration_ms as f64), set: |p, v| (p.padded_duration_ms, p.window_duration_ms) = (v as u32, p.window_duration_ms.min(v as u32).max(1)) },
        Param { name: "num_frequencies", flag: "", range: Range::int(1, 4096), help: "mel bins (the image height)", get: |p| Some(p.num_frequencies as f64), set: |p, v| p.num_frequencies = v as usize },
        Param { name: "griffin_lim_iters", flag: "--iterations", range: Range::int(1, 10_000), help: "Griffin-Lim iterations when rendering", get: |p| Some(p.griffin_lim_iters as f64), set: |p, v| p.griffin_lim_iters = v as usize },
        Param { name: "griffin_lim_momentum", flag: "", range: Range { min: 0.0, min_open: false, max: 1.0, max_open: true, integer: false }, help: "Griffin-Lim momentum", get: |p| Some(p.griffin_lim_momentum), set: |p, v| p.griffin_lim_momentum = v },
        Param { name: "power_for_image", flag: "", range: Range::open_closed(0.0, 10.0), help: "power of normalised amplitudes in the image", get: |p| Some(p.power_for_image), set: |p, v| p.power_for_image = v },
    ],
    rules: &[
        Rule {
            params: "window_duration_ms, padded_duration_ms",
            help: "the window fits in the FFT",
            check: |p| {
                if p.win_length() > p.n_fft() { Err(format!("the window ({} samples) is longer than the FFT ({} samples)", p.win_length(), p.n_fft())) } else { Ok(()) }
            },
            break_it: |p| p.padded_duration_ms = p.window_duration_ms / 2,
        },
        Rule {
            params: "min_frequency, max_frequency, sample_rate",
            help: "0 <= min_frequency < max_frequency <= sample_rate / 2",
            check: |p| {
                let nyquist = p.sample_rate as f64 / 2.0;
                if !(p.min_frequency >= 0.0 && p.min_frequency < p.max_frequency && p.max_frequency <= nyquist) {
                    Err(format!("mel range {}-{} Hz must satisfy 0 <= min < max <= {nyquist} Hz", p.min_frequency, p.max_frequency))
                } else {
                    Ok(())
                }
            },
            break_it: |p| p.max_frequency = p.sample_rate as f64,
        },
    ],
};

fn ms_to_samples(ms: u32, rate: u32) -> usize {
    // int(ms / 1000.0 * rate), as Riffusion computes it
    (ms as f64 / 1000.0 * rate as f64) as usize
}

/// Riffusion's EXIF tag numbers (`SpectrogramParams.ExifTags`).
pub mod exif_tags {
    /// Samples per second.
    pub const SAMPLE_RATE: u16 = 11000;
    /// Stereo flag.
    pub const STEREO: u16 = 11005;
    /// Hop, ms.
    pub const STEP_SIZE_MS: u16 = 11010;
    /// Window, ms.
    pub const WINDOW_DURATION_MS: u16 = 11020;
    /// FFT length, ms.
    pub const PADDED_DURATION_MS: u16 = 11030;
    /// Mel bins.
    pub const NUM_FREQUENCIES: u16 = 11040;
    /// Lowest frequency, Hz.
    pub const MIN_FREQUENCY: u16 = 11050;
    /// Highest frequency, Hz.
    pub const MAX_FREQUENCY: u16 = 11060;
    /// Image power.
    pub const POWER_FOR_IMAGE: u16 = 11070;
    /// The spectrogram's maximum amplitude before normalisation.
    pub const MAX_VALUE: u16 = 11080;
}
