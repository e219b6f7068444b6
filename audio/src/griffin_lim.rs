//! Griffin-Lim phase reconstruction with momentum ("fast Griffin-Lim", Perraudin et al.
//! 2013), step for step as torchaudio's `griffinlim`.

use crate::error::Result;
use crate::stft::{Spectrum, Stft};
use realfft::num_complex::Complex32;

/// How the phases start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PhaseInit {
    /// Complex values with real and imaginary parts uniform in [0, 1) from this seed
    /// (torchaudio's `rand_init=True`, with stipple's portable generator).
    Random(u64),
    /// All ones (torchaudio's `rand_init=False`): deterministic, for comparisons.
    Ones,
}

/// A waveform whose STFT magnitudes approximate `magnitudes` (frame-major
/// `[frames][bins]`), after `iters` rounds of projecting onto consistent spectrograms.
pub fn griffin_lim(stft: &Stft, magnitudes: &[f32], frames: usize, iters: usize, momentum: f64, init: PhaseInit) -> Result<Vec<f32>> {
    let bins = stft.bins();
    let mut angles: Vec<Complex32> = match init {
        PhaseInit::Ones => vec![Complex32::new(1.0, 0.0); frames * bins],
        PhaseInit::Random(seed) => {
            let mut rng = stipple_core::noise::PortableRng::new(seed);
            use stipple_core::noise::NoiseSource;
            (0..frames * bins).map(|_| Complex32::new(rng.uniform() as f32, rng.uniform() as f32)).collect()
        }
    };
    let alpha = (momentum / (1.0 + momentum)) as f32;
    let mut previous: Option<Vec<Complex32>> = None;
    let with_magnitudes = |angles: &[Complex32]| Spectrum {
        data: angles.iter().zip(magnitudes).map(|(a, &m)| a * m).collect(),
        bins,
    };
    for _ in 0..iters {
        let signal = stft.inverse(&with_magnitudes(&angles))?;
        let rebuilt = stft.forward(&signal)?.data;
        for (i, a) in angles.iter_mut().enumerate() {
            let mut z = rebuilt[i];
            if let Some(prev) = &previous
                && alpha != 0.0
            {
                z -= prev[i] * alpha;
            }
            *a = z / (z.norm() + 1e-16);
        }
        previous = Some(rebuilt);
    }
    stft.inverse(&with_magnitudes(&angles))
}

/// Spectral convergence `‖|S(x)| - M‖ / ‖M‖` of a signal against target magnitudes: the
/// usual quality figure of a phase reconstruction (0 is perfect).
pub fn spectral_convergence(stft: &Stft, signal: &[f32], magnitudes: &[f32]) -> Result<f64> {
    let spec = stft.forward(signal)?;
    let (mut num, mut den) = (0f64, 0f64);
    for (z, &m) in spec.data.iter().zip(magnitudes) {
        let d = (z.norm() - m) as f64;
        num += d * d;
        den += (m as f64) * (m as f64);
    }
    Ok((num / den.max(f64::MIN_POSITIVE)).sqrt())
}
