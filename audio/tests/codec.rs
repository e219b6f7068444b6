//! The codec against torchaudio (the library Riffusion's converter runs on): reference
//! spectrograms, images, inverse mel and Griffin-Lim outputs made by
//! `tools/make_audio_fixtures.py` for three synthetic and two recorded (CC0 Sonic Pi) sounds.

use anyhow::{Context, Result};
use candle_core::Tensor;
use std::path::{Path, PathBuf};
use stipple_audio::griffin_lim::{griffin_lim, spectral_convergence, PhaseInit};
use stipple_audio::spectrogram_image::read_png;
use stipple_audio::{wav, Mel, SpectrogramCodec, SpectrogramParams};

const SOUNDS: [&str; 5] = ["sweep", "chord", "beat", "loop_amen", "ambi_piano"];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn npy(name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
    let t = Tensor::read_npy(fixtures().join(name)).with_context(|| name.to_string())?;
    Ok((t.flatten_all()?.to_vec1::<f32>()?, t.dims().to_vec()))
}

fn codec() -> SpectrogramCodec {
    SpectrogramCodec::new(SpectrogramParams::riffusion()).unwrap()
}

fn input(name: &str) -> Result<Vec<f32>> {
    Ok(wav::read_mono(&fixtures().join(format!("{name}.wav")), 44_100)?.samples)
}

#[test]
fn mel_spectrograms_and_images_match_torchaudio() -> Result<()> {
    let codec = codec();
    for name in SOUNDS {
        let x = input(name)?;
        let mel = codec.mel_from_audio(&x)?;
        let (want, dims) = npy(&format!("{name}.mel.npy"))?;
        assert_eq!(dims, vec![mel.n_mels, mel.frames], "{name}");
        let max = want.iter().copied().fold(0f32, f32::max);
        let err = mel.data.iter().zip(&want).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max) / max;
        assert!(err < 1e-4, "{name}: mel max error {err} of the maximum");
        // the 8-bit image: every pixel within 1/255 of Riffusion's (truncation can flip a level)
        let (img, _) = codec.image_from_audio(&x)?;
        let reference = read_png(&fixtures().join(format!("{name}.png")))?;
        assert_eq!(img.dimensions(), reference.image.dimensions());
        let diffs: Vec<i32> = img.pixels().zip(reference.image.pixels()).map(|(a, b)| (a.0[0] as i32 - b.0[0] as i32).abs()).collect();
        let worst = diffs.iter().copied().max().unwrap_or(0);
        let off = diffs.iter().filter(|&&d| d > 0).count();
        println!("{name}: mel max error {err:.2e} of max; image max {worst}/255, {off} of {} pixels differ", diffs.len());
        assert!(worst <= 1, "{name}: image differs by {worst}/255");
        // Pillow's EXIF (Riffusion's tags) is read back
        assert_eq!(reference.params, Some(SpectrogramParams::riffusion()), "{name}");
        let recorded = reference.max_value.context("MAX_VALUE tag")?;
        assert!((recorded as f32 - max).abs() <= max * 1e-4, "{name}: max {recorded} vs {max}");
    }
    Ok(())
}

#[test]
fn inverse_mel_matches_torchaudio_lstsq() -> Result<()> {
    let codec = codec();
    for name in SOUNDS {
        let (mel, dims) = npy(&format!("{name}.mel.npy"))?;
        let mel = Mel { data: mel, n_mels: dims[0], frames: dims[1] };
        let linear = codec.linear_from_mel(&mel);
        let (want, wd) = npy(&format!("{name}.linear.npy"))?; // [bins, 4]: frames 60..63
        let bins = wd[0];
        let (mut num, mut den) = (0f64, 0f64);
        for f in 0..4 {
            for b in 0..bins {
                let (a, w) = (linear[(60 + f) * bins + b] as f64, want[b * 4 + f] as f64);
                num += (a - w) * (a - w);
                den += w * w;
            }
        }
        let rel = (num / den).sqrt();
        println!("{name}: inverse mel relative error {rel:.2e}");
        assert!(rel < 1e-3, "{name}: {rel}");
    }
    Ok(())
}

