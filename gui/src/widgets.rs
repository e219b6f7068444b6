//! Controls every tab shares, each labelled so screen readers (and the UI tests, which
//! find widgets through the accessibility tree) can name them.

use std::ops::RangeInclusive;

/// The model line at the top of a tab.
pub fn model_line(ui: &mut egui::Ui, text: &str) {
    ui.weak(text);
}

/// A labelled multi-line text box.
pub fn multiline(ui: &mut egui::Ui, label: &str, text: &mut String, rows: usize) {
    let l = ui.label(label);
    ui.add(egui::TextEdit::multiline(text).desired_rows(rows).desired_width(f32::INFINITY)).labelled_by(l.id);
}

/// A labelled one-line text box.
pub fn singleline(ui: &mut egui::Ui, label: &str, text: &mut String) -> egui::Response {
    ui.horizontal(|ui| {
        let l = ui.label(label);
        ui.add(egui::TextEdit::singleline(text).desired_width(360.0)).labelled_by(l.id)
    })
    .inner
}

/// A grid row: label, then an integer slider.
pub fn slider_usize(ui: &mut egui::Ui, label: &str, v: &mut usize, range: RangeInclusive<usize>) {
    let l = ui.label(label);
    ui.add(egui::Slider::new(v, range)).labelled_by(l.id);
    ui.end_row();
}

/// A grid row: label, then a float slider.
pub fn slider_f64(ui: &mut egui::Ui, label: &str, v: &mut f64, range: RangeInclusive<f64>) {
    let l = ui.label(label);
    ui.add(egui::Slider::new(v, range).max_decimals(2)).labelled_by(l.id);
    ui.end_row();
}

/// A grid row: the seed, a dice button for a new one, and "new seed each run".
pub fn seed(ui: &mut egui::Ui, seed: &mut u64, fresh_each_run: &mut bool) {
    let l = ui.label("Seed");
    ui.horizontal(|ui| {
        ui.add(egui::DragValue::new(seed)).labelled_by(l.id);
        if ui.button("New seed").clicked() {
            *seed = stipple_core::noise::random_seed();
        }
        ui.checkbox(fresh_each_run, "New seed each run");
    });
    ui.end_row();
}

/// What the user asked of the run bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAction {
    /// Nothing.
    None,
    /// Start a run.
    Start,
    /// Cancel the running one.
    Cancel,
}

/// Generate / Cancel and the step progress.
pub fn run_bar(ui: &mut egui::Ui, running: bool, ready: bool, progress: Option<(usize, usize)>) -> RunAction {
    let mut action = RunAction::None;
    ui.horizontal(|ui| {
        if ui.add_enabled(ready && !running, egui::Button::new("Generate")).clicked() {
            action = RunAction::Start;
        }
        if ui.add_enabled(running, egui::Button::new("Cancel")).clicked() {
            action = RunAction::Cancel;
        }
        if let Some((step, total)) = progress {
            let f = if total > 0 { step as f32 / total as f32 } else { 0.0 };
            ui.add(egui::ProgressBar::new(f).text(format!("step {step} / {total}")).animate(true));
        }
    });
    action
}

/// Where a tab saves its result, and what the last save did.
#[derive(Clone, Debug)]
pub struct SaveTarget {
    /// The file to write.
    pub path: String,
    /// "saved ..." or why not.
    pub message: Option<String>,
}

impl SaveTarget {
    /// Saving to `path` by default.
    pub fn new(path: &str) -> Self {
        Self { path: path.into(), message: None }
    }

    /// "Save as" path and button; true when clicked.
    pub fn ui(&mut self, ui: &mut egui::Ui) -> bool {
        let clicked = ui
            .horizontal(|ui| {
                let l = ui.label("Save as");
                ui.add(egui::TextEdit::singleline(&mut self.path).desired_width(280.0)).labelled_by(l.id);
                ui.button("Save").clicked()
            })
            .inner;
        if let Some(m) = &self.message {
            ui.weak(m);
        }
        clicked
    }

    /// Writes through `write` (which must refuse to replace an existing file) and records
    /// the outcome.
    pub fn save(&mut self, write: impl FnOnce(&std::path::Path) -> anyhow::Result<()>) {
        let path = std::path::PathBuf::from(self.path.trim());
        self.message = Some(match write(&path) {
            Ok(()) => format!("saved {}", path.display()),
            Err(e) => format!("{e:#}"),
        });
    }
}

/// An error line.
pub fn error(ui: &mut egui::Ui, text: &str) {
    ui.colored_label(ui.visuals().error_fg_color, text);
}

/// A picture as a texture (nearest-neighbour, so tiny models' pixels stay crisp).
pub fn texture(ctx: &egui::Context, name: &str, img: &image::RgbImage) -> egui::TextureHandle {
    let color = egui::ColorImage::from_rgb([img.width() as usize, img.height() as usize], img.as_raw());
    ctx.load_texture(name, color, egui::TextureOptions::NEAREST)
}

/// Shows a texture scaled to fit `side` points (whole multiples for small pictures).
pub fn picture(ui: &mut egui::Ui, tex: &egui::TextureHandle, side: f32) {
    let [w, h] = tex.size();
    let scale = (side / w.max(h) as f32).max(1.0);
    let scale = if scale > 1.0 { scale.floor() } else { scale };
    ui.add(egui::Image::from_texture(tex).fit_to_exact_size(egui::vec2(w as f32 * scale, h as f32 * scale)));
}
