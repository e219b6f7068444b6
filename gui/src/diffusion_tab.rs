//! What the Image and Music tabs share, since both drive the same latent-diffusion
//! pipeline: the model (loading in the background, reloading from a chosen folder), the
//! controls that adopt a freshly loaded model's defaults, and the last result.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};
use stipple_audio::pipeline::Riffusion;
use stipple_core::samplers::SamplerSpec;
use stipple_image::StableDiffusion;

use crate::diffusion_controls::DiffusionControls;
use crate::job::Waker;
use crate::model_slot::ModelSlot;
use crate::run::LastRun;

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

/// A diffusion tab's model, controls and last result (`T`).
pub struct DiffusionTab<M, T> {
    /// The model.
    pub slot: ModelSlot<M>,
    /// Prompt and sampling settings.
    pub controls: DiffusionControls,
    /// The last result.
    pub last: LastRun<T>,
    /// Keep the controls when the next model loads (parameters being reused).
    pub keep_controls: bool,
}

impl<M: PipelineModel, T> DiffusionTab<M, T> {
    /// A tab loading `model` (when given) on `device`; `empty` says what to do without one.
    pub fn new(model: Option<&Path>, device: Device, wake: Waker, empty: &str, controls: DiffusionControls) -> Self {
        let slot = ModelSlot::new(model, empty, "model_index.json", wake, Arc::new(move |p: &Path| M::load(p, &device)));
        Self { slot, controls, last: LastRun::default(), keep_controls: false }
    }

    /// Moves a finished load along (a new model sets the controls' defaults unless
    /// parameters are being reused); call once per frame.
    pub fn poll(&mut self) {
        if self.slot.poll() {
            if let (false, Some(m)) = (self.keep_controls, self.slot.ready()) {
                self.controls.adopt_defaults(m.pipeline());
            }
            self.keep_controls = false;
        }
    }

    /// The model's folder, as recorded in parameters.
    pub fn model_name(&self) -> String {
        self.slot.path().map(|p| p.display().to_string()).unwrap_or_default()
    }

    /// What a new run needs: the model, the chosen sampler and the seed. `None` (with the
    /// reason shown as the run's error) when no model is loaded or the sampler is unknown.
    pub fn prepare_run(&mut self) -> Option<(Arc<M>, Option<SamplerSpec>, u64)> {
        let Some(model) = self.slot.ready().cloned() else {
            self.last.failed(self.slot.describe());
            return None;
        };
        match self.controls.sampler_spec() {
            Ok(sampler) => Some((model, sampler, self.controls.next_seed())),
            Err(e) => {
                self.last.failed(format!("{e:#}"));
                None
            }
        }
    }

    /// Takes a recorded run's settings, and its model when that is another folder that
    /// exists (the controls keep the reused values when it loads).
    pub fn apply(&mut self, p: &crate::params::DiffusionParams) {
        self.controls.apply(p);
        if self.slot.follow(&p.model) {
            self.keep_controls = true;
        }
    }
}
