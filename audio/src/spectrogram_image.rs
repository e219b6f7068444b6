//! Mel spectrograms as images, the way Riffusion draws them, and their PNG files.
//!
//! Amplitudes are divided by their maximum, raised to `power_for_image` (0.25) to keep
//! quiet partials visible, scaled to 0-255, inverted (loud is dark), truncated to 8 bits
//! and flipped so low frequencies are at the bottom; mono uses the same value in R, G and
//! B. The spectrogram parameters and the maximum go into the PNG's `eXIf` chunk under
//! Riffusion's tag numbers, so images from either tool carry their parameters.

use crate::error::{file_err, AudioError, Result};
use crate::params::{exif_tags, SpectrogramParams};
use image::RgbImage;
use std::path::Path;

/// The maximum Riffusion assumes when an image has no recorded maximum (it only sets the
/// loudness, which rendering normalises away).
pub const DEFAULT_MAX_VALUE: f64 = 30e6;

/// The image of mel amplitudes `mel` `[n_mels][frames]`, and the maximum it was scaled by.
pub fn image_from_mel(mel: &[f32], n_mels: usize, frames: usize, power: f64) -> (RgbImage, f32) {
    let max = mel.iter().copied().fold(0f32, f32::max);
    let mut img = RgbImage::new(frames as u32, n_mels as u32);
    for m in 0..n_mels {
        let y = (n_mels - 1 - m) as u32;
        for t in 0..frames {
            let a = if max > 0.0 { (mel[m * frames + t] / max) as f64 } else { 0.0 };
            // numpy's astype(uint8) truncates
            let v = (255.0 - a.powf(power) * 255.0).clamp(0.0, 255.0) as u8;
            img.put_pixel(t as u32, y, image::Rgb([v, v, v]));
        }
    }
    (img, max)
}

/// Mel amplitudes `[n_mels][frames]` from an image's red channel (Riffusion's mono reading).
pub fn mel_from_image(img: &RgbImage, power: f64, max_value: f64) -> Vec<f32> {
    let (frames, n_mels) = (img.width() as usize, img.height() as usize);
    let mut mel = vec![0f32; n_mels * frames];
    for m in 0..n_mels {
        let y = (n_mels - 1 - m) as u32;
        for t in 0..frames {
            let v = img.get_pixel(t as u32, y).0[0] as f64;
            mel[m * frames + t] = (((255.0 - v) / 255.0).powf(1.0 / power) * max_value) as f32;
        }
    }
    mel
}

/// Writes a spectrogram image with its parameters and maximum in `eXIf` (temporary file,
/// then moved into place; an existing file is kept unless `overwrite`).
pub fn write_png(path: &Path, img: &RgbImage, params: &SpectrogramParams, max_value: f64, overwrite: bool) -> Result<()> {
    let exif = exif_bytes(params, max_value)?;
    stipple_core::output::write_file(path, overwrite, |tmp| {
        let err = |e: png::EncodingError| file_err(tmp, e);
        let file = std::fs::File::create(tmp).map_err(|e| file_err(tmp, e))?;
        let mut enc = png::Encoder::new(std::io::BufWriter::new(file), img.width(), img.height());
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        let mut writer = enc.write_header().map_err(err)?;
        writer.write_chunk(png::chunk::ChunkType(*b"eXIf"), &exif).map_err(err)?;
        writer.write_image_data(img.as_raw()).map_err(err)?;
        writer.finish().map_err(err)
    })
}

/// A spectrogram image read back: pixels, and the parameters and maximum if recorded.
pub struct SpectrogramPng {
    /// The pixels as RGB.
    pub image: RgbImage,
    /// Parameters from the EXIF tags, when all of Riffusion's are there.
    pub params: Option<SpectrogramParams>,
    /// The recorded maximum amplitude.
    pub max_value: Option<f64>,
}

/// Reads a spectrogram PNG (any bit depth or colour type) and its EXIF parameters.
pub fn read_png(path: &Path) -> Result<SpectrogramPng> {
    let bytes = std::fs::read(path).map_err(|e| file_err(path, e))?;
    let image = image::load_from_memory(&bytes).map_err(|e| file_err(path, format!("not a readable image: {e}")))?.to_rgb8();
    let (params, max_value) = match exif::Reader::new().read_from_container(&mut std::io::Cursor::new(&bytes)) {
        Ok(exif) => params_from_exif(&exif),
        Err(exif::Error::NotFound(_)) => (None, None),
        Err(e) => return Err(file_err(path, format!("unreadable EXIF block: {e}"))),
    };
    Ok(SpectrogramPng { image, params, max_value })
}

