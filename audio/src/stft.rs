//! Short-time Fourier transform and its overlap-add inverse, as `torch.stft` /
//! `torch.istft` compute them with `center=True`, reflect padding and a periodic Hann
//! window zero-padded (centred) to the FFT length.

use crate::error::{AudioError, Result};
use rayon::prelude::*;
use realfft::num_complex::Complex32;
use realfft::{ComplexToReal, RealFftPlanner, RealToComplex};
use std::sync::Arc;

/// A planned STFT of one size.
pub struct Stft {
    n_fft: usize,
    hop: usize,
    /// The Hann window of `win_length`, centred in `n_fft` zeros.
    window: Vec<f32>,
    forward: Arc<dyn RealToComplex<f32>>,
    inverse: Arc<dyn ComplexToReal<f32>>,
}

/// A complex spectrogram `[frames][bins]` (bins = `n_fft / 2 + 1`).
#[derive(Clone, Debug)]
pub struct Spectrum {
    /// Frame-major values.
    pub data: Vec<Complex32>,
    /// Frequency bins per frame.
    pub bins: usize,
}

impl Spectrum {
    /// Number of frames.
    pub fn frames(&self) -> usize {
        self.data.len().checked_div(self.bins).unwrap_or(0)
    }
}

impl Stft {
    /// An STFT with `n_fft` points, `hop` samples between frames and a `win_length` Hann window.
    pub fn new(n_fft: usize, hop: usize, win_length: usize) -> Result<Self> {
        if n_fft < 2 || hop == 0 || win_length == 0 || win_length > n_fft {
            return Err(AudioError::Params(format!("STFT needs n_fft >= 2, hop >= 1, 1 <= window <= n_fft (got {n_fft}, {hop}, {win_length})")));
        }
        let mut window = vec![0f32; n_fft];
        let left = (n_fft - win_length) / 2;
        for (i, w) in window[left..left + win_length].iter_mut().enumerate() {
            // torch.hann_window(periodic=True)
            *w = (0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / win_length as f64).cos()) as f32;
        }
        let mut planner = RealFftPlanner::<f32>::new();
        Ok(Self { n_fft, hop, window, forward: planner.plan_fft_forward(n_fft), inverse: planner.plan_fft_inverse(n_fft) })
    }

    /// Frequency bins per frame.
    pub fn bins(&self) -> usize {
        self.n_fft / 2 + 1
    }

    /// Samples between frames.
    pub fn hop(&self) -> usize {
        self.hop
    }

    /// Frames for a signal of `len` samples.
    pub fn frames_for(&self, len: usize) -> usize {
        1 + len / self.hop
    }

    /// The complex STFT of `signal` (frames centred on multiples of the hop).
    pub fn forward(&self, signal: &[f32]) -> Result<Spectrum> {
        if signal.is_empty() {
            return Err(AudioError::Invalid("cannot take the spectrogram of empty audio".into()));
        }
        let half = self.n_fft / 2;
        let padded = reflect_pad(signal, half);
        let frames = 1 + (padded.len() - self.n_fft) / self.hop;
        let bins = self.bins();
        let mut data = vec![Complex32::new(0.0, 0.0); frames * bins];
        data.par_chunks_mut(bins).enumerate().for_each_init(
            || (self.forward.make_input_vec(), self.forward.make_scratch_vec()),
            |(buf, scratch), (t, out)| {
                let frame = &padded[t * self.hop..t * self.hop + self.n_fft];
                for ((b, &x), &w) in buf.iter_mut().zip(frame).zip(&self.window) {
                    *b = x * w;
                }
                // the sizes come from the plan, so this cannot fail
                let _ = self.forward.process_with_scratch(buf, out, scratch);
            },
        );
        Ok(Spectrum { data, bins })
    }

    /// The signal whose STFT is closest to `spec` (overlap-add of windowed inverse FFTs
    /// divided by the summed squared window), `hop * (frames - 1)` samples long.
    pub fn inverse(&self, spec: &Spectrum) -> Result<Vec<f32>> {
        let frames = spec.frames();
        if spec.bins != self.bins() || frames == 0 {
            return Err(AudioError::Invalid(format!("spectrum with {} bins x {frames} frames does not fit an {}-point STFT", spec.bins, self.n_fft)));
        }
        let full = self.n_fft + self.hop * (frames - 1);
        // frames as windowed time signals, in parallel; summed in order below
        let mut chunks = vec![0f32; frames * self.n_fft];
        let scale = 1.0 / self.n_fft as f32;
        chunks.par_chunks_mut(self.n_fft).enumerate().for_each_init(
            || (self.inverse.make_input_vec(), self.inverse.make_scratch_vec()),
            |(buf, scratch), (t, out)| {
                buf.copy_from_slice(&spec.data[t * spec.bins..(t + 1) * spec.bins]);
                // a real signal's DC and Nyquist bins are real; c2r ignores their imaginary parts
                buf[0].im = 0.0;
                if self.n_fft % 2 == 0 {
                    buf[spec.bins - 1].im = 0.0;
                }
                let _ = self.inverse.process_with_scratch(buf, out, scratch);
                for (o, &w) in out.iter_mut().zip(&self.window) {
                    *o *= w * scale;
                }
            },
        );
        let mut signal = vec![0f32; full];
        let mut envelope = vec![0f32; full];
        for t in 0..frames {
            let at = t * self.hop;
            for (i, (&x, &w)) in chunks[t * self.n_fft..(t + 1) * self.n_fft].iter().zip(&self.window).enumerate() {
                signal[at + i] += x;
                envelope[at + i] += w * w;
            }
        }
        let half = self.n_fft / 2;
        let out: Vec<f32> = signal[half..full - half]
            .iter()
            .zip(&envelope[half..full - half])
            .map(|(&s, &e)| if e > 1e-11 { s / e } else { 0.0 })
            .collect();
        Ok(out)
    }
}

