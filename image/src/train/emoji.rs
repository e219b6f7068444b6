//! The emoji training set: every picture of an SVG sprite sheet (Noto Emoji as packaged
//! by npm `@svgmoji/noto`: one nested `<svg id="CODEPOINTS">` per emoji) rasterised with
//! `resvg` onto white, captioned with its Unicode name from an `emoji.json` list (npm
//! `emoji-datasource`), written as an image folder (see [`super::dataset`]).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::dataset::Record;
use crate::error::{Error, Result};

/// One entry of `emoji.json`.
#[derive(Deserialize)]
struct EmojiName {
    name: Option<String>,
    unified: String,
    #[serde(default)]
    non_qualified: Option<String>,
    #[serde(default)]
    category: Option<String>,
}

/// Options of [`prepare`].
#[derive(Clone, Debug)]
pub struct EmojiOptions {
    /// Output side in pixels.
    pub size: u32,
    /// Categories of `emoji.json` to leave out (e.g. `Flags`).
    pub skip_categories: Vec<String>,
}

/// The nested `<svg ...>...</svg>` elements of a sprite sheet, by their `id`.
pub fn sprites(sheet: &str) -> BTreeMap<String, &str> {
    let mut out = BTreeMap::new();
    let mut rest = sheet;
    let mut offset = 0;
    // skip the outer element's own tag
    if let Some(i) = sheet.find("<svg") {
        offset = i + 4;
        rest = &sheet[offset..];
    }
    while let Some(i) = rest.find("<svg") {
        let start = offset + i;
        let mut depth = 0usize;
        let mut pos = start;
        let end = loop {
            let open = sheet[pos..].find("<svg").map(|j| pos + j);
            let close = sheet[pos..].find("</svg>").map(|j| pos + j);
            match (open, close) {
                (Some(o), Some(c)) if o < c => {
                    depth += 1;
                    pos = o + 4;
                }
                (_, Some(c)) => {
                    depth -= 1;
                    pos = c + 6;
                    if depth == 0 {
                        break Some(pos);
                    }
                }
                _ => break None,
            }
        };
        let Some(end) = end else { break };
        let element = &sheet[start..end];
        let tag_end = element.find('>').unwrap_or(element.len());
        if let Some(id) = element[..tag_end].split(" id=\"").nth(1).and_then(|s| s.split('"').next()) {
            out.insert(id.to_string(), element);
        }
        offset = end;
        rest = &sheet[end..];
    }
    out
}

/// Rasterises one standalone SVG element onto white, `size` x `size` RGB.
pub fn rasterize(svg: &str, size: u32) -> Result<image::RgbImage> {
    let bad = |e: &dyn std::fmt::Display| Error::InvalidArgument(format!("svg: {e}"));
    // the sheet declares xlink on its root only
    let svg = if svg.contains("xlink:") && !svg.contains("xmlns:xlink") {
        svg.replacen("<svg ", "<svg xmlns:xlink=\"http://www.w3.org/1999/xlink\" ", 1)
    } else {
        svg.to_string()
    };
    let tree = resvg::usvg::Tree::from_str(&svg, &resvg::usvg::Options::default()).map_err(|e| bad(&e))?;
    let mut pixmap = resvg::tiny_skia::Pixmap::new(size, size).ok_or_else(|| bad(&"empty size"))?;
    let view = tree.size();
    let scale = size as f32 / view.width().max(view.height());
    resvg::render(&tree, resvg::tiny_skia::Transform::from_scale(scale, scale), &mut pixmap.as_mut());
    let mut img = image::RgbImage::new(size, size);
    for (px, out) in pixmap.pixels().iter().zip(img.pixels_mut()) {
        // premultiplied colour over a white background
        let a = px.alpha() as u16;
        out.0 = [px.red(), px.green(), px.blue()].map(|c| (c as u16 + (255 - a)).min(255) as u8);
    }
    Ok(img)
}

