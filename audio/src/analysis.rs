//! Measuring music, to check that generated clips follow their prompts: the tempo (from
//! the autocorrelation of an onset envelope, of clean audio or of a mel spectrogram),
//! the key (pitch-class profile of the spectrum correlated with the Krumhansl-Kessler key profiles) and the spectral
//! centroid (brightness: a bass sits far below a flute).

use realfft::RealFftPlanner;

/// Onset strength every `hop` samples: the rise of log frame energy (half-wave rectified).
fn onset_envelope(samples: &[f32], hop: usize) -> Vec<f32> {
    let energy: Vec<f32> = samples.chunks(hop).map(|c| (c.iter().map(|v| v * v).sum::<f32>() / c.len() as f32 + 1e-10).ln()).collect();
    energy.windows(2).map(|w| (w[1] - w[0]).max(0.0)).collect()
}

/// `v` less its mean, over its standard deviation (zeros stay zeros).
fn standardised(v: &[f32]) -> Vec<f32> {
    let mean = v.iter().sum::<f32>() / v.len().max(1) as f32;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len().max(1) as f32).sqrt();
    v.iter().map(|x| if std > 0.0 { (x - mean) / std } else { 0.0 }).collect()
}

/// The tempo in beats per minute within `[lo, hi)` of clean audio: the lag of the
/// strongest autocorrelation of the energy rise (10 ms frames). Pulses at twice or half
/// the beat are as periodic as the beat itself, so the range should span under an
/// octave. Audio made from a spectrogram by Griffin-Lim wobbles in energy from frame to
/// frame; read it with [`tempo_of_mel`] on its mel spectrogram instead.
pub fn tempo(samples: &[f32], rate: u32, lo: f64, hi: f64) -> Option<f64> {
    let hop = (rate as usize / 100).max(1);
    periodicity(&onset_envelope(samples, hop), 60.0 * rate as f64 / hop as f64, lo, hi)
}

/// The tempo in beats per minute within `[lo, hi)` of a mel spectrogram (bin-major
/// amplitudes, `frames_per_second` columns a second): the periodicity of its onsets,
/// the spectral flux (each bin's rise in log amplitude, 80 dB below the peak as the
/// floor, as librosa's `onset_strength`) and the rise of column energy, each
/// standardised, summed. A note or a drum hit lifts many bins at once, while the
/// frame-to-frame wobble of Griffin-Lim audio cancels out across bins.
pub fn tempo_of_mel(mel: &[f32], n_mels: usize, frames_per_second: f64, lo: f64, hi: f64) -> Option<f64> {
    let frames = mel.len() / n_mels.max(1);
    let peak = mel.iter().fold(0f32, |m, &v| m.max(v)).max(1e-12);
    let column = |t: usize| (0..n_mels).map(move |m| mel[m * frames + t]);
    let logs: Vec<Vec<f32>> = (0..frames).map(|t| column(t).map(|a| a.max(peak * 1e-4).ln()).collect()).collect();
    let flux: Vec<f32> = logs.windows(2).map(|w| w[1].iter().zip(&w[0]).map(|(b, a)| (b - a).max(0.0)).sum::<f32>() / n_mels as f32).collect();
    let energy: Vec<f32> = (0..frames).map(|t| (column(t).map(|a| a * a).sum::<f32>() + 1e-12).ln()).collect();
    let rise: Vec<f32> = energy.windows(2).map(|w| (w[1] - w[0]).max(0.0)).collect();
    let env: Vec<f32> = standardised(&flux).iter().zip(standardised(&rise)).map(|(a, b)| a + b).collect();
    periodicity(&env, 60.0 * frames_per_second, lo, hi)
}

/// The beats per minute in `[lo, hi)` at which the onset envelope `env` (sampled
/// `frames_per_min` times a minute) best matches itself: its strongest autocorrelation,
/// over lags of a quarter frame (the envelope linearly interpolated: a beat rarely lasts
/// a whole number of frames, 12.5 at 150 bpm in 32 ms columns, and a whole-frame lag
/// would favour twice the period), refined between neighbouring lags.
fn periodicity(env: &[f32], frames_per_min: f64, lo: f64, hi: f64) -> Option<f64> {
    const UP: usize = 4;
    let mean = env.iter().sum::<f32>() / env.len().max(1) as f32;
    let env: Vec<f32> = (0..env.len().saturating_sub(1) * UP + 1)
        .map(|i| {
            let (k, f) = (i / UP, (i % UP) as f32 / UP as f32);
            let next = env.get(k + 1).copied().unwrap_or(env[k]);
            env[k] * (1.0 - f) + next * f - mean
        })
        .collect();
    let frames_per_min = frames_per_min * UP as f64;
    let (min_lag, max_lag) = ((frames_per_min / hi).ceil() as usize, (frames_per_min / lo).floor() as usize);
    if max_lag + UP >= env.len() || min_lag == 0 {
        return None;
    }
    let score = |lag: usize| env.iter().zip(&env[lag..]).map(|(a, b)| a * b).sum::<f32>() / (env.len() - lag) as f32;
    let best = (min_lag..=max_lag).max_by(|&a, &b| score(a).total_cmp(&score(b)))?;
    // parabolic refinement between neighbouring lags
    let (y0, y1, y2) = (score(best.saturating_sub(1)), score(best), score(best + 1));
    let denom = y0 - 2.0 * y1 + y2;
    let shift = if denom.abs() > 1e-12 { (0.5 * (y0 - y2) / denom).clamp(-0.5, 0.5) } else { 0.0 };
    Some(frames_per_min / (best as f64 + shift as f64))
}

