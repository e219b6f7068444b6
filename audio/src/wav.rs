//! WAV files: any PCM or float WAV in, mono at the wanted rate out (channels averaged,
//! other rates resampled with `rubato`'s windowed-sinc resampler); 16-bit PCM or 32-bit
//! float out, written to a temporary file and moved into place.

use crate::error::{file_err, AudioError, Result};
use std::path::Path;

/// Sample formats for writing.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum WavFormat {
    /// 16-bit integer PCM (what players everywhere read).
    #[default]
    Pcm16,
    /// 32-bit float.
    Float32,
}

/// A mono signal and its rate.
#[derive(Clone, Debug)]
pub struct Mono {
    /// Samples in [-1, 1].
    pub samples: Vec<f32>,
    /// Samples per second.
    pub sample_rate: u32,
}

/// Reads `path` as mono at `rate` samples per second (0: the file's own rate).
pub fn read_mono(path: &Path, rate: u32) -> Result<Mono> {
    let mut reader = hound::WavReader::open(path).map_err(|e| file_err(path, format!("not a readable WAV file: {e}")))?;
    let spec = reader.spec();
    let rate = if rate == 0 { spec.sample_rate } else { rate };
    let channels = spec.channels.max(1) as usize;
    // the header says how long the file is: refused before reading when it cannot fit
    let declared = reader.len() as usize;
    let ratio = rate as f64 / spec.sample_rate.max(1) as f64;
    let mono = declared / channels;
    let need = stipple_core::memory::Estimate::new(format!("reading {}", path.display()))
        .kept_floats("samples", &[declared + mono + (mono as f64 * ratio) as usize]);
    stipple_core::memory::check(&need)?;
    let interleaved: Vec<f32> = match spec.sample_format {
        hound::SampleFormat::Float => reader.samples::<f32>().collect::<std::result::Result<_, _>>(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample.clamp(1, 32) - 1)) as f32;
            reader.samples::<i32>().map(|s| s.map(|v| v as f32 * scale)).collect()
        }
    }
    .map_err(|e| file_err(path, format!("damaged WAV data: {e}")))?;
    if interleaved.is_empty() {
        return Err(file_err(path, "the WAV file has no samples"));
    }
    let mono: Vec<f32> = interleaved.chunks(channels).map(|c| c.iter().sum::<f32>() / c.len() as f32).collect();
    let samples = if spec.sample_rate == rate { mono } else { resample(&mono, spec.sample_rate, rate)? };
    Ok(Mono { samples, sample_rate: rate })
}

/// `samples` at `from` Hz resampled to `to` Hz (same duration, same timing: rubato's
/// sinc resampler starts its window half a filter early, so its output needs no shift;
/// `resample_keeps_time` checks it).
pub fn resample(samples: &[f32], from: u32, to: u32) -> Result<Vec<f32>> {
    use rubato::{Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType, WindowFunction};
    if from == 0 || to == 0 {
        return Err(AudioError::Invalid("sample rates must be positive".into()));
    }
    let params = SincInterpolationParameters {
        sinc_len: 256,
        f_cutoff: 0.95,
        interpolation: SincInterpolationType::Linear,
        oversampling_factor: 256,
        window: WindowFunction::BlackmanHarris2,
    };
    let chunk = 4096;
    let ratio = to as f64 / from as f64;
    let mut rs = SincFixedIn::<f32>::new(ratio, 1.0, params, chunk, 1).map_err(|e| AudioError::Invalid(format!("resampler: {e}")))?;
    let want = (samples.len() as f64 * ratio).round() as usize;
    let mut out = Vec::with_capacity(want + chunk);
    let mut pos = 0;
    while out.len() < want {
        let mut block = vec![0f32; chunk];
        // past the end (the filter's tail) the blocks are silence
        let rest = samples.get(pos..).unwrap_or(&[]);
        let n = chunk.min(rest.len());
        block[..n].copy_from_slice(&rest[..n]);
        pos += chunk;
        let res = rs.process(&[block], None).map_err(|e| AudioError::Invalid(format!("resampler: {e}")))?;
        out.extend_from_slice(&res[0]);
    }
    out.truncate(want);
    Ok(out)
}

