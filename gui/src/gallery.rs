//! The side panel (the queue, then the history as a gallery, newest first) and the result
//! viewer: a result large, zoomable, with its parameters and "Reuse parameters", "Reuse
//! seed", "Send to img2img / inpaint", "Play" and "Delete".

use std::collections::HashMap;

use crate::history::{Entry, History};
use crate::params::Params;
use crate::playback::Playback;
use crate::widgets;
use crate::work::StudioQueue;

/// What the user asked of the gallery that the studio carries out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Load an entry's settings into its tab.
    Reuse(u64),
    /// Load only its seed.
    ReuseSeed(u64),
    /// Send picture `k` of an entry to img2img (`false`) or inpainting (`true`).
    SendToImage(u64, usize, bool),
}

/// The gallery's state.
pub struct Gallery {
    /// The entry open in the viewer.
    pub selected: Option<u64>,
    /// Which of its pictures is shown.
    pub picture: usize,
    thumbs: HashMap<String, egui::TextureHandle>,
    full: HashMap<String, egui::TextureHandle>,
    texts: HashMap<u64, String>,
    view: egui::Rect,
    playback: Playback,
    /// Why the last delete failed.
    pub error: Option<String>,
}

impl Default for Gallery {
    fn default() -> Self {
        Self { selected: None, picture: 0, thumbs: HashMap::new(), full: HashMap::new(), texts: HashMap::new(), view: egui::Rect::ZERO, playback: Playback::default(), error: None }
    }
}

fn kind(p: &Params) -> &'static str {
    match p {
        Params::Text(_) => "text",
        Params::Image(_) => "image",
        Params::Music(_) => "music",
    }
}

/// The file a thumbnail is made from: the first picture, or a clip's spectrogram.
fn picture_file(e: &Entry) -> Option<&String> {
    e.outputs.iter().find(|n| n.ends_with(".png"))
}

impl Gallery {
    fn texture(cache: &mut HashMap<String, egui::TextureHandle>, ctx: &egui::Context, history: &History, name: &str, side: Option<u32>) -> Option<egui::TextureHandle> {
        if let Some(t) = cache.get(name) {
            return Some(t.clone());
        }
        let img = image::open(history.path(name)).ok()?.to_rgb8();
        let img = match side {
            Some(s) if img.width().max(img.height()) > s => image::imageops::thumbnail(&img, s * img.width() / img.width().max(img.height()), s * img.height() / img.width().max(img.height())),
            _ => img,
        };
        let t = widgets::texture(ctx, name, &img);
        cache.insert(name.to_string(), t.clone());
        Some(t)
    }

    /// The queue (running job with Cancel, waiting jobs with Up, Down and Remove) and the
    /// history, newest first; clicking an entry opens it in the viewer.
    pub fn side_ui(&mut self, ui: &mut egui::Ui, queue: &mut StudioQueue, history: &mut History) -> Option<Action> {
        ui.heading("Queue");
        match queue.running() {
            Some(r) => {
                let (id, label) = (r.id, r.meta.params.label());
                let (step, total) = r.steps();
                ui.horizontal_wrapped(|ui| {
                    ui.label(format!("#{id} running: {label} (step {step} / {total})"));
                    if ui.small_button(format!("Cancel #{id}")).clicked() {
                        queue.cancel(id);
                    }
                });
            }
            None => {
                ui.weak("nothing running");
            }
        }
        let waiting: Vec<(u64, String)> = queue.waiting().map(|w| (w.id, w.meta.params.label())).collect();
        for (id, label) in waiting {
            ui.horizontal_wrapped(|ui| {
                ui.label(format!("#{id} {label}"));
                if ui.small_button(format!("Up #{id}")).clicked() {
                    queue.shift(id, true);
                }
                if ui.small_button(format!("Down #{id}")).clicked() {
                    queue.shift(id, false);
                }
                if ui.small_button(format!("Remove #{id}")).clicked() {
                    queue.cancel(id);
                }
            });
        }
        ui.separator();
        ui.heading(format!("History ({})", history.entries().len()));
        ui.weak(history.dir().display().to_string());
        if let Some(e) = &history.error {
            widgets::error(ui, e);
        }
        let mut open = None;
        egui::ScrollArea::vertical().id_salt("history").show(ui, |ui| {
            for e in history.entries().iter().rev() {
                ui.horizontal(|ui| {
                    if let Some(t) = picture_file(e).and_then(|n| Self::texture(&mut self.thumbs, ui.ctx(), history, n, Some(48))) {
                        widgets::picture(ui, &t, 48.0);
                    }
                    let label = format!("#{} {}: {}", e.id, kind(&e.params), e.params.label().split_once(' ').map_or("", |(_, rest)| rest));
                    if ui.selectable_label(self.selected == Some(e.id), label).on_hover_text(&e.summary).clicked() {
                        open = Some(e.id);
                    }
                });
            }
        });
        if let Some(id) = open {
            self.open(id);
        }
        None
    }

