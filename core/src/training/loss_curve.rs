//! A training run's loss record: `loss.csv` and a `loss.png` plot (plotters; raw losses
//! in light blue, their running average in dark blue, labelled axes in the Ubuntu Light
//! font that egui ships, so no system font is needed).

use std::path::Path;
use std::sync::Once;

use plotters::prelude::*;

use crate::{Error, Result};

/// One logged step.
#[derive(Clone, Copy, Debug, serde::Serialize, serde::Deserialize)]
pub struct LossPoint {
    /// 1-based step.
    pub step: usize,
    /// Loss at that step.
    pub loss: f64,
}

/// Size of the plot in pixels.
pub const SIZE: (u32, u32) = (640, 360);
/// Colour of the raw losses.
pub const RAW: RGBColor = RGBColor(160, 190, 235);
/// Colour of the running average.
pub const AVERAGE: RGBColor = RGBColor(20, 60, 160);

/// plotters draws text only in fonts registered with it: one, embedded, once.
fn register_font() {
    static FONT: Once = Once::new();
    FONT.call_once(|| {
        // the font is a valid TrueType file compiled in; a failure would only lose labels
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, epaint_default_fonts::UBUNTU_LIGHT);
    });
}

/// The running average shown in dark blue (an exponential average, weight 0.05 per step).
fn running_average(points: &[&LossPoint]) -> Vec<(usize, f64)> {
    let mut avg = None;
    points
        .iter()
        .map(|p| {
            let a = avg.map_or(p.loss, |a: f64| 0.95 * a + 0.05 * p.loss);
            avg = Some(a);
            (p.step, a)
        })
        .collect()
}

/// Renders the curve as RGB pixels, `SIZE.0 * SIZE.1 * 3` bytes.
pub fn plot(points: &[LossPoint]) -> Result<Vec<u8>> {
    register_font();
    let (w, h) = SIZE;
    let mut pixels = vec![255u8; (w * h * 3) as usize];
    let finite: Vec<&LossPoint> = points.iter().filter(|p| p.loss.is_finite()).collect();
    let (lo, hi) = finite.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| (a.min(p.loss), b.max(p.loss)));
    let (lo, hi) = if lo < hi { (lo, hi) } else if lo.is_finite() { (lo - 1.0, lo + 1.0) } else { (0.0, 1.0) };
    let first = finite.first().map_or(1, |p| p.step);
    let last = finite.last().map_or(1, |p| p.step).max(first + 1);
    let err = |e: &dyn std::fmt::Display| Error::Training(format!("drawing the loss curve: {e}"));
    {
        let root = BitMapBackend::with_buffer(&mut pixels, SIZE).into_drawing_area();
        root.fill(&WHITE).map_err(|e| err(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .margin(12)
            .x_label_area_size(36)
            .y_label_area_size(64)
            .build_cartesian_2d(first..last, lo..hi)
            .map_err(|e| err(&e))?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .x_labels(6)
            .y_labels(5)
            .y_label_formatter(&|v| format!("{v:.3}"))
            .light_line_style(RGBColor(240, 240, 240))
            .bold_line_style(RGBColor(225, 225, 225))
            .draw()
            .map_err(|e| err(&e))?;
        chart.draw_series(LineSeries::new(finite.iter().map(|p| (p.step, p.loss)), &RAW)).map_err(|e| err(&e))?;
        chart.draw_series(LineSeries::new(running_average(&finite), AVERAGE.stroke_width(2))).map_err(|e| err(&e))?;
        root.present().map_err(|e| err(&e))?;
    }
    Ok(pixels)
}

/// Writes `loss.csv` and `loss.png` into `dir` (each replaced atomically).
pub fn write(dir: &Path, points: &[LossPoint]) -> Result<()> {
    let mut csv = String::from("step,loss\n");
    for p in points {
        csv.push_str(&format!("{},{}\n", p.step, p.loss));
    }
    let io = |path: &Path, e: &dyn std::fmt::Display| Error::Training(format!("{}: {e}", path.display()));
    crate::output::write_file(&dir.join("loss.csv"), true, |tmp| std::fs::write(tmp, &csv).map_err(|e| io(tmp, &e)))?;
    let img = image::RgbImage::from_raw(SIZE.0, SIZE.1, plot(points)?).ok_or_else(|| Error::Training("loss curve buffer of the wrong size".into()))?;
    crate::output::write_file(&dir.join("loss.png"), true, |tmp| img.save_with_format(tmp, image::ImageFormat::Png).map_err(|e| io(tmp, &e)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falling_loss_is_drawn_from_top_left_to_bottom_right() {
        let points: Vec<LossPoint> = (1..=100).map(|s| LossPoint { step: s, loss: 10.0 / s as f64 }).collect();
        let px = plot(&points).unwrap();
        let (w, h) = (SIZE.0 as usize, SIZE.1 as usize);
        let is = |x: usize, y: usize, c: RGBColor| px[(y * w + x) * 3..(y * w + x) * 3 + 3] == [c.0, c.1, c.2];
        // rows holding the running average, in the left and right tenth of the picture
        let rows = |xs: std::ops::Range<usize>| -> Vec<usize> { (0..h).filter(|&y| xs.clone().any(|x| is(x, y, AVERAGE))).collect() };
        let (left, right) = (rows(w / 10..w / 5), rows(w * 8 / 10..w * 9 / 10));
        assert!(!left.is_empty() && !right.is_empty(), "average not drawn");
        // it starts in the upper half and ends in the lower half
        assert!(left.iter().min().unwrap() < &(h / 2), "start not near the top: {left:?}");
        assert!(right.iter().max().unwrap() > &(h / 2), "end not in the lower half: {right:?}");
        assert!(right.iter().all(|&y| y > h / 3));
        // the raw losses are drawn too, and the labels (dark text) left of the plot
        assert!((0..h).any(|y| (0..w).any(|x| is(x, y, RAW))));
        assert!((0..h).any(|y| (0..50).any(|x| px[(y * w + x) * 3] < 100)), "no axis labels");
    }

    #[test]
    fn empty_and_flat_curves_still_draw() {
        assert!(plot(&[]).is_ok());
        assert!(plot(&[LossPoint { step: 1, loss: 2.0 }, LossPoint { step: 2, loss: 2.0 }]).is_ok());
        assert!(plot(&[LossPoint { step: 3, loss: f64::NAN }]).is_ok());
    }
}