/// The magnitude spectrum of the whole clip (one FFT of up to 2^16 samples per block,
/// averaged), with the frequency of each bin.
fn spectrum(samples: &[f32], rate: u32) -> (Vec<f32>, Vec<f64>) {
    let n = samples.len().clamp(2, 1 << 14).next_power_of_two();
    let fft = RealFftPlanner::<f32>::new().plan_fft_forward(n);
    let mut sum = vec![0f32; n / 2 + 1];
    let window: Vec<f32> = (0..n).map(|i| 0.5 - 0.5 * (2.0 * std::f32::consts::PI * i as f32 / n as f32).cos()).collect();
    for block in samples.chunks(n) {
        let mut input: Vec<f32> = block.iter().zip(&window).map(|(s, w)| s * w).collect();
        input.resize(n, 0.0);
        let mut out = fft.make_output_vec();
        if fft.process(&mut input, &mut out).is_ok() {
            for (s, c) in sum.iter_mut().zip(&out) {
                *s += c.norm();
            }
        }
    }
    let freqs = (0..sum.len()).map(|k| k as f64 * rate as f64 / n as f64).collect();
    (sum, freqs)
}

/// The amplitude-weighted mean frequency in Hz.
pub fn spectral_centroid(samples: &[f32], rate: u32) -> f64 {
    let (mag, freqs) = spectrum(samples, rate);
    let total: f64 = mag.iter().map(|&m| m as f64).sum();
    mag.iter().zip(&freqs).map(|(&m, f)| m as f64 * f).sum::<f64>() / total.max(1e-12)
}

/// Energy per pitch class (0 = C) between 65 Hz and 2 kHz.
pub fn chroma(samples: &[f32], rate: u32) -> [f64; 12] {
    let (mag, freqs) = spectrum(samples, rate);
    let mut c = [0f64; 12];
    for (&m, &f) in mag.iter().zip(&freqs) {
        if (65.0..2000.0).contains(&f) {
            let midi = 69.0 + 12.0 * (f / 440.0).log2();
            c[(midi.round() as i64).rem_euclid(12) as usize] += (m as f64).powi(2);
        }
    }
    c
}

/// Krumhansl-Kessler probe-tone profiles (major, minor), tonic first.
const MAJOR: [f64; 12] = [6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88];
const MINOR: [f64; 12] = [6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17];

fn correlation(a: &[f64; 12], b: &[f64; 12]) -> f64 {
    let (ma, mb) = (a.iter().sum::<f64>() / 12.0, b.iter().sum::<f64>() / 12.0);
    let cov: f64 = a.iter().zip(b).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let (va, vb): (f64, f64) = (a.iter().map(|x| (x - ma).powi(2)).sum(), b.iter().map(|y| (y - mb).powi(2)).sum());
    cov / (va * vb).sqrt().max(1e-12)
}

