//! Mel filterbank: linear amplitudes to mel bins and back.
//!
//! The filters are torchaudio's `melscale_fbanks` (triangles between mel-spaced edges over
//! the linear bins `linspace(0, sr // 2, n_fft / 2 + 1)`). The inverse is torchaudio's
//! `InverseMelScale`: the minimum-norm least-squares solution of `fbᵀ x = mel`, clamped at
//! zero; here through the normal equations of the (banded) `fbᵀ fb` matrix, factored once.

use crate::error::{AudioError, Result};
use crate::params::{MelScale, SpectrogramParams};
use rayon::prelude::*;

/// A mel filterbank stored as one contiguous run of weights per filter.
#[derive(Clone, Debug)]
pub struct MelFilterbank {
    /// Linear bins.
    pub n_freqs: usize,
    /// `(first bin, weights)` of each mel filter.
    filters: Vec<(usize, Vec<f32>)>,
    /// Cholesky factor of `A Aᵀ` (`A` = filters x bins), lower-triangular, row-major.
    chol: Vec<f64>,
}

fn hz_to_mel(f: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 2595.0 * (1.0 + f / 700.0).log10(),
        MelScale::Slaney => {
            let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
            let min_log_mel = min_log_hz / f_sp;
            let logstep = 6.4f64.ln() / 27.0;
            if f >= min_log_hz { min_log_mel + (f / min_log_hz).ln() / logstep } else { f / f_sp }
        }
    }
}

fn mel_to_hz(m: f64, scale: MelScale) -> f64 {
    match scale {
        MelScale::Htk => 700.0 * (10f64.powf(m / 2595.0) - 1.0),
        MelScale::Slaney => {
            let (f_sp, min_log_hz) = (200.0 / 3.0, 1000.0);
            let min_log_mel = min_log_hz / f_sp;
            let logstep = 6.4f64.ln() / 27.0;
            if m >= min_log_mel { min_log_hz * (logstep * (m - min_log_mel)).exp() } else { f_sp * m }
        }
    }
}

fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a];
    }
    (0..n).map(|i| a + (b - a) * i as f64 / (n - 1) as f64).collect()
}

impl SpectrogramParams {
    /// The centre frequency in Hz of spectrogram-image row `row` (row 0 is the top: the
    /// highest band), for the frequency axis of a spectrogram view.
    pub fn row_frequency(&self, row: usize) -> f64 {
        let n = self.num_frequencies.max(1);
        let (lo, hi) = (hz_to_mel(self.min_frequency, self.mel_scale), hz_to_mel(self.max_frequency, self.mel_scale));
        // filter k's centre is point k + 1 of n + 2 evenly spaced mels
        let k = (n - 1).saturating_sub(row.min(n - 1));
        mel_to_hz(lo + (hi - lo) * (k + 1) as f64 / (n + 1) as f64, self.mel_scale)
    }
}

impl MelFilterbank {
    /// The filterbank for `p` (its FFT size, rate, range, scale and normalisation).
    pub fn new(p: &SpectrogramParams) -> Result<Self> {
        p.validate()?;
        let n_freqs = p.n_fft() / 2 + 1;
        let n_mels = p.num_frequencies;
        let all_freqs = linspace(0.0, (p.sample_rate / 2) as f64, n_freqs);
        let m_pts = linspace(hz_to_mel(p.min_frequency, p.mel_scale), hz_to_mel(p.max_frequency, p.mel_scale), n_mels + 2);
        let f_pts: Vec<f64> = m_pts.iter().map(|&m| mel_to_hz(m, p.mel_scale)).collect();
        let mut filters = Vec::with_capacity(n_mels);
        for m in 0..n_mels {
            let (lo, mid, hi) = (f_pts[m], f_pts[m + 1], f_pts[m + 2]);
            let norm = if p.mel_norm_slaney { 2.0 / (hi - lo) } else { 1.0 };
            let weight = |f: f64| ((f - lo) / (mid - lo)).min((hi - f) / (hi - mid)).max(0.0) * norm;
            let first = all_freqs.iter().position(|&f| weight(f) > 0.0);
            let weights: Vec<f32> = match first {
                Some(s) => all_freqs[s..].iter().map(|&f| weight(f)).take_while(|&w| w > 0.0).map(|w| w as f32).collect(),
                None => Vec::new(),
            };
            filters.push((first.unwrap_or(0), weights));
        }
        if let Some(m) = filters.iter().position(|(_, w)| w.is_empty()) {
            return Err(AudioError::Params(format!(
                "mel filter {m} covers no FFT bin: use fewer mel bins ({n_mels}) or a longer FFT ({} samples)",
                p.n_fft()
            )));
        }
        let chol = cholesky(&gram(&filters), n_mels)
            .ok_or_else(|| AudioError::Params("the mel filters are linearly dependent; use fewer mel bins".into()))?;
        Ok(Self { n_freqs, filters, chol })
    }

    /// Mel bins.
    pub fn n_mels(&self) -> usize {
        self.filters.len()
    }

