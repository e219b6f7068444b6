//! The Image tab: text-to-image with a diffusers pipeline, the picture shown as it
//! denoises (small models decode every step; large ones show the finished picture).

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use stipple_core::noise::PortableRng;
use stipple_core::progress::StepEvent;
use stipple_image::metadata::{GenerationInfo, write_png};
use stipple_image::{ImageRequest, StableDiffusion};

use crate::diffusion_controls::DiffusionControls;
use crate::job::{Job, Outcome, Waker};
use crate::model_slot::ModelSlot;
use crate::widgets::{self, RunAction};

/// Models at most this many pixels a side get a decoded preview at every step (the full
/// VAE costs little there).
const PREVIEW_MAX_SIDE: usize = 128;

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
    /// The pipeline.
    pub slot: ModelSlot<StableDiffusion>,
    device: Device,
    /// Prompt and sampling settings.
    pub controls: DiffusionControls,
    defaults_applied: bool,
    job: Option<Job<ImageResult, image::RgbImage>>,
    /// The last result.
    pub result: Option<ImageResult>,
    texture: Option<(usize, egui::TextureHandle)>,
    /// The last error (or "cancelled").
    pub error: Option<String>,
    /// Wall time of the last run.
    pub last_time: Option<Duration>,
    /// Where "Save" writes.
    pub save_path: String,
    /// What the last save did.
    pub save_message: Option<String>,
    shown: usize,
}

impl ImagePanel {
    /// A panel loading `model` (when given) on `device`.
    pub fn new(model: Option<&Path>, device: Device, wake: Waker) -> Self {
        let slot = match model {
            Some(p) => Self::load_slot(p, &device, wake),
            None => ModelSlot::Empty("no image model: choose a diffusers pipeline folder (model_index.json, unet/, vae/ ...)".into()),
        };
        Self {
            slot,
            device,
            controls: DiffusionControls::new("red apple", 20, 5.0),
            defaults_applied: false,
            job: None,
            result: None,
            texture: None,
            error: None,
            last_time: None,
            save_path: "stipple-image.png".into(),
            save_message: None,
            shown: 0,
        }
    }

    fn load_slot(path: &Path, device: &Device, wake: Waker) -> ModelSlot<StableDiffusion> {
        let device = device.clone();
        ModelSlot::load(path, wake, move |p| Ok(StableDiffusion::load(p, &device, DType::F32)?))
    }

    /// Switches to the pipeline in `path`.
    pub fn load(&mut self, path: &Path, wake: Waker) {
        self.slot = Self::load_slot(path, &self.device, wake);
        self.defaults_applied = false;
    }

    /// Whether a generation is running.
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// Moves finished work along; called once per frame.
    pub fn poll(&mut self) {
        self.slot.poll();
        if !self.defaults_applied {
            if let Some(pipe) = self.slot.ready() {
                self.controls.steps = pipe.default_steps().min(100);
                self.controls.guidance = pipe.default_guidance();
                self.defaults_applied = true;
            }
        }
        if let Some(job) = &mut self.job {
            if let Outcome::Done(result, took) = job.poll() {
                self.job = None;
                self.last_time = Some(took);
                match result {
                    Ok(r) => {
                        self.result = Some(r);
                        self.shown += 1;
                        self.error = None;
                    }
                    Err(e) => self.error = Some(format!("{e:#}")),
                }
            }
        }
    }

    /// Starts a generation with the current settings.
    pub fn generate(&mut self, wake: Waker) {
        let Some(pipe) = self.slot.ready().cloned() else {
            self.error = Some(self.slot.describe());
            return;
        };
        let sampler = match self.controls.sampler_spec() {
            Ok(s) => s,
            Err(e) => {
                self.error = Some(format!("{e:#}"));
                return;
            }
        };
        let seed = self.controls.next_seed();
        let c = &self.controls;
        let req = ImageRequest {
            prompt: c.prompt.clone(),
            negative_prompt: c.negative(),
            steps: Some(c.steps),
            guidance: Some(c.guidance),
            sampler,
            ..ImageRequest::default()
        };
        self.error = None;
        self.job = Some(Job::spawn(wake, move |reporter, cancel| {
            let (width, height) = pipe.output_size(&req)?;
            let previews = width.max(height) <= PREVIEW_MAX_SIDE;
            reporter.stage("denoising");
            let mut progress = |e: &StepEvent<'_, Tensor>| {
                let picture = e.preview.filter(|_| previews).and_then(|l| pipe.decode_latents(l).ok()).and_then(|(_, imgs)| imgs.into_iter().next());
                reporter.step(e.step, e.total, picture);
            };
            let out = pipe.generate(&req, &mut PortableRng::new(seed), &mut progress, cancel)?;
            let image = out.images.into_iter().next().ok_or_else(|| anyhow::anyhow!("no picture"))?;
            let info = GenerationInfo {
                prompt: req.prompt.clone(),
                negative_prompt: req.negative_prompt.clone(),
                steps: out.steps,
                sampler: out.sampler,
                guidance: out.guidance,
                guidance_rescale: 0.0,
                seed,
                width,
                height,
                model: pipe.name().to_string(),
                strength: None,
            };
            Ok(ImageResult { image, info })
        }));
    }

    /// Asks the running generation to stop.
    pub fn cancel(&self) {
        if let Some(j) = &self.job {
            j.cancel();
        }
    }

    /// Writes the picture, with its settings in the PNG, to `save_path` (never over an
    /// existing file).
    pub fn save(&mut self) {
        let Some(r) = &self.result else { return };
        let path = PathBuf::from(&self.save_path);
        self.save_message = Some(match write_png(&path, &r.image, Some(&r.info), false) {
            Ok(()) => format!("saved {}", path.display()),
            Err(e) => format!("{e:#}"),
        });
    }

    /// Draws the tab.
    pub fn ui(&mut self, ui: &mut egui::Ui, wake: &Waker) {
        self.poll();
        widgets::model_line(ui, &self.slot.describe());
        let running = self.is_running();
        self.controls.ui(ui, "image-controls", !running);
        let status = self.job.as_ref().map(|j| j.status());
        match widgets::run_bar(ui, running, self.slot.ready().is_some(), status.as_ref().map(|s| (s.step, s.total))) {
            RunAction::Start => self.generate(wake.clone()),
            RunAction::Cancel => self.cancel(),
            RunAction::None => {}
        }
        ui.separator();
        // the texture follows the newest preview while running, else the result
        let (key, picture) = match (&status, &self.result) {
            (Some(s), _) => (usize::MAX - s.step, s.preview.as_ref()),
            (None, Some(r)) => (self.shown, Some(&r.image)),
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
            if let Some(r) = &self.result {
                if let Some(t) = self.last_time {
                    ui.weak(format!("{}x{}, {} steps of {}, guidance {}, seed {}: {:.2} s", r.info.width, r.info.height, r.info.steps, r.info.sampler, r.info.guidance, r.info.seed, t.as_secs_f64()));
                }
                save = widgets::save_row(ui, &mut self.save_path, &self.save_message);
            }
        }
        if save {
            self.save();
        }
        if let Some(e) = &self.error {
            widgets::error(ui, e);
        }
    }
}
