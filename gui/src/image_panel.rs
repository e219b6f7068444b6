//! The Image tab: text-to-image with a diffusers pipeline, the picture shown as it
//! denoises (small models decode every step; large ones show a quick approximate preview).

use std::path::Path;

use candle_core::{Device, Tensor};
use stipple_core::noise::PortableRng;
use stipple_core::progress::StepEvent;
use stipple_image::metadata::{GenerationInfo, write_png};
use stipple_image::preview::Previewer;
use stipple_image::{ImageRequest, StableDiffusion};

use crate::diffusion_controls::DiffusionControls;
use crate::diffusion_tab::DiffusionTab;
use crate::job::{Job, Waker};
use crate::widgets::{self, SaveTarget};

/// A finished picture.
#[derive(Clone, Debug)]
pub struct ImageResult {
    /// The picture.
    pub image: image::RgbImage,
    /// How it was made (goes into the PNG).
    pub info: GenerationInfo,
}

/// The Image tab's state.
pub struct ImagePanel {
    /// The pipeline, controls and runs (previews: the picture so far).
    pub tab: DiffusionTab<StableDiffusion, ImageResult, image::RgbImage>,
    texture: Option<(usize, egui::TextureHandle)>,
    /// Where "Save" writes.
    pub save: SaveTarget,
}

impl ImagePanel {
    /// A panel loading `model` (when given) on `device`.
    pub fn new(model: Option<&Path>, device: Device, wake: Waker) -> Self {
        let empty = "no image model: give a diffusers pipeline folder (model_index.json, unet/, vae/ ...) and press Load";
        Self { tab: DiffusionTab::new(model, device, wake, empty, DiffusionControls::new("red apple", 20, 5.0)), texture: None, save: SaveTarget::new("stipple-image.png") }
    }

    /// Starts a generation with the current settings.
    pub fn generate(&mut self, wake: Waker) {
        let Some((pipe, sampler, seed)) = self.tab.prepare_run() else { return };
        let c = &self.tab.controls;
        let req = ImageRequest {
            prompt: c.prompt.clone(),
            negative_prompt: c.negative(),
            steps: Some(c.steps),
            guidance: Some(c.guidance),
            sampler,
            ..ImageRequest::default()
        };
        self.tab.runs.start(Job::spawn(wake, move |reporter, cancel| {
            // the same previews as `stipple image --preview`: the VAE for small models, the
            // linear latent-to-RGB map for large ones
            let previewer = Previewer::for_pipeline(&pipe, None);
            reporter.stage("denoising");
            let mut progress = |e: &StepEvent<'_, Tensor>| {
                let picture = e.preview.and_then(|l| previewer.preview(l).ok());
                reporter.step(e.step, e.total, picture);
            };
            let out = pipe.generate(&req, &mut PortableRng::new(seed), &mut progress, cancel)?;
            let image = out.images.into_iter().next().ok_or_else(|| anyhow::anyhow!("no picture"))?;
            Ok(ImageResult { image, info: out.info })
        }));
    }

    /// Writes the picture, with its settings in the PNG, to the save path (never over an
    /// existing file).
    pub fn save(&mut self) {
        let Some(r) = &self.tab.runs.result else { return };
        self.save.save(|path| Ok(write_png(path, &r.image, Some(&r.info), false)?));
    }

    /// Draws the tab.
    pub fn ui(&mut self, ui: &mut egui::Ui, wake: &Waker) {
        self.tab.poll();
        self.tab.model_ui(ui, wake);
        let running = self.tab.is_running();
        self.tab.controls.ui(ui, "image-controls", !running);
        if self.tab.runs.bar(ui, self.tab.slot.ready().is_some()) {
            self.generate(wake.clone());
        }
        let runs = &self.tab.runs;
        let status = runs.status();
        ui.separator();
        // the texture follows the newest preview while running, else the result
        let (key, picture) = match (&status, &runs.result) {
            (Some(s), _) => (usize::MAX - s.step, s.preview.as_ref()),
            (None, Some(r)) => (runs.finished, Some(&r.image)),
            (None, None) => (0, None),
        };
        if let Some(img) = picture {
            if self.texture.as_ref().is_none_or(|(k, _)| *k != key) {
                self.texture = Some((key, widgets::texture(ui.ctx(), "image-output", img)));
            }
            if let Some((_, tex)) = &self.texture {
                widgets::picture(ui, tex, 256.0);
            }
        }
        let mut save = false;
        if status.is_none() {
            if let Some(r) = &runs.result {
                if let Some(t) = runs.last_time {
                    ui.weak(format!("{}x{}, {} steps of {}, guidance {}, seed {}: {:.2} s", r.info.width, r.info.height, r.info.steps, r.info.sampler, r.info.guidance, r.info.seed.map_or("none".into(), |s| s.to_string()), t.as_secs_f64()));
                }
                save = self.save.ui(ui);
            }
        }
        if save {
            self.save();
        }
        self.tab.runs.error_ui(ui);
    }
}
