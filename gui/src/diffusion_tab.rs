//! What the Image and Music tabs share, since both drive the same latent-diffusion
//! pipeline: the model loading in the background (and reloading from a typed folder), the
//! controls that adopt a freshly loaded model's defaults, and the runs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Device};
use stipple_audio::pipeline::Riffusion;
use stipple_core::samplers::SamplerSpec;
use stipple_image::StableDiffusion;

use crate::diffusion_controls::DiffusionControls;
use crate::job::Waker;
use crate::model_slot::ModelSlot;
use crate::run::Runs;
use crate::widgets;

/// A model a diffusion tab can load: something built on a [`StableDiffusion`] pipeline.
pub trait PipelineModel: Send + Sync + Sized + 'static {
    /// Loads the model from a folder.
    fn load(path: &Path, device: &Device) -> anyhow::Result<Self>;
    /// Its image pipeline (whose steps and guidance the controls adopt).
    fn pipeline(&self) -> &StableDiffusion;
}

impl PipelineModel for StableDiffusion {
    fn load(path: &Path, device: &Device) -> anyhow::Result<Self> {
        Ok(StableDiffusion::load(path, device, DType::F32)?)
    }
    fn pipeline(&self) -> &StableDiffusion {
        self
    }
}

impl PipelineModel for Riffusion {
    fn load(path: &Path, device: &Device) -> anyhow::Result<Self> {
        Ok(Riffusion::load(path, device, DType::F32)?)
    }
    fn pipeline(&self) -> &StableDiffusion {
        &self.pipeline
    }
}

/// A diffusion tab's model, controls and runs (results `T`, previews `P`).
pub struct DiffusionTab<M, T, P = ()> {
    /// The model.
    pub slot: ModelSlot<M>,
    device: Device,
    /// Prompt and sampling settings.
    pub controls: DiffusionControls,
    defaults_applied: bool,
    /// Runs and their results.
    pub runs: Runs<T, P>,
    /// The folder typed into "Model folder".
    pub model_path: String,
}

impl<M: PipelineModel, T: Send + 'static, P: Clone + Send + 'static> DiffusionTab<M, T, P> {
    /// A tab loading `model` (when given) on `device`; `empty` says what to do without one.
    pub fn new(model: Option<&Path>, device: Device, wake: Waker, empty: &str, controls: DiffusionControls) -> Self {
        let slot = match model {
            Some(p) => Self::load_slot(p, &device, wake),
            None => ModelSlot::Empty(empty.into()),
        };
        let model_path = model.map(|p| p.display().to_string()).unwrap_or_default();
        Self { slot, device, controls, defaults_applied: false, runs: Runs::default(), model_path }
    }

    fn load_slot(path: &Path, device: &Device, wake: Waker) -> ModelSlot<M> {
        let device = device.clone();
        ModelSlot::load(path, wake, move |p| M::load(p, &device))
    }

    /// Switches to the model in `path`.
    pub fn load(&mut self, path: &Path, wake: Waker) {
        self.slot = Self::load_slot(path, &self.device, wake);
        self.defaults_applied = false;
    }

    /// Whether a generation is running.
    pub fn is_running(&self) -> bool {
        self.runs.is_running()
    }

    /// Moves finished work along (a loaded model sets the controls' defaults once); called
    /// once per frame.
    pub fn poll(&mut self) {
        self.slot.poll();
        if !self.defaults_applied {
            if let Some(m) = self.slot.ready() {
                self.controls.adopt_defaults(m.pipeline());
                self.defaults_applied = true;
            }
        }
        self.runs.poll();
    }

    /// What a new run needs: the model, the chosen sampler and the seed. `None` (with the
    /// reason shown as the run's error) when no model is loaded or the sampler is unknown.
    pub fn prepare_run(&mut self) -> Option<(Arc<M>, Option<SamplerSpec>, u64)> {
        let Some(model) = self.slot.ready().cloned() else {
            self.runs.refuse(self.slot.describe());
            return None;
        };
        match self.controls.sampler_spec() {
            Ok(sampler) => Some((model, sampler, self.controls.next_seed())),
            Err(e) => {
                self.runs.refuse(format!("{e:#}"));
                None
            }
        }
    }

    /// The model line and the "Model folder" field with its Load button.
    pub fn model_ui(&mut self, ui: &mut egui::Ui, wake: &Waker) {
        widgets::model_line(ui, &self.slot.describe());
        let running = self.is_running();
        ui.horizontal(|ui| {
            widgets::singleline(ui, "Model folder", &mut self.model_path);
            if ui.add_enabled(!running && !self.model_path.trim().is_empty(), egui::Button::new("Load")).clicked() {
                let p = PathBuf::from(self.model_path.trim());
                self.load(&p, wake.clone());
            }
        });
    }
}
