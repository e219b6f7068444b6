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

/// The stipple sampler name of an A1111 display name (`Euler a` → `euler-a`, `DPM++ 2M
/// Karras` → `dpm++2m-karras`); names stipple does not have come back unchanged.
pub fn stipple_sampler_name(a1111: &str) -> String {
    let (base, karras) = match a1111.trim().strip_suffix(" Karras") {
        Some(b) => (b, true),
        None => (a1111.trim(), false),
    };
    let name = match base {
        "Euler" => "euler",
        "Euler a" => "euler-a",
        "Heun" => "heun",
        "DDIM" => "ddim",
        "PLMS" => "pndm",
        "DDPM" => "ddpm",
        "DPM++ 2M" => "dpm++2m",
        "DPM++ 2M SDE" => "dpm++2m-sde",
        "UniPC" => "unipc",
        "LCM" => "lcm",
        _ => return a1111.trim().to_string(),
    };
    if karras { format!("{name}-karras") } else { name.to_string() }
}

/// The `Key: value, Key: "quoted, value"` pairs of A1111's last parameters line.
fn a1111_pairs(line: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = line.trim();
    while let Some((key, after)) = rest.split_once(':') {
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            // a quoted value runs to the next unescaped quote
            let mut end = None;
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    '\\' if !escaped => escaped = true,
                    '"' if !escaped => {
                        end = Some(i);
                        break;
                    }
                    _ => escaped = false,
                }
            }
            let end = end.unwrap_or(quoted.len());
            let rest = quoted[end..].trim_start_matches('"');
            (quoted[..end].replace("\\\"", "\""), rest.split_once(',').map_or("", |(_, r)| r))
        } else {
            match after.split_once(',') {
                Some((v, r)) => (v.trim().to_string(), r),
                None => (after.trim().to_string(), ""),
            }
        };
        out.push((key.trim().to_string(), value));
        rest = next.trim_start();
    }
    out
}

impl GenerationInfo {
    /// Reads the parameters of a PNG made by stipple (its `stipple` JSON chunk) or by
    /// AUTOMATIC1111 and the tools that copy it (the `parameters` text chunk): what A1111
    /// calls PNG Info. Fails with a clear message when the file has neither.
    pub fn from_png(path: &Path) -> Result<Self> {
        let chunks = read_text_chunks(path)?;
        if let Some(json) = chunks.get(JSON_KEYWORD) {
            let v: serde_json::Value = serde_json::from_str(json).map_err(|e| Error::Image(format!("{}: the stipple metadata is not valid JSON: {e}", path.display())))?;
            return Self::from_json(&v).map_err(|e| Error::Image(format!("{}: {e}", path.display())));
        }
        match chunks.get("parameters") {
            Some(text) => Self::from_a1111_parameters(text).map_err(|e| Error::Image(format!("{}: {e}", path.display()))),
            None => Err(Error::Image(format!("{}: no generation parameters in this PNG (neither stipple's nor AUTOMATIC1111's)", path.display()))),
        }
    }

    /// The inverse of [`GenerationInfo::to_json`].
    pub fn from_json(v: &serde_json::Value) -> std::result::Result<Self, String> {
        let int = |k: &str| v[k].as_u64().map(|x| x as usize).ok_or_else(|| format!("the metadata has no {k}"));
        let text = |k: &str| v[k].as_str().map(str::to_string);
        Ok(Self {
            prompt: text("prompt").ok_or("the metadata has no prompt")?,
            negative_prompt: text("negative_prompt"),
            steps: int("steps")?,
            sampler: text("scheduler").unwrap_or_default(),
            guidance: v["guidance"].as_f64().ok_or("the metadata has no guidance")?,
            guidance_rescale: v["guidance_rescale"].as_f64().unwrap_or(0.0),
            seed: v["seed"].as_u64(),
            width: int("width")?,
            height: int("height")?,
            model: text("model").unwrap_or_default(),
            strength: v["strength"].as_f64(),
        })
    }