/// `signal` with `pad` samples reflected at each end (no edge repeat, as torch's reflect
/// mode; signals shorter than the padding keep reflecting, as numpy does).
fn reflect_pad(signal: &[f32], pad: usize) -> Vec<f32> {
    let n = signal.len() as isize;
    let at = |mut i: isize| -> f32 {
        if n == 1 {
            return signal[0];
        }
        let period = 2 * (n - 1);
        i = i.rem_euclid(period);
        if i >= n {
            i = period - i;
        }
        signal[i as usize]
    };
    (-(pad as isize)..n + pad as isize).map(at).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reflect_matches_numpy() {
        assert_eq!(reflect_pad(&[1.0, 2.0, 3.0], 2), vec![3.0, 2.0, 1.0, 2.0, 3.0, 2.0, 1.0]);
        // longer than the signal: keeps reflecting
        assert_eq!(reflect_pad(&[1.0, 2.0], 3), vec![2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 1.0]);
    }

    #[test]
    fn inverse_undoes_forward() {
        let stft = Stft::new(64, 16, 40).unwrap();
        let x: Vec<f32> = (0..1000).map(|i| ((i as f32) * 0.07).sin() + 0.3 * ((i as f32) * 0.31).cos()).collect();
        let spec = stft.forward(&x).unwrap();
        assert_eq!(spec.frames(), stft.frames_for(1000));
        let y = stft.inverse(&spec).unwrap();
        assert_eq!(y.len(), 16 * (spec.frames() - 1));
        let err = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(err < 1e-4, "{err}");
    }

    #[test]
    fn bad_sizes_are_errors() {
        assert!(Stft::new(16, 4, 32).is_err());
        assert!(Stft::new(16, 0, 8).is_err());
        assert!(Stft::new(16, 4, 8).unwrap().forward(&[]).is_err());
    }
}