#[test]
fn griffin_lim_matches_torchaudio_with_fixed_phases() -> Result<()> {
    let codec = codec();
    let p = SpectrogramParams::riffusion();
    for name in SOUNDS {
        let (mel, dims) = npy(&format!("{name}.mel.npy"))?;
        let mel = Mel { data: mel, n_mels: dims[0], frames: dims[1] };
        let linear = codec.linear_from_mel(&mel);
        let got = griffin_lim(codec.stft(), &linear, mel.frames, p.griffin_lim_iters, p.griffin_lim_momentum, PhaseInit::Ones)?;
        let (want, _) = npy(&format!("{name}.gl_ones.npy"))?;
        assert_eq!(got.len(), want.len(), "{name}");
        let num: f64 = got.iter().zip(&want).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
        let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
        let rel = (num / den).sqrt();
        // Griffin-Lim normalises every phase by its magnitude, so near-silent bins amplify
        // rounding into different (equally good) waveforms: torchaudio's own f32 and f64
        // runs differ by 1% on the sweep, and a 1e-6 relative nudge of its input changes
        // its output by 60%. So the waveforms are only reported; what must agree is how
        // well each reproduces the target magnitudes (a wrong window, hop, momentum or
        // normalisation moves that by far more than 0.01).
        let sc_ours = spectral_convergence(codec.stft(), &got, &linear)?;
        let sc_torch = spectral_convergence(codec.stft(), &want, &linear)?;
        println!("{name}: Griffin-Lim (fixed phases) spectral convergence stipple {sc_ours:.4}, torchaudio {sc_torch:.4}; waveform difference {rel:.2e}");
        assert!((sc_ours - sc_torch).abs() < 0.01, "{name}: {sc_ours} vs {sc_torch}");
    }
    Ok(())
}

#[test]
fn round_trip_is_as_good_as_torchaudio() -> Result<()> {
    let codec = codec();
    let reference: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixtures().join("reference.json"))?)?;
    for name in SOUNDS {
        let x = input(name)?;
        // audio -> 8-bit image -> mel at the recorded maximum -> linear -> Griffin-Lim with
        // random phases, as torchaudio was run (before the final peak normalisation)
        let (img, max) = codec.image_from_audio(&x)?;
        let mel = codec.mel_from_image(&img, max as f64)?;
        let p = codec.params();
        let y = griffin_lim(codec.stft(), &codec.linear_from_mel(&mel), mel.frames, p.griffin_lim_iters, p.griffin_lim_momentum, PhaseInit::Random(0))?;
        let (target, frames) = codec.magnitudes(&x)?;
        let n = frames.min(codec.stft().frames_for(y.len()));
        let sc_ours = spectral_convergence(codec.stft(), &y, &target[..n * codec.stft().bins()])?;
        let sc_ref = reference["sounds"][name]["spectral_convergence"].as_f64().context("reference SC")?;
        println!("{name}: spectral convergence stipple {sc_ours:.4}, torchaudio {sc_ref:.4}");
        assert!(sc_ours <= sc_ref * 1.1 + 0.01, "{name}: {sc_ours} vs torchaudio {sc_ref}");
    }
    Ok(())
}

#[test]
fn sample_rate_conversion_keeps_the_spectrogram() -> Result<()> {
    // a 22.05 kHz copy of a fixture, resampled on read, draws nearly the same picture
    let x = input("chord")?;
    let dir = std::env::temp_dir().join(format!("stipple-codec-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let half: Vec<f32> = wav::resample(&x, 44_100, 22_050)?;
    let path = dir.join("chord22.wav");
    wav::write_mono(&path, &half, 22_050, wav::WavFormat::Float32, true)?;
    let back = wav::read_mono(&path, 44_100)?.samples;
    let codec = codec();
    let (a, _) = codec.image_from_audio(&x)?;
    let (b, _) = codec.image_from_audio(&back)?;
    assert_eq!(a.dimensions(), b.dimensions());
    // below the 11 kHz the half-rate file keeps, the pictures agree closely
    let mean: f64 = a.pixels().zip(b.pixels()).map(|(p, q)| (p.0[0] as f64 - q.0[0] as f64).abs()).sum::<f64>() / (a.width() * a.height()) as f64;
    println!("mean pixel difference after 44.1 -> 22.05 -> 44.1 kHz: {mean:.2}");
    assert!(mean < 3.0, "{mean}");
    std::fs::remove_dir_all(&dir)?;
    Ok(())
}
