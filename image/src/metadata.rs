//! PNG output with generation parameters: an A1111-compatible `parameters` text chunk
//! (what A1111, ComfyUI importers and civitai read) plus a `stipple` chunk with the full
//! JSON. Files are written to a temporary file in the same folder and then moved into
//! place, so a failed or interrupted write never leaves a half-written image, and an
//! existing file is never replaced unless asked.

use std::collections::BTreeMap;
use std::io::BufWriter;
use std::path::Path;

use image::RgbImage;

use crate::error::{Error, Result};

/// The keyword of the JSON chunk.
pub const JSON_KEYWORD: &str = "stipple";

/// What a generation used, for the PNG chunks and for `--json`.
#[derive(Clone, Debug)]
pub struct GenerationInfo {
    /// Prompt.
    pub prompt: String,
    /// Negative prompt.
    pub negative_prompt: Option<String>,
    /// Steps asked for.
    pub steps: usize,
    /// stipple sampler name (`euler-a`, `dpm++2m-karras`, ...).
    pub sampler: String,
    /// Guidance scale.
    pub guidance: f64,
    /// Guidance rescale.
    pub guidance_rescale: f64,
    /// Seed of this image's noise (`None`: noise not from a seed, e.g. replayed).
    pub seed: Option<u64>,
    /// Size.
    pub width: usize,
    /// Size.
    pub height: usize,
    /// Model name.
    pub model: String,
    /// img2img / inpainting strength, when an init image was used.
    pub strength: Option<f64>,
}

/// A1111's display name of a stipple sampler (`Euler a`, `DPM++ 2M Karras`, ...).
pub fn a1111_sampler_name(sampler: &str) -> String {
    let (base, karras) = match sampler.strip_suffix("-karras") {
        Some(b) => (b, true),
        None => (sampler, false),
    };
    let name = match base {
        "euler" => "Euler",
        "euler-a" => "Euler a",
        "heun" => "Heun",
        "ddim" => "DDIM",
        "pndm" => "PLMS",
        "ddpm" => "DDPM",
        "dpm++2m" => "DPM++ 2M",
        "dpm++2m-sde" => "DPM++ 2M SDE",
        "unipc" => "UniPC",
        "lcm" => "LCM",
        other => other,
    };
    if karras { format!("{name} Karras") } else { name.to_string() }
}

impl GenerationInfo {
    /// The A1111 `parameters` text: prompt, negative prompt, then `Key: value` pairs.
    pub fn a1111_parameters(&self) -> String {
        let mut s = self.prompt.clone();
        if let Some(n) = self.negative_prompt.as_deref().filter(|n| !n.is_empty()) {
            s.push_str(&format!("\nNegative prompt: {n}"));
        }
        let seed = self.seed.map(|s| format!("Seed: {s}, ")).unwrap_or_default();
        s.push_str(&format!(
            "\nSteps: {}, Sampler: {}, CFG scale: {}, {seed}Size: {}x{}, Model: {}",
            self.steps,
            a1111_sampler_name(&self.sampler),
            self.guidance,
            self.width,
            self.height,
            self.model
        ));
        if let Some(st) = self.strength {
            s.push_str(&format!(", Denoising strength: {st}"));
        }
        if self.guidance_rescale > 0.0 {
            s.push_str(&format!(", CFG Rescale phi: {}", self.guidance_rescale));
        }
        s.push_str(&format!(", Version: stipple {}", env!("CARGO_PKG_VERSION")));
        s
    }

    /// The same as JSON.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "prompt": self.prompt,
            "negative_prompt": self.negative_prompt,
            "steps": self.steps,
            "scheduler": self.sampler,
            "guidance": self.guidance,
            "guidance_rescale": self.guidance_rescale,
            "seed": self.seed,
            "width": self.width,
            "height": self.height,
            "model": self.model,
            "strength": self.strength,
            "generator": format!("stipple {}", env!("CARGO_PKG_VERSION")),
        })
    }
}

fn is_latin1(s: &str) -> bool {
    s.chars().all(|c| (c as u32) < 256)
}

