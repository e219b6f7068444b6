//! A training run's loss record: `loss.csv` and a `loss.png` plot (raw losses in light
//! blue, their running average in dark blue, the step and loss ranges written on the
//! axes with a small built-in digit font, so no font file is needed).

use std::path::Path;

use anyhow::Result;
use image::{Rgb, RgbImage};

/// One logged step.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct LossPoint {
    /// 1-based step.
    pub step: usize,
    /// Loss at that step.
    pub loss: f64,
}

/// 3x5 glyphs of `0-9 . - e`, one row per 3 bits.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        'e' => [0, 7, 7, 4, 7],
        _ => return None,
    })
}

/// Draws `text` with its top-left corner at (x, y), each font pixel `scale` wide.
fn draw_text(img: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32) {
    for (k, c) in text.chars().enumerate() {
        let Some(rows) = glyph(c) else { continue };
        for (r, bits) in rows.iter().enumerate() {
            for col in 0..3 {
                if bits & (4 >> col) != 0 {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (px, py) = (x + (k as u32 * 4 + col) * scale + dx, y + r as u32 * scale + dy);
                            if px < img.width() && py < img.height() {
                                img.put_pixel(px, py, Rgb([40, 40, 40]));
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A line from (x0, y0) to (x1, y1), one dot per pixel of the longer side.
fn draw_line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), colour: Rgb<u8>) {
    let n = (x1 - x0).abs().max((y1 - y0).abs()).ceil().max(1.0) as usize;
    for i in 0..=n {
        let t = i as f64 / n as f64;
        let (x, y) = (x0 + t * (x1 - x0), y0 + t * (y1 - y0));
        if x >= 0.0 && y >= 0.0 && (x as u32) < img.width() && (y as u32) < img.height() {
            img.put_pixel(x as u32, y as u32, colour);
        }
    }
}

/// Renders the curve (640x360).
pub fn plot(points: &[LossPoint]) -> RgbImage {
    let (w, h, left, bottom, top, right) = (640u32, 360u32, 60.0, 30.0, 12.0, 12.0);
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let finite: Vec<&LossPoint> = points.iter().filter(|p| p.loss.is_finite()).collect();
    let (lo, hi) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.loss), b.max(p.loss)));
    let (lo, hi) = if lo < hi { (lo, hi) } else { (lo - 1.0, lo + 1.0) };
    let last = finite.last().map_or(1, |p| p.step).max(2);
    let first = finite.first().map_or(1, |p| p.step);
    let sx = |s: usize| left + (s - first) as f64 / (last - first).max(1) as f64 * (w as f64 - left - right);
    let sy = |l: f64| top + (hi - l) / (hi - lo) * (h as f64 - top - bottom);
    for i in 0..=4 {
        let y = top + i as f64 / 4.0 * (h as f64 - top - bottom);
        draw_line(&mut img, (left, y), (w as f64 - right, y), Rgb([225, 225, 225]));
        draw_text(&mut img, 4, y as u32 - 4, &format!("{:.3}", hi - i as f64 / 4.0 * (hi - lo)), 2);
    }
    draw_line(&mut img, (left, top), (left, h as f64 - bottom), Rgb([40, 40, 40]));
    draw_line(&mut img, (left, h as f64 - bottom), (w as f64 - right, h as f64 - bottom), Rgb([40, 40, 40]));
    draw_text(&mut img, left as u32, h - bottom as u32 + 8, &first.to_string(), 2);
    let label = last.to_string();
    draw_text(&mut img, w - right as u32 - label.len() as u32 * 8, h - bottom as u32 + 8, &label, 2);
    let mut avg = None;
    let mut prev: Option<((f64, f64), (f64, f64))> = None;
    for p in &finite {
        let a = avg.map_or(p.loss, |a: f64| 0.95 * a + 0.05 * p.loss);
        avg = Some(a);
        let (raw, smooth) = ((sx(p.step), sy(p.loss)), (sx(p.step), sy(a)));
        if let Some((r0, s0)) = prev {
            draw_line(&mut img, r0, raw, Rgb([160, 190, 235]));
            draw_line(&mut img, s0, smooth, Rgb([20, 60, 160]));
        }
        prev = Some((raw, smooth));
    }
    img
}

/// Writes `loss.csv` and `loss.png` into `dir` (each replaced atomically).
pub fn write(dir: &Path, points: &[LossPoint]) -> Result<()> {
    let mut csv = String::from("step,loss\n");
    for p in points {
        csv.push_str(&format!("{},{}\n", p.step, p.loss));
    }
    stipple_core::output::write_file(&dir.join("loss.csv"), true, |tmp| Ok::<_, anyhow::Error>(std::fs::write(tmp, &csv)?))?;
    let img = plot(points);
    stipple_core::output::write_file(&dir.join("loss.png"), true, |tmp| Ok::<_, anyhow::Error>(img.save_with_format(tmp, image::ImageFormat::Png)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falling_loss_is_drawn_from_top_left_to_bottom_right() {
        let points: Vec<LossPoint> = (1..=100).map(|s| LossPoint { step: s, loss: 10.0 / s as f64 }).collect();
        let img = plot(&points);
        let dark = |x: u32, y0: u32, y1: u32| (y0..y1).any(|y| img.get_pixel(x, y).0 == [20, 60, 160]);
        // the running average starts high on the left and ends low on the right
        assert!(dark(61, 10, 60), "start not near the top");
        assert!(dark(626, 180, 332), "end not in the lower half");
        assert!(!dark(626, 10, 100));
        // labels are drawn
        assert!((0..60).any(|x| (0..30).any(|y| img.get_pixel(x, y).0 == [40, 40, 40])));
    }
}