    /// Mel amplitudes `[n_mels][frames]` of linear amplitudes given frame-major `[frames][n_freqs]`.
    pub fn forward(&self, linear: &[f32], frames: usize) -> Vec<f32> {
        let mut mel = vec![0f32; self.n_mels() * frames];
        mel.par_chunks_mut(frames).zip(&self.filters).for_each(|(row, (first, w))| {
            for (t, out) in row.iter_mut().enumerate() {
                let bins = &linear[t * self.n_freqs + first..][..w.len()];
                *out = bins.iter().zip(w).map(|(a, b)| a * b).sum();
            }
        });
        mel
    }

    /// Linear amplitudes, frame-major `[frames][n_freqs]`, whose mel projection is `mel`
    /// `[n_mels][frames]`: `relu(Aᵀ (A Aᵀ)⁻¹ mel)`, the minimum-norm solution.
    pub fn inverse(&self, mel: &[f32], frames: usize) -> Vec<f32> {
        let n = self.n_mels();
        let mut linear = vec![0f32; frames * self.n_freqs];
        linear.par_chunks_mut(self.n_freqs).enumerate().for_each(|(t, out)| {
            let mut y: Vec<f64> = (0..n).map(|m| mel[m * frames + t] as f64).collect();
            cholesky_solve(&self.chol, n, &mut y);
            for ((first, w), &ym) in self.filters.iter().zip(&y) {
                for (o, &wi) in out[*first..].iter_mut().zip(w) {
                    *o += (wi as f64 * ym) as f32;
                }
            }
            out.iter_mut().for_each(|x| *x = x.max(0.0));
        });
        linear
    }
}

/// `A Aᵀ` for the filters as rows of `A` (dense, n_mels²; only neighbours overlap).
fn gram(filters: &[(usize, Vec<f32>)]) -> Vec<f64> {
    let n = filters.len();
    let mut g = vec![0f64; n * n];
    for i in 0..n {
        for j in i..n {
            let ((fi, wi), (fj, wj)) = (&filters[i], &filters[j]);
            let (start, end) = (*fi.max(fj), (fi + wi.len()).min(fj + wj.len()));
            let dot: f64 = (start..end).map(|k| wi[k - fi] as f64 * wj[k - fj] as f64).sum();
            g[i * n + j] = dot;
            g[j * n + i] = dot;
        }
    }
    g
}

/// Lower Cholesky factor of the symmetric positive-definite `a` (n x n), or `None`.
fn cholesky(a: &[f64], n: usize) -> Option<Vec<f64>> {
    let mut l = vec![0f64; n * n];
    for i in 0..n {
        for j in 0..=i {
            let s: f64 = a[i * n + j] - (0..j).map(|k| l[i * n + k] * l[j * n + k]).sum::<f64>();
            if i == j {
                if s <= 0.0 {
                    return None;
                }
                l[i * n + i] = s.sqrt();
            } else {
                l[i * n + j] = s / l[j * n + j];
            }
        }
    }
    Some(l)
}

/// Solves `L Lᵀ x = y` in place.
fn cholesky_solve(l: &[f64], n: usize, y: &mut [f64]) {
    for i in 0..n {
        let s: f64 = (0..i).map(|k| l[i * n + k] * y[k]).sum();
        y[i] = (y[i] - s) / l[i * n + i];
    }
    for i in (0..n).rev() {
        let s: f64 = (i + 1..n).map(|k| l[k * n + i] * y[k]).sum();
        y[i] = (y[i] - s) / l[i * n + i];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_round_trip() {
        for s in [MelScale::Htk, MelScale::Slaney] {
            for f in [0.0, 440.0, 999.0, 1000.0, 8000.0] {
                assert!((mel_to_hz(hz_to_mel(f, s), s) - f).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn inverse_reproduces_mel_of_its_output() {
        let p = SpectrogramParams { num_frequencies: 32, padded_duration_ms: 40, window_duration_ms: 20, max_frequency: 8000.0, ..SpectrogramParams::riffusion() };
        let fb = MelFilterbank::new(&p).unwrap();
        let frames = 3;
        let linear: Vec<f32> = (0..frames * fb.n_freqs).map(|i| ((i * 37 % 101) as f32) / 101.0).collect();
        let mel = fb.forward(&linear, frames);
        let back = fb.inverse(&mel, frames);
        let again = fb.forward(&back, frames);
        // the least-squares solution reproduces the mel bins (up to the clamp at zero)
        let rel = mel.iter().zip(&again).map(|(a, b)| (a - b).abs() / a.abs().max(1e-3)).fold(0f32, f32::max);
        assert!(rel < 0.05, "{rel}");
    }

    #[test]
    fn too_many_bins_is_a_clear_error() {
        let p = SpectrogramParams { num_frequencies: 4000, padded_duration_ms: 20, window_duration_ms: 10, ..SpectrogramParams::riffusion() };
        let e = MelFilterbank::new(&p).unwrap_err().to_string();
        assert!(e.contains("covers no FFT bin"), "{e}");
    }

    #[test]
    fn rows_run_from_high_to_low_frequencies_inside_the_range() {
        let p = SpectrogramParams::riffusion();
        let top = p.row_frequency(0);
        let bottom = p.row_frequency(p.num_frequencies - 1);
        assert!(top < p.max_frequency && top > 0.9 * p.max_frequency, "{top}");
        assert!(bottom > p.min_frequency && bottom < 100.0, "{bottom}");
        assert!((1..p.num_frequencies).all(|r| p.row_frequency(r) < p.row_frequency(r - 1)));
    }
}