    /// Opens entry `id` in the viewer.
    pub fn open(&mut self, id: u64) {
        self.selected = Some(id);
        self.picture = 0;
        self.view = egui::Rect::ZERO;
        self.playback.stop();
    }

    /// The viewer window of the selected entry.
    pub fn viewer_ui(&mut self, ctx: &egui::Context, history: &mut History) -> Option<Action> {
        let id = self.selected?;
        let Some(entry) = history.get(id).cloned() else {
            self.selected = None;
            return None;
        };
        let mut action = None;
        let mut open = true;
        let mut delete = false;
        egui::Window::new(format!("Result #{id}")).open(&mut open).default_size([560.0, 640.0]).show(ctx, |ui| {
            let pictures: Vec<&String> = entry.outputs.iter().filter(|n| n.ends_with(".png")).collect();
            match &entry.params {
                Params::Text(_) => {
                    let text = self.texts.entry(id).or_insert_with(|| entry.outputs.first().and_then(|n| std::fs::read_to_string(history.path(n)).ok()).unwrap_or_default());
                    egui::ScrollArea::vertical().max_height(240.0).show(ui, |ui| {
                        ui.label(egui::RichText::new(text.as_str()).monospace());
                    });
                }
                Params::Image(_) | Params::Music(_) => {
                    if widgets::picture_tabs(ui, pictures.len(), &mut self.picture) {
                        self.view = egui::Rect::ZERO;
                    }
                    if let Some(t) = pictures.get(self.picture.min(pictures.len().saturating_sub(1))).and_then(|n| Self::texture(&mut self.full, ui.ctx(), history, n, None)) {
                        widgets::zoom_view(ui, &mut self.view, &t, 480.0);
                        ui.weak("scroll to zoom, drag to pan, double-click to fit");
                    }
                }
            }
            if let Params::Music(_) = &entry.params {
                ui.horizontal(|ui| {
                    if ui.button("Play").clicked() {
                        match entry.outputs.first().map(|n| stipple_audio::wav::read_mono(&history.path(n), 0)) {
                            Some(Ok(w)) => self.playback.play(&w.samples, w.sample_rate, false),
                            Some(Err(e)) => self.error = Some(e.to_string()),
                            None => {}
                        }
                    }
                    if ui.button("Stop").clicked() {
                        self.playback.stop();
                    }
                    if let Some(m) = self.playback.message() {
                        ui.weak(m);
                    }
                });
            }
            ui.weak(format!("{} · {:.2} s", entry.summary, entry.seconds));
            egui::Grid::new(("params", id)).num_columns(2).striped(true).show(ui, |ui| {
                for (k, v) in entry.params.rows() {
                    ui.label(k);
                    ui.label(v);
                    ui.end_row();
                }
            });
            ui.horizontal_wrapped(|ui| {
                if ui.button("Reuse parameters").clicked() {
                    action = Some(Action::Reuse(id));
                }
                if ui.button("Reuse seed").clicked() {
                    action = Some(Action::ReuseSeed(id));
                }
                if let Params::Image(_) = &entry.params {
                    if ui.button("Send to img2img").clicked() {
                        action = Some(Action::SendToImage(id, self.picture, false));
                    }
                    if ui.button("Send to inpaint").clicked() {
                        action = Some(Action::SendToImage(id, self.picture, true));
                    }
                }
                if ui.button("Delete").on_hover_text("delete this result and its files").clicked() {
                    delete = true;
                }
            });
            if let Some(e) = &self.error {
                widgets::error(ui, e);
            }
        });
        if delete {
            match history.remove(id) {
                Ok(()) => {
                    for n in &entry.outputs {
                        self.thumbs.remove(n);
                        self.full.remove(n);
                    }
                    self.texts.remove(&id);
                    self.selected = None;
                }
                Err(e) => self.error = Some(format!("could not delete #{id}: {e}")),
            }
        }
        if !open {
            self.selected = None;
            self.playback.stop();
        }
        action
    }
}
