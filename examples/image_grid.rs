//! A contact sheet: every prompt of a file generated at each combination of steps and
//! guidance, one row per prompt (same seed along the row, so only the settings change),
//! written as one PNG with a JSON legend beside it.
//!
//! cargo run --release --example image_grid -- PROMPTS.txt SHEET.png [STEPS,...] [GUIDANCE,...]
//! (defaults: the embedded stipple-mini image model, steps 10,20,40, guidance 1,4,7.5)

use std::path::Path;

use anyhow::{Context, Result, bail};
use image::{Rgb, RgbImage};
use stipple::core::noise::PortableRng;
use stipple::core::progress::{CancelToken, NoProgress};
use stipple::image::{ImageRequest, StableDiffusion};

/// White space between cells, in pixels.
pub const GAP: u32 = 4;

/// One cell of the sheet.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Cell {
    /// Row (prompt) and column (setting), from 0.
    pub row: usize,
    /// Column.
    pub col: usize,
    /// The prompt.
    pub prompt: String,
    /// Denoising steps.
    pub steps: usize,
    /// Guidance scale.
    pub guidance: f64,
    /// Seed of the row.
    pub seed: u64,
}

/// The sheet: rows of prompts, columns of (steps, guidance) pairs, steps varying slowest.
pub fn contact_sheet(pipe: &StableDiffusion, prompts: &[String], steps: &[usize], guidance: &[f64], seed: u64) -> Result<(RgbImage, Vec<Cell>)> {
    if prompts.is_empty() || steps.is_empty() || guidance.is_empty() {
        bail!("need at least one prompt, one step count and one guidance scale");
    }
    let settings: Vec<(usize, f64)> = steps.iter().flat_map(|&s| guidance.iter().map(move |&g| (s, g))).collect();
    let (mut sheet, mut cells) = (None::<RgbImage>, Vec::new());
    for (row, prompt) in prompts.iter().enumerate() {
        for (col, &(steps, guidance)) in settings.iter().enumerate() {
            let cell = Cell { row, col, prompt: prompt.clone(), steps, guidance, seed: seed + row as u64 };
            let img = generate(pipe, &cell)?;
            let (w, h) = img.dimensions();
            let sheet = sheet.get_or_insert_with(|| {
                let (cols, rows) = (settings.len() as u32, prompts.len() as u32);
                RgbImage::from_pixel(cols * w + (cols + 1) * GAP, rows * h + (rows + 1) * GAP, Rgb([255, 255, 255]))
            });
            image::imageops::replace(sheet, &img, (GAP + col as u32 * (w + GAP)) as i64, (GAP + row as u32 * (h + GAP)) as i64);
            eprintln!("{prompt:?}: {steps} steps, guidance {guidance}");
            cells.push(cell);
        }
    }
    Ok((sheet.expect("one cell at least"), cells))
}

/// One cell's picture.
pub fn generate(pipe: &StableDiffusion, cell: &Cell) -> Result<RgbImage> {
    let req = ImageRequest { prompt: cell.prompt.clone(), steps: Some(cell.steps), guidance: Some(cell.guidance), ..ImageRequest::default() };
    let out = pipe.generate(&req, &mut PortableRng::new(cell.seed), &mut NoProgress, &CancelToken::new())?;
    Ok(out.images.into_iter().next().context("no image")?)
}

/// Writes the sheet and its legend (`SHEET.json`: each cell's prompt, steps, guidance and
/// seed), neither replacing an existing file.
pub fn write(sheet: &RgbImage, cells: &[Cell], path: &Path) -> Result<()> {
    let legend = path.with_extension("json");
    stipple::image::metadata::write_png(path, sheet, None, false)?;
    let text = serde_json::to_string_pretty(cells)?;
    stipple::core::output::write_bytes(&legend, text.as_bytes(), false)?;
    Ok(())
}

fn list<T: std::str::FromStr>(arg: Option<String>, default: &str) -> Result<Vec<T>> {
    arg.as_deref().unwrap_or(default).split(',').map(|s| s.trim().parse().map_err(|_| anyhow::anyhow!("{s:?} is not a number"))).collect()
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: image_grid PROMPTS.txt SHEET.png [STEPS,...] [GUIDANCE,...]";
    let prompts_file = args.next().context(usage)?;
    let out = args.next().context(usage)?;
    let steps: Vec<usize> = list(args.next(), "10,20,40")?;
    let guidance: Vec<f64> = list(args.next(), "1,4,7.5")?;
    let prompts: Vec<String> = std::fs::read_to_string(&prompts_file)
        .with_context(|| format!("reading {prompts_file}"))?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect();
    let pipe = StableDiffusion::load(&stipple::defaults::model("image")?, &candle_core::Device::Cpu, candle_core::DType::F32)?;
    let (sheet, cells) = contact_sheet(&pipe, &prompts, &steps, &guidance, 0)?;
    write(&sheet, &cells, Path::new(&out))?;
    println!("wrote {out} ({}x{}, {} cells) and its legend", sheet.width(), sheet.height(), cells.len());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sheet_holds_each_setting_in_its_cell() {
        let pipe = StableDiffusion::load(&stipple::defaults::model("image").unwrap(), &candle_core::Device::Cpu, candle_core::DType::F32).unwrap();
        let prompts = ["a red heart".to_string(), "a smiling fox face".to_string()];
        let (sheet, cells) = contact_sheet(&pipe, &prompts, &[4, 8], &[1.0, 7.5], 3).unwrap();
        assert_eq!(cells.len(), 8);
        let one = generate(&pipe, &cells[0]).unwrap();
        let (w, h) = one.dimensions();
        assert_eq!(sheet.dimensions(), (4 * w + 5 * GAP, 2 * h + 3 * GAP));
        // row 1, column 3 (8 steps, guidance 7.5, the fox's seed) is that picture, pixel for pixel
        let cell = cells.iter().find(|c| c.row == 1 && c.col == 3).unwrap();
        assert_eq!((cell.steps, cell.guidance, cell.seed), (8, 7.5, 4));
        let want = generate(&pipe, cell).unwrap();
        let got = image::imageops::crop_imm(&sheet, GAP + 3 * (w + GAP), GAP + (h + GAP), w, h).to_image();
        assert!(got == want, "cell (1, 3) is not its picture");
        assert_ne!(got, image::imageops::crop_imm(&sheet, GAP, GAP + (h + GAP), w, h).to_image(), "settings change the picture");
        // written with its legend, never over an existing file
        let dir = std::env::temp_dir().join(format!("stipple-grid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("sheet.png");
        let _ = std::fs::remove_file(&path);
        let _ = std::fs::remove_file(path.with_extension("json"));
        write(&sheet, &cells, &path).unwrap();
        assert_eq!(image::open(&path).unwrap().to_rgb8(), sheet);
        let legend: Vec<serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(path.with_extension("json")).unwrap()).unwrap();
        assert_eq!(legend.len(), 8);
        assert!(write(&sheet, &cells, &path).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
