//! The Image tab: text-to-image, img2img and inpainting with a diffusers pipeline. The
//! picture shows as it denoises; results zoom and pan; a result goes to img2img or
//! inpainting in one click, where a mask is painted over it with a brush.

use std::path::Path;

use candle_core::{Device, Tensor};
use image::{DynamicImage, RgbImage};
use stipple_core::noise::{PerSample, PortableRng};
use stipple_core::progress::StepEvent;
use stipple_image::metadata::{GenerationInfo, write_png};
use stipple_image::preview::Previewer;
use stipple_image::{ImageRequest, StableDiffusion};

use crate::app::Tab;
use crate::diffusion_controls::DiffusionControls;
use crate::diffusion_tab::DiffusionTab;
use crate::dialogs::{Dialog, Pick};
use crate::job::Waker;
use crate::mask_editor::MaskEditor;
use crate::params::{ImageParams, Params};
use crate::run::run_bar;
use crate::widgets::{self, SaveAction, SaveTarget};
use crate::work::{Inputs, Output, Preview, StudioQueue, Ticket, progress_of};

/// A finished picture.
#[derive(Clone, Debug)]
pub struct ImageResult {
    /// The picture.
    pub image: RgbImage,
    /// How it was made (goes into the PNG).
    pub info: GenerationInfo,
}

/// The picture img2img and inpainting start from.
pub struct InitImage {
    /// The picture.
    pub image: RgbImage,
    /// Where it came from (a file, "result #12").
    pub source: String,
    texture: Option<egui::TextureHandle>,
}

/// Sizes in the model's native area at common aspect ratios, multiples of 8.
pub fn size_presets(native: usize) -> Vec<(&'static str, usize, usize)> {
    let area = (native * native) as f64;
    let fit = |aw: f64, ah: f64| {
        let w = (area * aw / ah).sqrt();
        let round8 = |v: f64| ((v / 8.0).round() as usize * 8).max(8);
        (round8(w), round8(w * ah / aw))
    };
    [("1:1", 1.0, 1.0), ("3:2", 3.0, 2.0), ("2:3", 2.0, 3.0), ("16:9", 16.0, 9.0), ("9:16", 9.0, 16.0)]
        .into_iter()
        .map(|(name, aw, ah)| {
            let (w, h) = fit(aw, ah);
            (name, w, h)
        })
        .collect()
}

/// The Image tab's state.
pub struct ImagePanel {
    /// The pipeline, controls and last pictures.
    pub tab: DiffusionTab<StableDiffusion, Vec<ImageResult>>,
    /// Width in pixels (multiple of 8).
    pub width: usize,
    /// Height in pixels (multiple of 8).
    pub height: usize,
    /// Pictures per run (picture k uses seed + k).
    pub batch: usize,
    /// img2img / inpainting source.
    pub init: Option<InitImage>,
    /// How much of the init image to repaint.
    pub strength: f64,
    /// Paint a mask and repaint only under it.
    pub inpaint: bool,
    /// The mask being painted.
    pub mask: Option<MaskEditor>,
    /// Keep unmasked pixels exactly (A1111's overlay).
    pub keep_unmasked: bool,
    /// Which picture of the last batch is shown.
    pub shown: usize,
    /// A message about the last opened or dropped file.
    pub notice: Option<String>,
    /// Where "Save" writes.
    pub save: SaveTarget,
    texture: Option<((usize, usize), egui::TextureHandle)>,
    view: egui::Rect,
    native: usize,
    open: Dialog,
    show_init: bool,
}

impl ImagePanel {
    /// A panel loading `model` (when given) on `device`.
    pub fn new(model: Option<&Path>, device: Device, wake: Waker) -> Self {
        let empty = "no image model: choose a diffusers pipeline folder (model_index.json, unet/, vae/ ...) and press Load";
        Self {
            tab: DiffusionTab::new(model, device, wake, empty, DiffusionControls::new("red apple", 20, 5.0)),
            width: 512,
            height: 512,
            batch: 1,
            init: None,
            strength: 0.75,
            inpaint: false,
            mask: None,
            keep_unmasked: true,
            shown: 0,
            notice: None,
            save: SaveTarget::new("stipple-image.png", "PNG image", &["png"]),
            texture: None,
            view: egui::Rect::ZERO,
            native: 0,
            open: Dialog::default(),
            show_init: false,
        }
    }

    /// Moves loading along; a new model sets its native size unless parameters are reused.
    pub fn poll(&mut self) {
        let keep = self.tab.keep_controls;
        self.tab.poll();
        if let Some(m) = self.tab.slot.ready() {
            let native = m.native_size();
            if native != self.native {
                self.native = native;
                if !keep {
                    (self.width, self.height) = (native, native);
                }
            }
        }
    }