/// Writes `img` to `path` as PNG, with the parameters unless `info` is `None`. Refuses
/// to replace an existing file unless `overwrite`; see [`stipple_core::output`].
pub fn write_png(path: &Path, img: &RgbImage, info: Option<&GenerationInfo>, overwrite: bool) -> Result<()> {
    stipple_core::output::write_file(path, overwrite, |tmp| encode(tmp, img, info))
}

fn encode(tmp: &Path, img: &RgbImage, info: Option<&GenerationInfo>) -> Result<()> {
    let io = |e: std::io::Error| Error::Image(format!("{}: {e}", tmp.display()));
    let png_err = |e: png::EncodingError| Error::Image(format!("{}: {e}", tmp.display()));
    let file = std::fs::File::create(tmp).map_err(io)?;
    let mut enc = png::Encoder::new(BufWriter::new(file), img.width(), img.height());
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    if let Some(info) = info {
        let params = info.a1111_parameters();
        if is_latin1(&params) {
            enc.add_text_chunk("parameters".into(), params).map_err(png_err)?;
        } else {
            enc.add_itxt_chunk("parameters".into(), params).map_err(png_err)?;
        }
        enc.add_itxt_chunk(JSON_KEYWORD.into(), info.to_json().to_string()).map_err(png_err)?;
    }
    let mut writer = enc.write_header().map_err(png_err)?;
    writer.write_image_data(img.as_raw()).map_err(png_err)?;
    writer.finish().map_err(png_err)?;
    Ok(())
}

/// The text chunks of a PNG file (tEXt, zTXt and iTXt), by keyword.
pub fn read_text_chunks(path: &Path) -> Result<BTreeMap<String, String>> {
    let file = std::fs::File::open(path).map_err(|e| Error::Image(format!("{}: {e}", path.display())))?;
    let reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .map_err(|e| Error::Image(format!("{}: {e}", path.display())))?;
    let info = reader.info();
    let mut out = BTreeMap::new();
    for c in &info.uncompressed_latin1_text {
        out.insert(c.keyword.clone(), c.text.clone());
    }
    for c in &info.compressed_latin1_text {
        if let Ok(t) = c.get_text() {
            out.insert(c.keyword.clone(), t);
        }
    }
    for c in &info.utf8_text {
        if let Ok(t) = c.get_text() {
            out.insert(c.keyword.clone(), t);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(prompt: &str) -> GenerationInfo {
        GenerationInfo {
            prompt: prompt.into(),
            negative_prompt: Some("blurry".into()),
            steps: 20,
            sampler: "dpm++2m-karras".into(),
            guidance: 7.0,
            guidance_rescale: 0.0,
            seed: Some(42),
            width: 64,
            height: 32,
            model: "sd1-tiny".into(),
            strength: None,
        }
    }

    #[test]
    fn a1111_text_has_the_usual_fields() {
        let p = info("a cat").a1111_parameters();
        assert!(p.starts_with("a cat\nNegative prompt: blurry\nSteps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 42, Size: 64x32, Model: sd1-tiny"), "{p}");
    }

    #[test]
    fn metadata_round_trips_and_files_are_not_replaced() {
        let dir = std::env::temp_dir().join(format!("stipple-meta-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("out.png");
        let _ = std::fs::remove_file(&path);
        let img = RgbImage::from_pixel(4, 2, image::Rgb([10, 20, 30]));
        write_png(&path, &img, Some(&info("café ☕")), false).unwrap();
        let chunks = read_text_chunks(&path).unwrap();
        assert!(chunks["parameters"].starts_with("café ☕\n"));
        let json: serde_json::Value = serde_json::from_str(&chunks[JSON_KEYWORD]).unwrap();
        assert_eq!(json["seed"], 42);
        // no overwrite without asking; the first file is intact
        let other = RgbImage::from_pixel(4, 2, image::Rgb([0, 0, 0]));
        assert!(write_png(&path, &other, None, false).is_err());
        assert_eq!(image::open(&path).unwrap().to_rgb8(), img);
        write_png(&path, &other, None, true).unwrap();
        assert_eq!(image::open(&path).unwrap().to_rgb8(), other);
        assert!(read_text_chunks(&path).unwrap().is_empty());
        let leftovers = std::fs::read_dir(&dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".tmp")).count();
        assert_eq!(leftovers, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