/// The TIFF-structured EXIF block, as Pillow writes it for Riffusion (integers as SHORT,
/// floats as DOUBLE, in the primary IFD).
fn exif_bytes(p: &SpectrogramParams, max_value: f64) -> Result<Vec<u8>> {
    use exif::{Field, In, Tag, Value};
    let short = |tag: u16, v: u32| -> Result<Field> {
        let v = u16::try_from(v).map_err(|_| AudioError::Params(format!("EXIF tag {tag}: {v} does not fit 16 bits")))?;
        Ok(Field { tag: Tag(exif::Context::Tiff, tag), ifd_num: In::PRIMARY, value: Value::Short(vec![v]) })
    };
    let long = |tag: u16, v: u32| Field { tag: Tag(exif::Context::Tiff, tag), ifd_num: In::PRIMARY, value: Value::Long(vec![v]) };
    let double = |tag: u16, v: f64| Field { tag: Tag(exif::Context::Tiff, tag), ifd_num: In::PRIMARY, value: Value::Double(vec![v]) };
    let rate = if p.sample_rate < 65536 { short(exif_tags::SAMPLE_RATE, p.sample_rate)? } else { long(exif_tags::SAMPLE_RATE, p.sample_rate) };
    let fields = vec![
        rate,
        short(exif_tags::STEREO, p.stereo as u32)?,
        short(exif_tags::STEP_SIZE_MS, p.step_size_ms)?,
        short(exif_tags::WINDOW_DURATION_MS, p.window_duration_ms)?,
        short(exif_tags::PADDED_DURATION_MS, p.padded_duration_ms)?,
        short(exif_tags::NUM_FREQUENCIES, p.num_frequencies as u32)?,
        double(exif_tags::MIN_FREQUENCY, p.min_frequency),
        double(exif_tags::MAX_FREQUENCY, p.max_frequency),
        double(exif_tags::POWER_FOR_IMAGE, p.power_for_image),
        double(exif_tags::MAX_VALUE, max_value),
    ];
    let mut writer = exif::experimental::Writer::new();
    for f in &fields {
        writer.push_field(f);
    }
    let mut buf = std::io::Cursor::new(Vec::new());
    writer.write(&mut buf, true).map_err(|e| AudioError::Invalid(format!("writing EXIF: {e}")))?;
    Ok(buf.into_inner())
}

/// Parameters (defaults for what Riffusion does not record) and maximum from an EXIF block.
fn params_from_exif(exif: &exif::Exif) -> (Option<SpectrogramParams>, Option<f64>) {
    let get = |tag: u16| -> Option<f64> {
        let f = exif.get_field(exif::Tag(exif::Context::Tiff, tag), exif::In::PRIMARY)?;
        match &f.value {
            exif::Value::Short(v) => v.first().map(|&x| x as f64),
            exif::Value::Long(v) => v.first().map(|&x| x as f64),
            exif::Value::SShort(v) => v.first().map(|&x| x as f64),
            exif::Value::SLong(v) => v.first().map(|&x| x as f64),
            exif::Value::Double(v) => v.first().copied(),
            exif::Value::Float(v) => v.first().map(|&x| x as f64),
            exif::Value::Rational(v) => v.first().map(|r| r.to_f64()),
            exif::Value::SRational(v) => v.first().map(|r| r.to_f64()),
            _ => None,
        }
    };
    let max_value = get(exif_tags::MAX_VALUE);
    let params = (|| {
        let d = SpectrogramParams::riffusion();
        Some(SpectrogramParams {
            sample_rate: get(exif_tags::SAMPLE_RATE)? as u32,
            stereo: get(exif_tags::STEREO)? != 0.0,
            step_size_ms: get(exif_tags::STEP_SIZE_MS)? as u32,
            window_duration_ms: get(exif_tags::WINDOW_DURATION_MS)? as u32,
            padded_duration_ms: get(exif_tags::PADDED_DURATION_MS)? as u32,
            num_frequencies: get(exif_tags::NUM_FREQUENCIES)? as usize,
            min_frequency: get(exif_tags::MIN_FREQUENCY)?,
            max_frequency: get(exif_tags::MAX_FREQUENCY)?,
            power_for_image: get(exif_tags::POWER_FOR_IMAGE)?,
            ..d
        })
    })();
    (params, max_value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_round_trip_and_exif() {
        let (n_mels, frames) = (6, 5);
        let mel: Vec<f32> = (0..n_mels * frames).map(|i| (i as f32 * 0.37).sin().abs() * 1000.0).collect();
        let (img, max) = image_from_mel(&mel, n_mels, frames, 0.25);
        assert_eq!((img.width(), img.height()), (5, 6));
        // the loudest bin is black; low frequencies at the bottom
        let back = mel_from_image(&img, 0.25, max as f64);
        for (a, b) in mel.iter().zip(&back) {
            // 8-bit truncation of a^0.25 loses at most 1/255 there
            assert!(((a / max).powf(0.25) - (b / max).powf(0.25)).abs() <= 1.0 / 255.0 + 1e-6);
        }
        let dir = std::env::temp_dir().join(format!("stipple-specimg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("s.png");
        let _ = std::fs::remove_file(&path);
        let params = SpectrogramParams { step_size_ms: 20, ..SpectrogramParams::riffusion() };
        write_png(&path, &img, &params, max as f64, false).unwrap();
        let read = read_png(&path).unwrap();
        assert_eq!(read.image, img);
        assert_eq!(read.params.as_ref(), Some(&params));
        assert_eq!(read.max_value, Some(max as f64));
        assert!(write_png(&path, &img, &params, 1.0, false).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