    /// Starts img2img (or inpainting, with an empty mask) from `image`.
    pub fn set_init(&mut self, image: RgbImage, source: String, inpaint: bool) {
        // the output takes the picture's size, rounded down to multiples of 8
        self.width = ((image.width() as usize / 8) * 8).max(8);
        self.height = ((image.height() as usize / 8) * 8).max(8);
        self.mask = Some(MaskEditor::new(image.width(), image.height()));
        self.inpaint = inpaint;
        self.init = Some(InitImage { image, source, texture: None });
        self.show_init = true;
    }

    /// Opens a picture file for img2img.
    pub fn open_init(&mut self, path: &Path) {
        match image::open(path) {
            Ok(img) => {
                self.set_init(img.to_rgb8(), path.display().to_string(), false);
                self.notice = Some(format!("opened {} for img2img", path.display()));
            }
            Err(e) => self.notice = Some(format!("could not open {}: {e}", path.display())),
        }
    }

    /// Takes the settings a PNG's metadata holds (stipple's or AUTOMATIC1111's).
    pub fn apply_info(&mut self, info: &GenerationInfo) {
        let c = &mut self.tab.controls;
        c.prompt = info.prompt.clone();
        c.negative_prompt = info.negative_prompt.clone().unwrap_or_default();
        c.steps = info.steps.clamp(1, 100);
        c.guidance = info.guidance;
        c.sampler = info.sampler.parse::<stipple_core::samplers::SamplerSpec>().is_ok().then(|| info.sampler.clone());
        if let Some(s) = info.seed {
            c.seed = s;
            c.new_seed_each_run = false;
        }
        (self.width, self.height) = (info.width.max(8) / 8 * 8, info.height.max(8) / 8 * 8);
    }

    /// Takes a recorded run's settings; `inputs` are its init image and mask, read back.
    pub fn apply(&mut self, p: &ImageParams, init: Option<RgbImage>, mask: Option<image::GrayImage>) {
        self.tab.apply(&p.run);
        match init {
            Some(img) => {
                let inpaint = mask.is_some();
                self.set_init(img, "reused".into(), inpaint);
                if let (Some(m), Some(editor)) = (mask, self.mask.as_mut()) {
                    editor.set(&m);
                }
            }
            None => self.init = None,
        }
        (self.width, self.height, self.batch, self.strength) = (p.width, p.height, p.batch.max(1), p.strength);
    }

    /// The parameters of a run started now with `seed`.
    fn params(&self, seed: u64) -> ImageParams {
        ImageParams {
            run: self.tab.controls.params(self.tab.model_name(), seed),
            width: self.width,
            height: self.height,
            batch: self.batch,
            strength: self.strength,
            init_image: None,
            mask: None,
        }
    }

