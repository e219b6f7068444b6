//! Captioned image folders in the Hugging Face `imagefolder` layout: the pictures plus a
//! `metadata.jsonl` with one `{"file_name": ..., "text": ...}` object per line.

use std::path::Path;

use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Name of the caption file.
pub const METADATA: &str = "metadata.jsonl";

/// One captioned picture.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Record {
    /// Path of the picture, relative to the folder.
    pub file_name: String,
    /// Its caption.
    pub text: String,
    /// A coarse label (e.g. the emoji category), when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// Writes `metadata.jsonl` (replaced atomically).
pub fn write_metadata(dir: &Path, records: &[Record]) -> Result<()> {
    let mut text = String::new();
    for r in records {
        text.push_str(&serde_json::to_string(r).map_err(|e| Error::InvalidArgument(e.to_string()))?);
        text.push('\n');
    }
    let path = dir.join(METADATA);
    stipple_core::output::write_file(&path, true, |tmp| std::fs::write(tmp, &text).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display()))))
}

/// A loaded folder: every picture as `[N, 3, size, size]` in [-1, 1], with captions.
pub struct ImageFolder {
    /// The pictures.
    pub images: Tensor,
    /// Their records, in the same order.
    pub records: Vec<Record>,
}

impl ImageFolder {
    /// Reads `dir/metadata.jsonl` and its pictures (RGB; each must be `size` x `size`).
    pub fn load(dir: &Path, size: u32, device: &Device) -> Result<Self> {
        let meta = dir.join(METADATA);
        let text = std::fs::read_to_string(&meta).map_err(|e| Error::InvalidArgument(format!("{}: {e}", meta.display())))?;
        let mut records = Vec::new();
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let r: Record = serde_json::from_str(line).map_err(|e| Error::InvalidArgument(format!("{}:{}: {e}", meta.display(), i + 1)))?;
            records.push(r);
        }
        if records.is_empty() {
            return Err(Error::InvalidArgument(format!("{}: no pictures listed", meta.display())));
        }
        let mut data = Vec::with_capacity(records.len() * 3 * (size * size) as usize);
        for r in &records {
            let path = dir.join(&r.file_name);
            let img = image::open(&path).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display())))?.to_rgb8();
            if img.dimensions() != (size, size) {
                return Err(Error::InvalidArgument(format!("{}: {}x{} pixels, expected {size}x{size}", path.display(), img.width(), img.height())));
            }
            for c in 0..3 {
                data.extend(img.pixels().map(|p| p.0[c] as f32 / 127.5 - 1.0));
            }
        }
        let images = Tensor::from_vec(data, (records.len(), 3, size as usize, size as usize), device)?;
        Ok(Self { images, records })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_round_trip_and_clear_errors() {
        let dir = std::env::temp_dir().join(format!("stipple-imagefolder-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut img = image::RgbImage::from_pixel(4, 4, image::Rgb([255, 0, 0]));
        img.put_pixel(0, 0, image::Rgb([0, 0, 255]));
        img.save(dir.join("a.png")).unwrap();
        let recs = vec![Record { file_name: "a.png".into(), text: "red square".into(), category: None }];
        write_metadata(&dir, &recs).unwrap();
        let f = ImageFolder::load(&dir, 4, &Device::Cpu).unwrap();
        assert_eq!(f.records, recs);
        let red: Vec<f32> = f.images.get(0).unwrap().get(0).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        assert_eq!((red[0], red[1]), (-1.0, 1.0));
        let e = ImageFolder::load(&dir, 8, &Device::Cpu).err().unwrap().to_string();
        assert!(e.contains("4x4 pixels, expected 8x8"), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
