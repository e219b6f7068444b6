//! The Text tab: masked-diffusion generation with the controls of `stipple text`, and the
//! canvas shown filling in step by step (undecided tokens as ▒).

use std::path::Path;

use candle_core::{DType, Device};
use stipple_core::progress::StepEvent;
use stipple_text::generate::{CanvasView, GenerateConfig};
use stipple_text::generation_defaults::{GenerationDefaults, Requested};
use stipple_text::TextModel;

use crate::job::{Job, Waker};
use crate::model_slot::ModelSlot;
use crate::run::Runs;
use crate::widgets::{self, SaveTarget};

/// A text model with the decoding its folder recommends.
pub struct LoadedText {
    /// The model and tokenizer.
    pub model: TextModel,
    /// Its `generation_config.json`.
    pub defaults: GenerationDefaults,
}

/// A finished generation.
#[derive(Clone, Debug)]
pub struct TextResult {
    /// The prompt it continued.
    pub prompt: String,
    /// The generated text.
    pub text: String,
    /// Model calls.
    pub nfe: usize,
    /// Generated tokens.
    pub tokens: usize,
}

/// The Text tab's state.
pub struct TextPanel {
    /// The model.
    pub slot: ModelSlot<LoadedText>,
    device: Device,
    /// The prompt.
    pub prompt: String,
    /// Tokens to generate.
    pub gen_len: usize,
    /// Semi-autoregressive block length.
    pub block_len: usize,
    /// Model calls in all.
    pub steps: usize,
    /// Sampling temperature (0: greedy).
    pub temperature: f64,
    /// Nucleus filter (1: off).
    pub top_p: f64,
    /// LLaDA's classifier-free guidance weight (0: off).
    pub guidance: f64,
    /// Seed of the next run.
    pub seed: u64,
    /// Draw a new seed for every run.
    pub new_seed_each_run: bool,
    defaults_applied: bool,
    /// Runs and their results (previews: the canvas as text).
    pub runs: Runs<TextResult, String>,
    /// Where "Save" writes.
    pub save: SaveTarget,
}

impl TextPanel {
    /// A panel loading `model` (when given) on `device`.
    pub fn new(model: Option<&Path>, device: Device, wake: Waker) -> Self {
        let slot = match model {
            Some(p) => Self::load_slot(p, &device, wake),
            None => ModelSlot::Empty("no text model: choose a folder (config.json, model.safetensors, tokenizer.json)".into()),
        };
        Self {
            slot,
            device,
            prompt: "Call me Ishmael. Some years ago".into(),
            gen_len: 48,
            block_len: 8,
            steps: 48,
            temperature: 0.8,
            top_p: 0.9,
            guidance: 0.0,
            seed: 0,
            new_seed_each_run: false,
            defaults_applied: false,
            runs: Runs::default(),
            save: SaveTarget::new("stipple-text.txt"),
        }
    }