/// Writes mono `samples` (clipped to [-1, 1]) to `path`.
pub fn write_mono(path: &Path, samples: &[f32], rate: u32, format: WavFormat, overwrite: bool) -> Result<()> {
    stipple_core::output::write_file(path, overwrite, |tmp| {
        let file = std::fs::File::create(tmp).map_err(|e| file_err(tmp, e))?;
        encode_to(std::io::BufWriter::new(file), samples, rate, format).map_err(|e| file_err(tmp, e))
    })
}

/// Mono `samples` (clipped to [-1, 1]) as the bytes of a WAV file (what an HTTP response
/// carries instead of a file).
pub fn wav_bytes(samples: &[f32], rate: u32, format: WavFormat) -> Result<Vec<u8>> {
    let mut out = std::io::Cursor::new(Vec::new());
    encode_to(&mut out, samples, rate, format).map_err(|e| AudioError::Invalid(format!("WAV encoding: {e}")))?;
    Ok(out.into_inner())
}

fn encode_to<W: std::io::Write + std::io::Seek>(w: W, samples: &[f32], rate: u32, format: WavFormat) -> std::result::Result<(), hound::Error> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: if format == WavFormat::Pcm16 { 16 } else { 32 },
        sample_format: if format == WavFormat::Pcm16 { hound::SampleFormat::Int } else { hound::SampleFormat::Float },
    };
    let mut w = hound::WavWriter::new(w, spec)?;
    for &s in samples {
        let s = s.clamp(-1.0, 1.0);
        match format {
            WavFormat::Pcm16 => w.write_sample((s * 32767.0).round() as i16)?,
            WavFormat::Float32 => w.write_sample(s)?,
        }
    }
    w.finalize()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_resample() {
        let dir = std::env::temp_dir().join(format!("stipple-wav-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let tone: Vec<f32> = (0..22050).map(|i| 0.5 * (2.0 * std::f32::consts::PI * 440.0 * i as f32 / 22050.0).sin()).collect();
        for format in [WavFormat::Pcm16, WavFormat::Float32] {
            let path = dir.join(format!("{format:?}.wav"));
            let _ = std::fs::remove_file(&path);
            write_mono(&path, &tone, 22050, format, false).unwrap();
            let same = read_mono(&path, 22050).unwrap();
            let err = tone.iter().zip(&same.samples).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(err < 1e-4, "{format:?}: {err}");
            // doubled rate: same duration, and the tone is still 440 Hz (sign changes per second)
            let up = read_mono(&path, 44100).unwrap();
            assert_eq!(up.samples.len(), 44100);
            let crossings = up.samples[1000..43100].windows(2).filter(|w| w[0] <= 0.0 && w[1] > 0.0).count();
            assert!((crossings as i64 - 419).abs() <= 2, "{crossings}");
            assert!(write_mono(&path, &tone, 22050, format, false).is_err());
        }
        assert!(read_mono(&dir.join("missing.wav"), 44100).is_err());
        std::fs::write(dir.join("bad.wav"), b"RIFF????WAVEjunk").unwrap();
        assert!(read_mono(&dir.join("bad.wav"), 44100).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A clip shorter than the resampler's delay (a drum one-shot) is flushed with
    /// silence, not read past its end.
    #[test]
    fn resample_a_clip_shorter_than_the_filter_delay() {
        let click: Vec<f32> = (0..300).map(|i| if i < 10 { 1.0 } else { 0.0 }).collect();
        let down = resample(&click, 44100, 16000).unwrap();
        assert_eq!(down.len(), (300.0f64 * 16000.0 / 44100.0).round() as usize);
        assert!(down.iter().take(8).any(|v| v.abs() > 0.1), "{down:?}");
    }

    #[test]
    fn resample_keeps_time() {
        let mut x = vec![0f32; 20000];
        x[5000] = 1.0;
        for (from, to) in [(44100u32, 16000u32), (16000, 44100), (48000, 16000)] {
            let y = resample(&x, from, to).unwrap();
            let peak = y.iter().enumerate().fold((0, 0f32), |b, (i, v)| if v.abs() > b.1 { (i, v.abs()) } else { b }).0;
            let want = 5000.0 * to as f64 / from as f64;
            // within one input sample
            assert!((peak as f64 - want).abs() <= (to as f64 / from as f64).max(1.5), "{from}->{to}: peak at {peak}, want {want}");
        }
    }
}
