//! Controls every tab shares, each labelled so screen readers (and the UI tests, which
//! find widgets through the accessibility tree) can name them.

use std::ops::RangeInclusive;

use crate::dialogs::{Dialog, Pick};

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
pub fn slider_usize(ui: &mut egui::Ui, label: &str, v: &mut usize, range: RangeInclusive<usize>) -> egui::Response {
    let l = ui.label(label);
    let r = ui.add(egui::Slider::new(v, range)).labelled_by(l.id);
    ui.end_row();
    r
}

/// A grid row: label, then a float slider.
pub fn slider_f64(ui: &mut egui::Ui, label: &str, v: &mut f64, range: RangeInclusive<f64>) -> egui::Response {
    let l = ui.label(label);
    let r = ui.add(egui::Slider::new(v, range).max_decimals(2)).labelled_by(l.id);
    ui.end_row();
    r
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

/// Where a tab saves its result: a path field, "Save as…" (a native dialog), Save, and
/// an explicit confirmation before an existing file is replaced.
#[derive(Debug)]
pub struct SaveTarget {
    /// The file to write.
    pub path: String,
    /// "saved ..." or why not.
    pub message: Option<String>,
    /// A file that exists and waits for "Replace" or "Keep it".
    pub confirm: Option<std::path::PathBuf>,
    what: &'static str,
    exts: &'static [&'static str],
    dialog: Dialog,
}

/// What the user asked of the save line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaveAction {
    /// Nothing.
    None,
    /// Write to this path; `true`: replacing it was confirmed.
    Write(std::path::PathBuf, bool),
}

impl SaveTarget {
    /// Saving to `path` by default; `what` and `exts` filter the dialog ("PNG image", ["png"]).
    pub fn new(path: &str, what: &'static str, exts: &'static [&'static str]) -> Self {
        Self { path: path.into(), message: None, confirm: None, what, exts, dialog: Dialog::default() }
    }

    /// The save line; returns what to write (the caller then calls [`SaveTarget::save`]).
    pub fn ui(&mut self, ui: &mut egui::Ui) -> SaveAction {
        let mut action = SaveAction::None;
        if let Some(p) = self.dialog.take() {
            // the dialog asked about replacing already
            self.path = p.display().to_string();
            action = SaveAction::Write(p, true);
        }
        ui.horizontal(|ui| {
            let l = ui.label("Save as");
            ui.add(egui::TextEdit::singleline(&mut self.path).desired_width(280.0)).labelled_by(l.id);
            if ui.button("Browse…").on_hover_text("choose where to save in a file dialog").clicked() {
                let name = std::path::Path::new(self.path.trim()).file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
                self.dialog.start(Pick::Save(name, self.what, self.exts));
            }
            if ui.button("Save").clicked() {
                let p = std::path::PathBuf::from(self.path.trim());
                if p.exists() {
                    self.confirm = Some(p);
                } else {
                    action = SaveAction::Write(p, false);
                }
            }
        });
        if let Some(p) = self.confirm.clone() {
            ui.horizontal(|ui| {
                error(ui, &format!("{} exists. Replace it?", p.display()));
                if ui.button("Replace").clicked() {
                    action = SaveAction::Write(p.clone(), true);
                    self.confirm = None;
                }
                if ui.button("Keep it").clicked() {
                    self.confirm = None;
                    self.message = Some(format!("kept {}", p.display()));
                }
            });
        }
        if let Some(e) = &self.dialog.error {
            ui.weak(e);
        }
        if let Some(m) = &self.message {
            ui.weak(m);
        }
        action
    }

    /// Writes through `write(path, overwrite)` and records the outcome.
    pub fn save(&mut self, path: &std::path::Path, overwrite: bool, write: impl FnOnce(&std::path::Path, bool) -> anyhow::Result<()>) {
        self.message = Some(match write(path, overwrite) {
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

/// A picture that zooms (scroll or pinch) and pans (drag) inside a `side`-point box; a
/// double click fits it again. `view` keeps the zoom between frames (`Rect::ZERO`: fit).
pub fn zoom_view(ui: &mut egui::Ui, view: &mut egui::Rect, tex: &egui::TextureHandle, side: f32) {
    let [w, h] = tex.size();
    let aspect = h as f32 / w.max(1) as f32;
    let size = if aspect <= 1.0 { egui::vec2(side, side * aspect) } else { egui::vec2(side / aspect, side) };
    let response = ui
        .allocate_ui(size, |ui| {
            ui.set_min_size(size);
            egui::Scene::new().zoom_range(0.1..=32.0).show(ui, view, |ui| {
                ui.add(egui::Image::from_texture(tex).fit_to_exact_size(egui::vec2(w as f32, h as f32)));
            })
        })
        .inner
        .response;
    if response.double_clicked() {
        *view = egui::Rect::ZERO;
    }
}

/// "Picture 1", "Picture 2", ... to pick one of `count` pictures (nothing for one); true
/// when the choice changed.
pub fn picture_tabs(ui: &mut egui::Ui, count: usize, shown: &mut usize) -> bool {
    let mut changed = false;
    if count > 1 {
        ui.horizontal(|ui| {
            for k in 0..count {
                if ui.selectable_label(*shown == k, format!("Picture {}", k + 1)).clicked() {
                    *shown = k;
                    changed = true;
                }
            }
        });
    }
    changed
}

/// The pixel size a picture is shown at when it fits `side` points.
pub fn fitted(img: &image::RgbImage, side: f32) -> egui::Vec2 {
    let (w, h) = (img.width().max(1) as f32, img.height().max(1) as f32);
    let scale = side / w.max(h);
    egui::vec2(w * scale, h * scale)
}

/// A veil over the window while files are dragged over it, saying what a drop does.
pub fn drop_hint(ui: &egui::Ui) {
    let rect = ui.ctx().content_rect();
    let painter = ui.ctx().layer_painter(egui::LayerId::new(egui::Order::Foreground, egui::Id::unique("drop-hint")));
    painter.rect_filled(rect, 0.0, egui::Color32::from_black_alpha(160));
    painter.text(rect.center(), egui::Align2::CENTER_CENTER, "drop a PNG to load its parameters (or open it for img2img), a WAV for audio-to-audio", egui::FontId::proportional(18.0), egui::Color32::WHITE);
}