    fn load_slot(path: &Path, device: &Device, wake: Waker) -> ModelSlot<LoadedText> {
        let device = device.clone();
        ModelSlot::load(path, wake, move |p| {
            let spec = p.display().to_string();
            let model = TextModel::load(&spec, &device, DType::F32)?;
            let defaults = GenerationDefaults::of_model(&spec)?;
            Ok(LoadedText { model, defaults })
        })
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

    /// The longest generation the model allows after the current prompt.
    fn max_gen_len(&self, m: &LoadedText) -> usize {
        let prompt_len = m.model.prompt_ids(&self.prompt, false).map(|ids| ids.len()).unwrap_or(0);
        m.model.lm.traits().max_len.map_or(512, |max| max.saturating_sub(prompt_len)).clamp(1, 512)
    }

    /// Moves finished work along; called once per frame.
    pub fn poll(&mut self) {
        self.slot.poll();
        if !self.defaults_applied {
            if let Some(m) = self.slot.ready().cloned() {
                if let Ok(s) = m.defaults.settle(&m.model, std::slice::from_ref(&self.prompt), false, &Requested::default()) {
                    (self.gen_len, self.block_len, self.steps, self.temperature) = (s.gen_len, s.block_len, s.steps, s.temperature);
                    self.top_p = s.top_p.unwrap_or(1.0);
                }
                self.defaults_applied = true;
            }
        }
        self.runs.poll();
    }

    /// Starts a generation with the current settings.
    pub fn generate(&mut self, wake: Waker) {
        let Some(m) = self.slot.ready().cloned() else {
            self.runs.refuse(self.slot.describe());
            return;
        };
        if self.new_seed_each_run {
            self.seed = stipple_core::noise::random_seed();
        }
        let cfg = GenerateConfig {
            gen_len: self.gen_len,
            steps: self.steps.clamp(1, self.gen_len),
            block_len: self.block_len.clamp(1, self.gen_len),
            temperature: self.temperature,
            top_p: (self.top_p < 1.0).then_some(self.top_p),
            guidance: self.guidance,
            seed: self.seed,
            ..GenerateConfig::default()
        };
        let prompt = self.prompt.clone();
        self.runs.start(Job::spawn(wake, move |reporter, cancel| {
            reporter.stage("generating");
            let model = &m.model;
            let mut progress = |e: &StepEvent<'_, CanvasView>| {
                let shown = e.preview.map(|view| model.canvas_text(view, 0, "▒"));
                reporter.step(e.step, e.total, shown);
            };
            let (outs, run) = model.generate(std::slice::from_ref(&prompt), false, &cfg, Some(&mut progress), cancel.clone())?;
            let out = outs.into_iter().next().ok_or_else(|| anyhow::anyhow!("no output"))?;
            Ok(TextResult { prompt, tokens: out.generated_ids.len(), text: out.text, nfe: run.nfe })
        }));
    }

    /// Writes the prompt and result to the save path (never over an existing file).
    pub fn save(&mut self) {
        let Some(r) = &self.runs.result else { return };
        let text = format!("{}{}\n", r.prompt, r.text);
        self.save.save(|path| stipple_core::output::write_file(path, false, |tmp| -> anyhow::Result<()> { Ok(std::fs::write(tmp, &text)?) }));
    }

    /// Draws the tab.
    pub fn ui(&mut self, ui: &mut egui::Ui, wake: &Waker) {
        self.poll();
        widgets::model_line(ui, &self.slot.describe());
        widgets::multiline(ui, "Prompt", &mut self.prompt, 3);
        let max_len = self.slot.ready().map_or(512, |m| self.max_gen_len(m));
        let running = self.is_running();
        ui.add_enabled_ui(!running, |ui| {
            egui::Grid::new("text-controls").num_columns(2).show(ui, |ui| {
                widgets::slider_usize(ui, "Tokens", &mut self.gen_len, 1..=max_len.max(1));
                self.block_len = self.block_len.clamp(1, self.gen_len.max(1));
                widgets::slider_usize(ui, "Block length", &mut self.block_len, 1..=self.gen_len.max(1));
                let blocks = self.gen_len.div_ceil(self.block_len.max(1));
                self.steps = self.steps.clamp(blocks, self.gen_len.max(blocks));
                widgets::slider_usize(ui, "Steps", &mut self.steps, blocks..=self.gen_len.max(blocks));
                widgets::slider_f64(ui, "Temperature", &mut self.temperature, 0.0..=2.0);
                widgets::slider_f64(ui, "Top-p", &mut self.top_p, 0.05..=1.0);
                widgets::slider_f64(ui, "Guidance (CFG)", &mut self.guidance, 0.0..=3.0);
                widgets::seed(ui, &mut self.seed, &mut self.new_seed_each_run);
            });
        });
        if self.runs.bar(ui, self.slot.ready().is_some()) {
            self.generate(wake.clone());
        }
        let status = self.runs.status();
        ui.separator();
        let mut save = false;
        if let Some(preview) = status.and_then(|s| s.preview) {
            ui.label(egui::RichText::new(format!("{}{preview}", self.prompt)).monospace());
        } else if let Some(r) = &self.runs.result {
            ui.horizontal_wrapped(|ui| {
                ui.label(egui::RichText::new(&r.prompt).strong());
                ui.label(&r.text);
            });
            if let Some(t) = self.runs.last_time {
                ui.weak(format!("{} tokens, {} model calls, {:.2} s", r.tokens, r.nfe, t.as_secs_f64()));
            }
            save = self.save.ui(ui);
        }
        if save {
            self.save();
        }
        self.runs.error_ui(ui);
    }
}
