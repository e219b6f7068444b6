//! The controls the Image and Music tabs share (both run the same latent-diffusion
//! pipeline): prompt, negative prompt, steps, guidance scale, sampler, seed.

use stipple_core::samplers::{SAMPLER_NAMES, SamplerSpec};
use stipple_image::StableDiffusion;

use crate::params::DiffusionParams;
use crate::widgets;

/// Prompt and sampling settings of a latent-diffusion run.
#[derive(Clone, Debug)]
pub struct DiffusionControls {
    /// The prompt.
    pub prompt: String,
    /// What to steer away from (empty: nothing).
    pub negative_prompt: String,
    /// Denoising steps.
    pub steps: usize,
    /// Classifier-free guidance scale (1: off).
    pub guidance: f64,
    /// Sampler name (`None`: the model's own scheduler).
    pub sampler: Option<String>,
    /// Seed of the next run.
    pub seed: u64,
    /// Draw a new seed for every run.
    pub new_seed_each_run: bool,
}

impl DiffusionControls {
    /// Controls with this prompt and defaults.
    pub fn new(prompt: &str, steps: usize, guidance: f64) -> Self {
        Self { prompt: prompt.into(), negative_prompt: String::new(), steps, guidance, sampler: None, seed: 0, new_seed_each_run: false }
    }

    /// Takes a freshly loaded pipeline's own steps and guidance (Turbo, LCM and plain
    /// models differ).
    pub fn adopt_defaults(&mut self, pipe: &StableDiffusion) {
        self.steps = pipe.default_steps().min(100);
        self.guidance = pipe.default_guidance();
    }

    /// The negative prompt, when given.
    pub fn negative(&self) -> Option<String> {
        let n = self.negative_prompt.trim();
        (!n.is_empty()).then(|| n.to_string())
    }

    /// These settings as recorded for a run with `model` and `seed`.
    pub fn params(&self, model: String, seed: u64) -> DiffusionParams {
        DiffusionParams {
            model,
            prompt: self.prompt.clone(),
            negative_prompt: self.negative_prompt.clone(),
            steps: self.steps,
            guidance: self.guidance,
            sampler: self.sampler.clone(),
            seed,
        }
    }

    /// Takes a recorded run's settings (its seed kept: no fresh seed for the next run).
    pub fn apply(&mut self, p: &DiffusionParams) {
        (self.prompt, self.negative_prompt, self.steps, self.guidance, self.sampler, self.seed) =
            (p.prompt.clone(), p.negative_prompt.clone(), p.steps, p.guidance, p.sampler.clone(), p.seed);
        self.new_seed_each_run = false;
    }

    /// The chosen sampler, parsed.
    pub fn sampler_spec(&self) -> anyhow::Result<Option<SamplerSpec>> {
        Ok(self.sampler.as_deref().map(str::parse).transpose()?)
    }

    /// The seed for a run that starts now (a fresh one when asked).
    pub fn next_seed(&mut self) -> u64 {
        if self.new_seed_each_run {
            self.seed = stipple_core::noise::random_seed();
        }
        self.seed
    }

    /// Draws the controls; `id` keeps two tabs' grids apart.
    pub fn ui(&mut self, ui: &mut egui::Ui, id: &str, enabled: bool) {
        widgets::multiline(ui, "Prompt", &mut self.prompt, 2);
        ui.add_enabled_ui(enabled, |ui| {
            widgets::singleline(ui, "Negative prompt", &mut self.negative_prompt);
            egui::Grid::new(id).num_columns(2).show(ui, |ui| {
                widgets::slider_usize(ui, "Steps", &mut self.steps, 1..=100);
                widgets::slider_f64(ui, "Guidance", &mut self.guidance, 0.0..=15.0);
                let l = ui.label("Sampler");
                egui::ComboBox::from_id_salt((id, "sampler"))
                    .selected_text(self.sampler.as_deref().unwrap_or("model's own"))
                    .show_ui(ui, |ui| {
                        ui.selectable_value(&mut self.sampler, None, "model's own");
                        for name in SAMPLER_NAMES {
                            ui.selectable_value(&mut self.sampler, Some(name.to_string()), *name);
                        }
                    })
                    .response
                    .labelled_by(l.id);
                ui.end_row();
                widgets::seed(ui, &mut self.seed, &mut self.new_seed_each_run);
            });
        });
    }
}