/// The best-matching key: (tonic pitch class, minor).
pub fn key(samples: &[f32], rate: u32) -> (u8, bool) {
    let c = chroma(samples, rate);
    let mut best = (0u8, false, f64::NEG_INFINITY);
    for tonic in 0..12 {
        let rotated: [f64; 12] = std::array::from_fn(|i| c[(i + tonic) % 12]);
        for (minor, profile) in [(false, &MAJOR), (true, &MINOR)] {
            let r = correlation(&rotated, profile);
            if r > best.2 {
                best = (tonic as u8, minor, r);
            }
        }
    }
    (best.0, best.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clicks(bpm: f64, seconds: f64, rate: u32) -> Vec<f32> {
        let mut s = vec![0f32; (seconds * rate as f64) as usize];
        let period = 60.0 / bpm * rate as f64;
        let mut t = 0.0;
        while (t as usize) < s.len() {
            for k in 0..200.min(s.len() - t as usize) {
                s[t as usize + k] = (1.0 - k as f32 / 200.0) * if k % 2 == 0 { 1.0 } else { -1.0 };
            }
            t += period;
        }
        s
    }

    #[test]
    fn tempo_of_a_click_track() {
        for bpm in [72.0, 96.0, 121.0, 143.0] {
            let got = tempo(&clicks(bpm, 6.0, 16000), 16000, 65.0, 130.0 * 1.2).unwrap();
            assert!((got - bpm).abs() / bpm < 0.03, "{bpm}: {got}");
        }
    }

    /// Broadband hits every beat over noise that wobbles from frame to frame (as
    /// Griffin-Lim audio does), at the stipple-mini music model's 31.25 frames a second:
    /// beats of 25.7 to 12.5 frames, read to within 4%. A plain pulse train is as periodic
    /// at twice its period, so its tempo is read within an octave range.
    #[test]
    fn tempo_of_a_noisy_mel_spectrogram() {
        let (n_mels, fps) = (32, 31.25);
        let mut rng = stipple_core::noise::PortableRng::new(3);
        let mut pulses = |bpm: f64| -> Vec<f32> {
            let frames = (4.0 * fps) as usize;
            let period = 60.0 / bpm * fps;
            let mut mel = vec![0f32; n_mels * frames];
            for t in 0..frames {
                // a hit decaying over a few frames from each (fractional) beat time
                let hit = (-(t as f64 % period) / 1.5).exp() as f32;
                for m in 0..n_mels {
                    mel[m * frames + t] = 0.2 * (0.5 + rng.next_uniform() as f32) + hit;
                }
            }
            mel
        };
        for (bpm, lo, hi) in [(73.0, 62.0, 120.0), (93.0, 62.0, 165.0), (118.0, 62.0, 165.0), (150.0, 100.0, 190.0)] {
            let got = tempo_of_mel(&pulses(bpm), n_mels, fps, lo, hi).unwrap();
            assert!((got - bpm).abs() / bpm < 0.04, "{bpm}: {got}");
        }
        assert_eq!(tempo_of_mel(&[0.5; 64], 32, fps, 62.0, 165.0), None, "two frames hold no tempo");
    }

    /// On rendered General MIDI phrases of known tempo and key (the training set's own
    /// renderer, with the soundfont .ci/run installs).
    #[test]
    #[cfg(feature = "train")]
    fn rendered_phrases_read_back_their_tempo_and_key() {
        use crate::train::music_set::{GmRenderer, Pattern, Phrase};
        use stipple_core::noise::PortableRng;
        let r = GmRenderer::new(std::path::Path::new("/usr/share/sounds/sf2/FluidR3_GM.sf2"), 16000).unwrap();
        let mut report = Vec::new();
        let (mut tempo_ok, mut key_ok, mut n) = (0, 0, 0);
        for (i, &bpm) in crate::train::music_set::TEMPOS.iter().enumerate() {
            for (j, pattern) in [Pattern::Chords, Pattern::Arpeggio].into_iter().enumerate() {
                let p = Phrase { instrument: [0, 1, 4, 9, 14][i], tempo: bpm, key: (3 * i + j) as u8 % 12, minor: j == 1, pattern, drums: true };
                let audio = r.render(&p, 4.0, &mut PortableRng::new(i as u64)).unwrap();
                let got = tempo(&audio, 16000, 62.0, 165.0).unwrap();
                let k = key(&audio, 16000);
                tempo_ok += usize::from((got - bpm as f64).abs() / bpm as f64 <= 0.06);
                key_ok += usize::from(k == (p.key, p.minor));
                n += 1;
                report.push(format!("{} -> {got:.0} bpm, key {:?}", p.caption(), k));
            }
        }
        // measured: tempo 8/10 (the misses read 2/3 and 1/2 of the tempo: the arpeggios'
        // accents), key 5/10 (4 s hold only 2-3 chords of the progression; relative and
        // neighbouring keys share most notes)
        assert!(tempo_ok >= 8 && key_ok >= 5, "tempo {tempo_ok}/{n}, key {key_ok}/{n}: {report:#?}");
    }

    #[test]
    fn key_and_brightness_of_tones() {
        let rate = 16000;
        let tone = |freqs: &[f64]| -> Vec<f32> { (0..rate * 2).map(|i| freqs.iter().map(|f| (2.0 * std::f64::consts::PI * f * i as f64 / rate as f64).sin() as f32).sum::<f32>() / freqs.len() as f32).collect() };
        // an A minor triad and scale tones (A C E, then D, G, B)
        let a_minor = tone(&[220.0, 261.63, 329.63, 440.0, 293.66, 392.0, 246.94]);
        assert_eq!(key(&a_minor, rate), (9, true));
        // G major: G B D (and C, A, F sharp)
        let g_major = tone(&[196.0, 246.94, 293.66, 392.0, 261.63, 220.0, 369.99]);
        assert_eq!(key(&g_major, rate), (7, false));
        assert!(spectral_centroid(&tone(&[110.0]), rate) < spectral_centroid(&tone(&[1760.0]), rate) / 4.0);
    }
}