    /// Queues a run with the current settings.
    pub fn generate(&mut self, queue: &mut StudioQueue) {
        let Some((pipe, sampler, seed)) = self.tab.prepare_run() else { return };
        let mask = match (&self.init, self.inpaint, &self.mask) {
            (Some(_), true, Some(m)) if m.is_empty() => {
                self.tab.last.failed("paint the part to repaint on the picture first (or untick Inpaint for img2img)");
                return;
            }
            (Some(_), true, Some(m)) => Some(m.mask.clone()),
            _ => None,
        };
        let inputs = Inputs { init_image: self.init.as_ref().map(|i| i.image.clone()), mask, ..Inputs::default() };
        let c = &self.tab.controls;
        let req = ImageRequest {
            prompt: c.prompt.clone(),
            negative_prompt: c.negative(),
            steps: Some(c.steps),
            guidance: Some(c.guidance),
            sampler,
            width: Some(self.width),
            height: Some(self.height),
            batch: self.batch,
            init_image: inputs.init_image.clone().map(DynamicImage::ImageRgb8),
            strength: self.strength,
            mask: inputs.mask.clone().map(DynamicImage::ImageLuma8),
            keep_unmasked: self.keep_unmasked && inputs.mask.is_some(),
            ..ImageRequest::default()
        };
        // refused here, with the CLI's message, rather than after the queue's wait
        if let Err(e) = req.validate() {
            self.tab.last.failed(e);
            return;
        }
        let ticket = Ticket { tab: Tab::Image, params: Params::Image(self.params(seed)), inputs };
        queue.submit(ticket, move |reporter, cancel| {
            // the same previews as `stipple image --preview`: the VAE for small models, the
            // linear latent-to-RGB map for large ones
            let previewer = Previewer::for_pipeline(&pipe, None);
            reporter.stage("denoising");
            let mut progress = |e: &StepEvent<'_, Tensor>| {
                let picture = e.preview.and_then(|l| previewer.preview(l).ok()).map(Preview::Image);
                reporter.step(e.step, e.total, picture);
            };
            // picture k is what seed + k gives alone, as in A1111
            let mut noise = PerSample { sources: (0..req.batch as u64).map(|k| PortableRng::new(seed.wrapping_add(k))).collect() };
            let out = pipe.generate(&req, &mut noise, &mut progress, cancel)?;
            let pictures = out
                .images
                .into_iter()
                .enumerate()
                .map(|(k, image)| ImageResult { image, info: GenerationInfo { seed: Some(seed.wrapping_add(k as u64)), ..out.info.clone() } })
                .collect();
            Ok(Output::Image(pictures))
        });
    }

    /// Writes a run's pictures (with their settings in the PNG) and inputs into the
    /// history folder; returns the file names.
    pub fn record(dir: &Path, stem: &str, params: &mut Params, pictures: &[ImageResult], inputs: &Inputs) -> anyhow::Result<Vec<String>> {
        let mut names = Vec::new();
        for (k, r) in pictures.iter().enumerate() {
            let name = if pictures.len() == 1 { format!("{stem}.png") } else { format!("{stem}-{k}.png") };
            write_png(&dir.join(&name), &r.image, Some(&r.info), false)?;
            names.push(name);
        }
        if let Params::Image(p) = params {
            if let Some(init) = &inputs.init_image {
                let name = format!("{stem}-init.png");
                write_png(&dir.join(&name), init, None, false)?;
                p.init_image = Some(name);
            }
            if let Some(mask) = &inputs.mask {
                let name = format!("{stem}-mask.png");
                let path = dir.join(&name);
                stipple_core::output::write_file(&path, false, |tmp| -> anyhow::Result<()> { Ok(mask.save_with_format(tmp, image::ImageFormat::Png)?) })?;
                p.mask = Some(name);
            }
        }
        Ok(names)
    }

    /// Shows a finished run.
    pub fn finish(&mut self, pictures: Vec<ImageResult>, seconds: f64, history_id: Option<u64>) {
        let Some(first) = pictures.first() else { return };
        let i = &first.info;
        let stats = format!(
            "{}x{}, {} steps of {}, guidance {}, seed {}{}: {seconds:.2} s",
            i.width,
            i.height,
            i.steps,
            i.sampler,
            i.guidance,
            i.seed.map_or("none".into(), |s| s.to_string()),
            if pictures.len() > 1 { format!(" (+{} more)", pictures.len() - 1) } else { String::new() }
        );
        self.shown = 0;
        self.view = egui::Rect::ZERO;
        self.tab.last.done(pictures, stats, history_id);
    }

    fn size_ui(&mut self, ui: &mut egui::Ui) {
        egui::Grid::new("image-size").num_columns(2).show(ui, |ui| {
            let l = ui.label("Width");
            ui.add(egui::Slider::new(&mut self.width, 8..=2048).step_by(8.0)).labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Height");
            ui.add(egui::Slider::new(&mut self.height, 8..=2048).step_by(8.0)).labelled_by(l.id);
            ui.end_row();
            widgets::slider_usize(ui, "Batch count", &mut self.batch, 1..=8).on_hover_text("pictures per run; picture k uses seed + k");
        });
        if self.native > 0 {
            ui.horizontal(|ui| {
                ui.weak(format!("sizes for this model ({} px native):", self.native));
                for (name, w, h) in size_presets(self.native) {
                    if ui.small_button(format!("{name} {w}x{h}")).clicked() {
                        (self.width, self.height) = (w, h);
                    }
                }
            });
        }
    }

    fn init_ui(&mut self, ui: &mut egui::Ui) {
        if let Some(p) = self.open.take() {
            self.open_init(&p);
        }
        ui.horizontal(|ui| {
            if ui.button("Open image…").on_hover_text("start img2img from a picture (or drop one on the window)").clicked() {
                self.open.start(Pick::Open("image", &["png", "jpg", "jpeg", "webp"]));
            }
            if self.init.is_some() && ui.button("Remove init image").clicked() {
                self.init = None;
                self.mask = None;
            }
        });
        if let Some(n) = &self.notice {
            ui.weak(n);
        }
        let Some(init) = &mut self.init else { return };
        ui.label(format!("img2img from {} ({}x{})", init.source, init.image.width(), init.image.height()));
        ui.horizontal(|ui| {
            let l = ui.label("Strength");
            ui.add(egui::Slider::new(&mut self.strength, 0.01..=1.0).max_decimals(2)).labelled_by(l.id).on_hover_text("how much to repaint: 0 keeps the picture, 1 ignores it");
            ui.checkbox(&mut self.inpaint, "Inpaint").on_hover_text("repaint only what you paint on the picture");
            if self.inpaint {
                ui.checkbox(&mut self.keep_unmasked, "Keep unmasked pixels").on_hover_text("put the original pixels back outside the mask");
            }
        });
        let tex = init.texture.get_or_insert_with(|| widgets::texture(ui.ctx(), "init-image", &init.image)).clone();
        let size = widgets::fitted(&init.image, 384.0);
        match (self.inpaint, &mut self.mask) {
            (true, Some(editor)) => {
                editor.controls_ui(ui);
                editor.canvas_ui(ui, &tex, size);
            }
            _ => {
                ui.add(egui::Image::from_texture(&tex).fit_to_exact_size(size));
            }
        }
    }

    /// Draws the tab.
    pub fn ui(&mut self, ui: &mut egui::Ui, queue: &mut StudioQueue) {
        self.tab.slot.ui(ui, true);
        self.tab.controls.ui(ui, "image-controls", true);
        self.size_ui(ui);
        // the section opens by itself when a picture is sent to it
        let open = std::mem::take(&mut self.show_init).then_some(true);
        egui::CollapsingHeader::new("img2img and inpainting").open(open).show(ui, |ui| self.init_ui(ui));
        let progress = progress_of(queue, Tab::Image);
        if run_bar(ui, queue, progress.as_ref(), Tab::Image, self.tab.slot.ready().is_some()) {
            self.generate(queue);
        }
        ui.separator();
        let preview = progress.as_ref().and_then(|p| match &p.preview {
            Some(Preview::Image(img)) => Some((p.step, img.clone())),
            _ => None,
        });
        let last = &self.tab.last;
        // the texture follows the newest preview while running, else the shown result
        let (key, picture) = match (&preview, &last.result) {
            (Some((step, img)), _) => ((usize::MAX, *step), Some(img)),
            (None, Some(r)) => ((last.finished, self.shown), r.get(self.shown).map(|r| &r.image)),
            _ => ((0, 0), None),
        };
        if let Some(img) = picture {
            if self.texture.as_ref().is_none_or(|(k, _)| *k != key) {
                self.texture = Some((key, widgets::texture(ui.ctx(), "image-output", img)));
            }
            if let Some((_, tex)) = &self.texture {
                if preview.is_some() {
                    widgets::picture(ui, tex, 384.0);
                } else {
                    widgets::zoom_view(ui, &mut self.view, tex, 384.0);
                    ui.weak("scroll to zoom, drag to pan, double-click to fit");
                }
            }
        }
        let mut send = None;
        if preview.is_none() {
            if let Some(pictures) = &self.tab.last.result {
                if widgets::picture_tabs(ui, pictures.len(), &mut self.shown) {
                    self.view = egui::Rect::ZERO;
                }
                self.tab.last.stats_ui(ui);
                ui.horizontal(|ui| {
                    if ui.button("Send to img2img").clicked() {
                        send = Some(false);
                    }
                    if ui.button("Send to inpaint").clicked() {
                        send = Some(true);
                    }
                });
                if let SaveAction::Write(path, overwrite) = self.save.ui(ui) {
                    if let Some(r) = pictures.get(self.shown) {
                        let (img, info) = (r.image.clone(), r.info.clone());
                        self.save.save(&path, overwrite, |p, o| Ok(write_png(p, &img, Some(&info), o)?));
                    }
                }
            }
        }
        if let (Some(inpaint), Some(r)) = (send, self.tab.last.result.as_ref().and_then(|p| p.get(self.shown))) {
            let source = match self.tab.last.history_id {
                Some(id) => format!("result #{id}"),
                None => "the last result".into(),
            };
            self.set_init(r.image.clone(), source, inpaint);
        }
        self.tab.last.error_ui(ui);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_keep_the_native_area_in_multiples_of_8() {
        let p = size_presets(512);
        assert_eq!(p[0], ("1:1", 512, 512));
        for (name, w, h) in p {
            assert!(w % 8 == 0 && h % 8 == 0, "{name}");
            let area = (w * h) as f64 / (512.0 * 512.0);
            assert!((0.9..1.1).contains(&area), "{name}: {w}x{h}");
        }
        assert_eq!(size_presets(32)[0], ("1:1", 32, 32));
    }
}