    /// Parses A1111's `parameters` text: the prompt, an optional `Negative prompt:` part,
    /// then a last line of `Key: value` pairs (Steps, Sampler, CFG scale, Seed, Size, ...).
    pub fn from_a1111_parameters(text: &str) -> std::result::Result<Self, String> {
        let text = text.trim_end();
        let (head, last) = text.rsplit_once('\n').unwrap_or(("", text));
        let pairs = a1111_pairs(last);
        let get = |k: &str| pairs.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
        let steps = get("Steps").ok_or("no \"Steps:\" line in the parameters: not AUTOMATIC1111 metadata")?;
        let (prompt, negative) = match head.find("Negative prompt:") {
            Some(i) if i == 0 || head[..i].ends_with('\n') => (head[..i].trim_end_matches('\n'), Some(head[i + "Negative prompt:".len()..].trim())),
            _ => (head, None),
        };
        let number = |k: &str, v: &str| v.trim().parse::<f64>().map_err(|_| format!("{k} {v:?} is not a number"));
        let (width, height) = match get("Size") {
            Some(s) => {
                let (w, h) = s.split_once('x').ok_or_else(|| format!("Size {s:?} is not WIDTHxHEIGHT"))?;
                (number("width", w)? as usize, number("height", h)? as usize)
            }
            None => (512, 512),
        };
        let mut sampler = get("Sampler").map(stipple_sampler_name).unwrap_or_default();
        if get("Schedule type") == Some("Karras") && !sampler.ends_with("-karras") {
            sampler.push_str("-karras");
        }
        Ok(Self {
            prompt: prompt.to_string(),
            negative_prompt: negative.filter(|n| !n.is_empty()).map(str::to_string),
            steps: number("Steps", steps)? as usize,
            sampler,
            guidance: get("CFG scale").map(|v| number("CFG scale", v)).transpose()?.unwrap_or(7.0),
            guidance_rescale: get("CFG Rescale phi").map(|v| number("CFG Rescale phi", v)).transpose()?.unwrap_or(0.0),
            seed: get("Seed").and_then(|s| s.trim().parse().ok()),
            width,
            height,
            model: get("Model").unwrap_or_default().to_string(),
            strength: get("Denoising strength").map(|v| number("Denoising strength", v)).transpose()?,
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
    let file = std::fs::File::create(tmp).map_err(|e| Error::Image(format!("{}: {e}", tmp.display())))?;
    encode_to(BufWriter::new(file), img, info).map_err(|e| Error::Image(format!("{}: {e}", tmp.display())))
}

/// `img` as PNG bytes, with the same chunks [`write_png`] writes (what an HTTP response
/// carries instead of a file).
pub fn png_bytes(img: &RgbImage, info: Option<&GenerationInfo>) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    encode_to(&mut out, img, info).map_err(|e| Error::Image(format!("PNG encoding: {e}")))?;
    Ok(out)
}

fn encode_to<W: std::io::Write>(w: W, img: &RgbImage, info: Option<&GenerationInfo>) -> std::result::Result<(), png::EncodingError> {
    let mut enc = png::Encoder::new(w, img.width(), img.height());
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    if let Some(info) = info {
        let params = info.a1111_parameters();
        if is_latin1(&params) {
            enc.add_text_chunk("parameters".into(), params)?;
        } else {
            enc.add_itxt_chunk("parameters".into(), params)?;
        }
        enc.add_itxt_chunk(JSON_KEYWORD.into(), info.to_json().to_string())?;
    }
    let mut writer = enc.write_header()?;
    writer.write_image_data(img.as_raw())?;
    writer.finish()
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

    #[test]
    fn png_info_reads_stipple_and_a1111_parameters() {
        // stipple's own text round-trips through the A1111 parser too
        let mut i = info("a cat, sitting");
        i.strength = Some(0.6);
        let back = GenerationInfo::from_a1111_parameters(&i.a1111_parameters()).unwrap();
        assert_eq!((back.prompt.as_str(), back.negative_prompt.as_deref(), back.steps, back.sampler.as_str()), ("a cat, sitting", Some("blurry"), 20, "dpm++2m-karras"));
        assert_eq!((back.guidance, back.seed, back.width, back.height, back.model.as_str(), back.strength), (7.0, Some(42), 64, 32, "sd1-tiny", Some(0.6)));
        // what AUTOMATIC1111 1.10 writes: a multi-line prompt, quoted values, the schedule apart
        let a1111 = "masterpiece, a castle\non a hill\nNegative prompt: lowres, bad\nhands\nSteps: 28, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 3913845823, Size: 768x512, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly, Lora hashes: \"a: 1, b: 2\", Version: v1.10.1";
        let p = GenerationInfo::from_a1111_parameters(a1111).unwrap();
        assert_eq!(p.prompt, "masterpiece, a castle\non a hill");
        assert_eq!(p.negative_prompt.as_deref(), Some("lowres, bad\nhands"));
        assert_eq!((p.steps, p.sampler.as_str(), p.guidance, p.seed, p.width, p.height), (28, "dpm++2m-karras", 6.5, Some(3913845823), 768, 512));
        assert_eq!(p.model, "v1-5-pruned-emaonly");
        assert_eq!(GenerationInfo::from_json(&i.to_json()).unwrap().strength, Some(0.6));
        assert!(GenerationInfo::from_a1111_parameters("just a prompt").unwrap_err().contains("Steps"));
        assert!(GenerationInfo::from_a1111_parameters("p\nSteps: many").unwrap_err().contains("not a number"));
    }
}
