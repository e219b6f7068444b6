//! Seeing music: a spectrogram with its time (seconds) and frequency (Hz, on the model's
//! mel scale) axes, and a waveform with a playhead.

use stipple_audio::params::SpectrogramParams;

/// Tick spacing giving at most `max` ticks over `span`, from a 1-2-5 series.
pub fn tick_step(span: f64, max: usize) -> f64 {
    let steps = [0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0];
    steps.into_iter().find(|s| span / s <= max as f64).unwrap_or(600.0)
}

/// "250 Hz", "4 kHz".
pub fn hz_label(hz: f64) -> String {
    if hz >= 1000.0 { format!("{} kHz", (hz / 100.0).round() / 10.0) } else { format!("{hz:.0} Hz") }
}

const LEFT: f32 = 52.0;
const BOTTOM: f32 = 16.0;

/// The spectrogram `tex` (`columns` x `params.num_frequencies`) stretched over `width`
/// points, `height` high, with labelled axes; `seconds` is the clip length it shows.
pub fn spectrogram(ui: &mut egui::Ui, tex: &egui::TextureHandle, params: &SpectrogramParams, seconds: f64, width: f32, height: f32) -> egui::Response {
    let (outer, response) = ui.allocate_exact_size(egui::vec2(width, height + BOTTOM), egui::Sense::hover());
    let plot = egui::Rect::from_min_max(egui::pos2(outer.min.x + LEFT, outer.min.y), egui::pos2(outer.max.x, outer.max.y - BOTTOM));
    let painter = ui.painter_at(outer);
    let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
    painter.image(tex.id(), plot, uv, egui::Color32::WHITE);
    let text = ui.visuals().text_color();
    let font = egui::FontId::proportional(10.0);
    let stroke = egui::Stroke::new(1.0, ui.visuals().weak_text_color());
    // time ticks along the bottom
    if seconds > 0.0 {
        let step = tick_step(seconds, ((plot.width() / 60.0) as usize).max(2));
        let ticks = (seconds / step + 1e-9).floor() as usize;
        for i in 0..=ticks {
            let t = i as f64 * step;
            let x = plot.min.x + (t / seconds) as f32 * plot.width();
            painter.line_segment([egui::pos2(x, plot.max.y), egui::pos2(x, plot.max.y + 3.0)], stroke);
            painter.text(egui::pos2(x, plot.max.y + 3.0), egui::Align2::CENTER_TOP, format!("{} s", (t * 100.0).round() / 100.0), font.clone(), text);
        }
    }
    // frequency ticks at round values, placed on the row whose band they fall in
    let rows = params.num_frequencies.max(1);
    let mut last_y = f32::NEG_INFINITY;
    for hz in [8000.0, 4000.0, 2000.0, 1000.0, 500.0, 250.0, 100.0, 16000.0] {
        if hz <= params.min_frequency || hz >= params.max_frequency {
            continue;
        }
        let row = (0..rows).min_by(|&a, &b| (params.row_frequency(a) - hz).abs().total_cmp(&(params.row_frequency(b) - hz).abs())).unwrap_or(0);
        let y = plot.min.y + (row as f32 + 0.5) / rows as f32 * plot.height();
        if (y - last_y).abs() < 12.0 {
            continue;
        }
        last_y = y;
        painter.line_segment([egui::pos2(plot.min.x - 3.0, y), egui::pos2(plot.min.x, y)], stroke);
        painter.text(egui::pos2(plot.min.x - 4.0, y), egui::Align2::RIGHT_CENTER, hz_label(hz), font.clone(), text);
    }
    response.on_hover_text("time runs left to right; low frequencies at the bottom")
}

/// The waveform of `samples` over `width` points (the min and max of each column), with
/// a playhead at `playhead` seconds.
pub fn waveform(ui: &mut egui::Ui, samples: &[f32], rate: u32, playhead: Option<f64>, width: f32, height: f32) -> egui::Response {
    let (outer, response) = ui.allocate_exact_size(egui::vec2(width, height), egui::Sense::hover());
    let plot = egui::Rect::from_min_max(egui::pos2(outer.min.x + LEFT, outer.min.y), outer.max);
    let painter = ui.painter_at(outer);
    painter.rect_filled(plot, 2.0, ui.visuals().extreme_bg_color);
    let color = ui.visuals().selection.bg_fill;
    let columns = plot.width().max(1.0) as usize;
    let mid = plot.center().y;
    let half = plot.height() / 2.0;
    for c in 0..columns {
        let a = c * samples.len() / columns;
        let b = ((c + 1) * samples.len() / columns).max(a + 1).min(samples.len());
        let Some(chunk) = samples.get(a..b) else { continue };
        let (lo, hi) = chunk.iter().fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
        let x = plot.min.x + c as f32 + 0.5;
        painter.line_segment([egui::pos2(x, mid - hi.clamp(-1.0, 1.0) * half), egui::pos2(x, mid - lo.clamp(-1.0, 1.0) * half)], egui::Stroke::new(1.0, color));
    }
    let seconds = samples.len() as f64 / rate.max(1) as f64;
    if let (Some(at), true) = (playhead, seconds > 0.0) {
        let x = plot.min.x + (at / seconds) as f32 * plot.width();
        painter.line_segment([egui::pos2(x, plot.min.y), egui::pos2(x, plot.max.y)], egui::Stroke::new(2.0, ui.visuals().error_fg_color));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_labels_read_well() {
        assert_eq!(tick_step(2.048, 8), 0.5);
        assert_eq!(tick_step(30.0, 6), 5.0);
        assert_eq!(hz_label(250.0), "250 Hz");
        assert_eq!(hz_label(4000.0), "4 kHz");
        assert_eq!(hz_label(1500.0), "1.5 kHz");
    }
}