/// Writes `out/images/CODEPOINTS.png` for every emoji of the sheet that has a name (and
/// whose category is not skipped), and returns the records for `metadata.jsonl`.
pub fn prepare(sheet_path: &Path, names_path: &Path, out: &Path, opts: &EmojiOptions) -> Result<Vec<Record>> {
    let read = |p: &Path| std::fs::read_to_string(p).map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display())));
    let sheet = read(sheet_path)?;
    let names: Vec<EmojiName> = serde_json::from_str(&read(names_path)?).map_err(|e| Error::InvalidArgument(format!("{}: {e}", names_path.display())))?;
    let pictures = sprites(&sheet);
    if pictures.is_empty() {
        return Err(Error::InvalidArgument(format!("{}: no <svg id=...> sprites found", sheet_path.display())));
    }
    std::fs::create_dir_all(out.join("images")).map_err(|e| Error::InvalidArgument(format!("{}: {e}", out.display())))?;
    let mut records = Vec::new();
    for n in &names {
        let (Some(name), category) = (&n.name, n.category.clone().unwrap_or_default()) else { continue };
        if opts.skip_categories.iter().any(|c| c.eq_ignore_ascii_case(&category)) {
            continue;
        }
        let Some((id, svg)) = [Some(&n.unified), n.non_qualified.as_ref()].into_iter().flatten().find_map(|id| pictures.get_key_value(id.as_str())) else { continue };
        let img = rasterize(svg, opts.size)?;
        let file = format!("images/{id}.png");
        let path = out.join(&file);
        stipple_core::output::write_file(&path, true, |tmp| img.save_with_format(tmp, image::ImageFormat::Png).map_err(|e| Error::InvalidArgument(format!("{}: {e}", path.display()))))?;
        records.push(Record { file_name: file, text: name.to_lowercase(), category: Some(category) });
    }
    Ok(records)
}

/// The emoji training set in `out`: pictures of `opts.size` (8 to 512 pixels) with their
/// names as captions in `metadata.jsonl`.
pub fn prepare_set(sheet_path: &Path, names_path: &Path, out: &Path, opts: &EmojiOptions) -> Result<Vec<Record>> {
    if !(8..=512).contains(&opts.size) {
        return Err(Error::InvalidArgument("--size must be between 8 and 512 pixels".into()));
    }
    let records = prepare(sheet_path, names_path, out, opts)?;
    if records.is_empty() {
        return Err(Error::InvalidArgument(format!("no emoji of {} had a name in {}", sheet_path.display(), names_path.display())));
    }
    super::dataset::write_metadata(out, &records)?;
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHEET: &str = r##"<svg xmlns="http://www.w3.org/2000/svg"><svg viewBox="0 0 128 128" id="1F534" xmlns="http://www.w3.org/2000/svg"><circle cx="64" cy="64" r="60" fill="#F44336"/></svg><svg viewBox="0 0 128 128" id="1F7E6" xmlns="http://www.w3.org/2000/svg"><g><svg viewBox="0 0 10 10"><rect width="10" height="10"/></svg></g><rect x="4" y="4" width="120" height="120" fill="#1E88E5"/></svg></svg>"##;

    #[test]
    fn sprites_are_split_by_id_including_nested_ones() {
        let s = sprites(SHEET);
        assert_eq!(s.keys().collect::<Vec<_>>(), vec!["1F534", "1F7E6"]);
        assert!(s["1F7E6"].ends_with("</rect></svg>") || s["1F7E6"].ends_with("fill=\"#1E88E5\"/></svg>"));
    }

    #[test]
    fn rasterised_colours_and_white_background() {
        let s = sprites(SHEET);
        let red = rasterize(s["1F534"], 32).unwrap();
        assert_eq!(red.get_pixel(0, 0).0, [255, 255, 255]);
        let c = red.get_pixel(16, 16).0;
        assert!(c[0] > 200 && c[1] < 100 && c[2] < 100, "{c:?}");
        let blue = rasterize(s["1F7E6"], 32).unwrap();
        let c = blue.get_pixel(16, 16).0;
        assert!(c[2] > 200 && c[0] < 100, "{c:?}");
    }
}
