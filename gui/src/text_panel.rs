//! The Text tab: a diffusion language model at work. Generate continues a prompt; Infill
//! fills the holes of a template (`[4]`, `[1..3]`, `[1 {cat,dog}]`, `[4 /regex/]`,
//! `[3 chars:[a-z]]`, the syntax of `stipple infill`) all at once. The canvas shows as
//! it decodes: undecided tokens as ▒, committed ones shaded by their confidence.

use std::path::Path;
use std::sync::Arc;

use candle_core::{DType, Device};
use stipple_core::discrete::{CommitRule, Remasking};
use stipple_core::progress::StepEvent;
use stipple_text::TextModel;
use stipple_text::generate::{CacheMode, CanvasView, GenerateConfig};
use stipple_text::generation_defaults::{GenerationDefaults, Requested};
use stipple_text::infill::{InfillOptions, Template, infill};

use crate::app::Tab;
use crate::job::Waker;
use crate::model_slot::ModelSlot;
use crate::params::{Params, TextMode, TextParams};
use crate::run::{LastRun, run_bar};
use crate::widgets::{self, SaveAction, SaveTarget};
use crate::work::{Output, Preview, StudioQueue, Ticket, progress_of};

/// A text model with the decoding its folder recommends.
pub struct LoadedText {
    /// The model and tokenizer.
    pub model: TextModel,
    /// Its `generation_config.json`.
    pub defaults: GenerationDefaults,
}

/// One token of the canvas as shown.
#[derive(Clone, Debug, PartialEq)]
pub enum Piece {
    /// Text that was given (the template's fixed spans).
    Given(String),
    /// Not decided yet.
    Masked,
    /// Committed with this confidence.
    Committed(String, f64),
}

/// The canvas as the user sees it.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CanvasPreview {
    /// The tokens after the prompt, in order.
    pub pieces: Vec<Piece>,
}

impl CanvasPreview {
    /// The canvas `ids` with the confidences committed so far (`None`: given or masked).
    pub fn new(model: &TextModel, ids: &[u32], confidence: &[Option<f64>], mask_id: u32) -> Self {
        let mut pieces = Vec::with_capacity(ids.len());
        let mut i = 0;
        while i < ids.len() {
            if ids[i] == mask_id {
                pieces.push(Piece::Masked);
                i += 1;
                continue;
            }
            // a run of decided tokens, read together so word-start spaces stay right
            let end = ids[i..].iter().position(|&t| t == mask_id).map_or(ids.len(), |k| i + k);
            for (k, text) in model.token_pieces(&ids[i..end]).into_iter().enumerate() {
                pieces.push(match confidence.get(i + k).copied().flatten() {
                    Some(c) => Piece::Committed(text, c),
                    None => Piece::Given(text),
                });
            }
            i = end;
        }
        Self { pieces }
    }

    /// The text with undecided tokens as `hole`.
    pub fn text(&self, hole: &str) -> String {
        self.pieces
            .iter()
            .map(|p| match p {
                Piece::Given(t) | Piece::Committed(t, _) => t.as_str(),
                Piece::Masked => hole,
            })
            .collect()
    }

    /// Committed tokens.
    pub fn committed(&self) -> usize {
        self.pieces.iter().filter(|p| matches!(p, Piece::Committed(..))).count()
    }

    /// The canvas as one wrapped text: committed tokens on a background as strong as their
    /// confidence, undecided ones as ▒.
    pub fn layout(&self, ui: &egui::Ui) -> egui::text::LayoutJob {
        let mut job = egui::text::LayoutJob::default();
        let font = egui::FontId::monospace(14.0);
        let text = ui.visuals().text_color();
        let weak = ui.visuals().weak_text_color();
        let accent = ui.visuals().selection.bg_fill;
        for p in &self.pieces {
            let (s, format) = match p {
                Piece::Given(t) => (t.as_str(), egui::TextFormat::simple(font.clone(), text)),
                Piece::Masked => ("▒", egui::TextFormat::simple(font.clone(), weak)),
                Piece::Committed(t, c) => {
                    // probabilities are in [0, 1]; Dream's entropy measure is a log
                    let v = if *c < 0.0 { c.exp() } else { c.min(1.0) } as f32;
                    let bg = egui::Color32::from_rgba_unmultiplied(accent.r(), accent.g(), accent.b(), (40.0 + 200.0 * v) as u8);
                    (t.as_str(), egui::TextFormat { background: bg, ..egui::TextFormat::simple(font.clone(), text) })
                }
            };
            job.append(s, 0.0, format);
        }
        job.wrap.max_width = ui.available_width();
        job
    }
}

/// A finished run.
#[derive(Clone, Debug)]
pub struct TextResult {
    /// Generate or infill.
    pub mode: TextMode,
    /// The prompt it continued, or the template it filled.
    pub prompt: String,
    /// The generated text (the whole filled template when infilling).
    pub text: String,
    /// Each hole's name and text, when infilling.
    pub holes: Vec<(String, String)>,
    /// The final canvas, shaded by confidence.
    pub canvas: CanvasPreview,
    /// Model calls.
    pub nfe: usize,
    /// Generated tokens.
    pub tokens: usize,
}

/// The names the remasking measures have on the command line, with what they do.
pub const REMASKING: [(&str, Remasking, &str); 4] = [
    ("low-confidence", Remasking::LowConfidence, "commit the tokens the model is surest of first (LLaDA's low_confidence)"),
    ("random", Remasking::Random, "commit in random order, without looking at the model (LLaDA's random)"),
    ("margin", Remasking::Margin, "commit where the best token beats the runner-up most (Dream's topk_margin)"),
    ("entropy", Remasking::Entropy, "commit where the distribution is most peaked (Dream's entropy)"),
];

/// The KV cache modes, with what they do.
pub const CACHES: [(&str, CacheMode, &str); 3] = [
    ("none", CacheMode::None, "every step runs the whole canvas (exact)"),
    ("prefix", CacheMode::Prefix, "Fast-dLLM: reuse keys and values before the block (faster, approximate)"),
    ("dual", CacheMode::Dual, "Fast-dLLM: reuse keys and values outside the block (fastest, approximate)"),
];

/// The name `v` has in a table of (name, value, help).
fn name_in<T: Copy + PartialEq>(table: &[(&'static str, T, &'static str)], v: T) -> &'static str {
    table.iter().find(|(_, x, _)| *x == v).map_or("", |(n, _, _)| n)
}

/// A grid row: `label`, then a combo box over a table of (name, value, help).
fn named_choice<T: Copy + PartialEq>(ui: &mut egui::Ui, label: &str, table: &[(&'static str, T, &'static str)], value: &mut T, help: &str) {
    let l = ui.label(label);
    egui::ComboBox::from_id_salt(label)
        .selected_text(name_in(table, *value))
        .show_ui(ui, |ui| {
            for &(name, v, tip) in table {
                ui.selectable_value(value, v, name).on_hover_text(tip);
            }
        })
        .response
        .labelled_by(l.id)
        .on_hover_text(help);
    ui.end_row();
}

/// Turns the selected characters `range` of `text` into a hole of `tokens` tokens
/// (`[n]`), returning the new text.
pub fn make_hole(text: &str, range: std::ops::Range<usize>, tokens: usize) -> String {
    let start = text.char_indices().nth(range.start).map_or(text.len(), |(b, _)| b);
    let end = text.char_indices().nth(range.end).map_or(text.len(), |(b, _)| b);
    format!("{}[{}]{}", &text[..start], tokens.max(1), &text[end..])
}

const TEMPLATE_ID: &str = "infill-template";

/// The Text tab's state.
pub struct TextPanel {
    /// The model.
    pub slot: ModelSlot<LoadedText>,
    /// Generate or infill.
    pub mode: TextMode,
    /// The prompt to continue.
    pub prompt: String,
    /// The template to fill.
    pub template: String,
    /// Use the model's chat template (when it has one).
    pub chat: bool,
    /// Tokens to generate.
    pub gen_len: usize,
    /// Semi-autoregressive block length.
    pub block_len: usize,
    /// Model calls in all.
    pub steps: usize,
    /// Infilling: one model call per hole token.
    pub infill_auto_steps: bool,
    /// Sampling temperature (0: greedy).
    pub temperature: f64,
    /// Nucleus filter (1: off).
    pub top_p: f64,
    /// LLaDA's classifier-free guidance weight (0: off).
    pub guidance: f64,
    /// Which proposals are committed first.
    pub remasking: Remasking,
    /// Fast-dLLM parallel decoding threshold (`None`: the step schedule).
    pub threshold: Option<f64>,
    /// KV cache mode.
    pub cache: CacheMode,
    /// Seed of the next run.
    pub seed: u64,
    /// Draw a new seed for every run.
    pub new_seed_each_run: bool,
    /// The last result.
    pub last: LastRun<TextResult>,
    /// Where "Save" writes.
    pub save: SaveTarget,
    keep_controls: bool,
}

impl TextPanel {
    /// A panel loading `model` (when given) on `device`.
    pub fn new(model: Option<&Path>, device: Device, wake: Waker) -> Self {
        let loader = Arc::new(move |p: &Path| -> anyhow::Result<LoadedText> {
            let spec = p.display().to_string();
            let model = TextModel::load(&spec, &device, DType::F32)?;
            let defaults = GenerationDefaults::of_model(&spec)?;
            Ok(LoadedText { model, defaults })
        });
        let empty = "no text model: choose a folder (config.json, model.safetensors, tokenizer.json) or a GGUF file";
        Self {
            slot: ModelSlot::new(model, empty, "config.json", wake, loader),
            mode: TextMode::Generate,
            prompt: "Call me Ishmael. Some years ago".into(),
            template: "The [1 {cat,dog}] sat on the [1..3] and looked at the [2..5].".into(),
            chat: false,
            gen_len: 48,
            block_len: 8,
            steps: 48,
            infill_auto_steps: true,
            temperature: 0.8,
            top_p: 0.9,
            guidance: 0.0,
            remasking: Remasking::LowConfidence,
            threshold: None,
            cache: CacheMode::None,
            seed: 0,
            new_seed_each_run: false,
            last: LastRun::default(),
            save: SaveTarget::new("stipple-text.txt", "text", &["txt"]),
            keep_controls: false,
        }
    }

    /// Whether the loaded model has a chat template.
    fn has_chat(&self) -> bool {
        self.slot.ready().is_some_and(|m| m.model.tokenizer.has_chat_template())
    }

    /// The longest generation the model allows after the current prompt.
    fn max_gen_len(&self, m: &LoadedText) -> usize {
        let prompt_len = m.model.prompt_ids(&self.prompt, !self.chat).map(|ids| ids.len()).unwrap_or(0);
        m.model.lm.traits().max_len.map_or(512, |max| max.saturating_sub(prompt_len)).clamp(1, 512)
    }

    /// Moves finished work along; a new model sets the decoding its folder recommends.
    pub fn poll(&mut self) {
        if !self.slot.poll() {
            return;
        }
        if std::mem::take(&mut self.keep_controls) {
            return;
        }
        if let Some(m) = self.slot.ready().cloned() {
            self.chat = m.model.tokenizer.has_chat_template();
            if let Ok(s) = m.defaults.settle(&m.model, std::slice::from_ref(&self.prompt), !self.chat, &Requested::default()) {
                (self.gen_len, self.block_len, self.steps, self.temperature) = (s.gen_len, s.block_len, s.steps, s.temperature);
                self.top_p = s.top_p.unwrap_or(1.0);
            }
        }
    }

    fn name_of<T: Copy + PartialEq>(table: &[(&'static str, T, &'static str)], v: T) -> String {
        name_in(table, v).to_string()
    }

    fn params(&self) -> TextParams {
        TextParams {
            model: self.slot.path().map(|p| p.display().to_string()).unwrap_or_default(),
            mode: self.mode,
            prompt: if self.mode == TextMode::Infill { self.template.clone() } else { self.prompt.clone() },
            chat: self.chat,
            gen_len: self.gen_len,
            block_len: self.block_len,
            steps: if self.mode == TextMode::Infill && self.infill_auto_steps { 0 } else { self.steps },
            temperature: self.temperature,
            top_p: self.top_p,
            guidance: self.guidance,
            remasking: Self::name_of(&REMASKING, self.remasking),
            threshold: self.threshold,
            cache: Self::name_of(&CACHES, self.cache),
            seed: self.seed,
        }
    }

    /// Takes a recorded run's settings.
    pub fn apply(&mut self, p: &TextParams) {
        self.mode = p.mode;
        match p.mode {
            TextMode::Infill => self.template = p.prompt.clone(),
            TextMode::Generate => self.prompt = p.prompt.clone(),
        }
        (self.chat, self.gen_len, self.block_len, self.temperature, self.top_p, self.guidance, self.threshold, self.seed) =
            (p.chat, p.gen_len, p.block_len, p.temperature, p.top_p, p.guidance, p.threshold, p.seed);
        self.infill_auto_steps = p.mode == TextMode::Infill && p.steps == 0;
        if p.steps > 0 {
            self.steps = p.steps;
        }
        self.remasking = REMASKING.iter().find(|(n, ..)| *n == p.remasking).map_or(Remasking::LowConfidence, |r| r.1);
        self.cache = CACHES.iter().find(|(n, ..)| *n == p.cache).map_or(CacheMode::None, |c| c.1);
        self.new_seed_each_run = false;
        if self.slot.follow(&p.model) {
            self.keep_controls = true;
        }
    }

    fn config(&self) -> GenerateConfig {
        GenerateConfig {
            gen_len: self.gen_len,
            steps: self.steps.clamp(1, self.gen_len.max(1)),
            block_len: self.block_len.clamp(1, self.gen_len.max(1)),
            remasking: self.remasking,
            temperature: self.temperature,
            top_p: (self.top_p < 1.0).then_some(self.top_p),
            guidance: self.guidance,
            commit: self.threshold.map_or(CommitRule::Schedule, CommitRule::Threshold),
            cache: self.cache,
            seed: self.seed,
            ..GenerateConfig::default()
        }
    }

    /// Queues a run with the current settings.
    pub fn generate(&mut self, queue: &mut StudioQueue) {
        let Some(m) = self.slot.ready().cloned() else {
            self.last.failed(self.slot.describe());
            return;
        };
        if self.new_seed_each_run {
            self.seed = stipple_core::noise::random_seed();
        }
        let cfg = self.config();
        let params = self.params();
        let (mode, raw) = (self.mode, !self.chat);
        let template = match mode {
            TextMode::Infill => match Template::parse(&self.template) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.last.failed(format!("the template: {e}"));
                    return;
                }
            },
            TextMode::Generate => None,
        };
        let steps = (!self.infill_auto_steps).then_some(self.steps);
        let ticket = Ticket { tab: Tab::Text, params: Params::Text(params.clone()), inputs: Default::default() };
        queue.submit(ticket, move |reporter, cancel| {
            reporter.stage("decoding");
            let model = &m.model;
            let mut confidence: Vec<Option<f64>> = Vec::new();
            let mut last = CanvasPreview::default();
            let mut progress = |e: &StepEvent<'_, CanvasView>| {
                let preview = e.preview.and_then(|view| {
                    let (row, &start) = (view.rows.first()?, view.gen_start.first()?);
                    if confidence.len() != row.len() {
                        confidence = vec![None; row.len()];
                    }
                    for c in view.committed.first().into_iter().flatten() {
                        if let Some(slot) = confidence.get_mut(c.position) {
                            *slot = Some(c.confidence);
                        }
                    }
                    let p = CanvasPreview::new(model, &row[start..], &confidence[start..], view.mask_id);
                    last = p.clone();
                    Some(Preview::Text(p))
                });
                reporter.step(e.step, e.total, preview);
            };
            let result = match template {
                Some(t) => {
                    let opts = InfillOptions { steps, decode: cfg, context: None, cancel: cancel.clone() };
                    let out = infill(model, &t, &opts, Some(&mut progress))?;
                    let tokens = out.holes.iter().map(|h| h.ids.len()).sum();
                    let holes = out.holes.into_iter().map(|h| (h.name, h.text)).collect();
                    TextResult { mode, prompt: params.prompt, text: out.text, holes, canvas: last, nfe: out.nfe, tokens }
                }
                None => {
                    let (outs, run) = model.generate(std::slice::from_ref(&params.prompt), raw, &cfg, Some(&mut progress), cancel.clone())?;
                    let out = outs.into_iter().next().ok_or_else(|| anyhow::anyhow!("no output"))?;
                    TextResult { mode, prompt: params.prompt, tokens: out.generated_ids.len(), text: out.text, holes: Vec::new(), canvas: last, nfe: run.nfe }
                }
            };
            Ok(Output::Text(result))
        });
    }

    /// The text a result saves: the prompt and its continuation, or the filled template.
    pub fn saved_text(r: &TextResult) -> String {
        match r.mode {
            TextMode::Generate => format!("{}{}\n", r.prompt, r.text),
            TextMode::Infill => format!("{}\n", r.text),
        }
    }

    /// Writes a result into the history folder; returns the file name.
    pub fn record(dir: &Path, stem: &str, r: &TextResult) -> anyhow::Result<Vec<String>> {
        let name = format!("{stem}.txt");
        stipple_core::output::write_bytes(&dir.join(&name), Self::saved_text(r).as_bytes(), false)?;
        Ok(vec![name])
    }

    /// Shows a finished run.
    pub fn finish(&mut self, r: TextResult, seconds: f64, history_id: Option<u64>) {
        let stats = format!("{} tokens, {} model calls, {seconds:.2} s", r.tokens, r.nfe);
        self.last.done(r, stats, history_id);
    }

    fn controls_ui(&mut self, ui: &mut egui::Ui) {
        let max_len = self.slot.ready().map_or(512, |m| self.max_gen_len(m));
        egui::Grid::new("text-controls").num_columns(2).show(ui, |ui| {
            if self.mode == TextMode::Generate {
                widgets::slider_usize(ui, "Tokens", &mut self.gen_len, 1..=max_len.max(1)).on_hover_text("tokens to write after the prompt");
                self.block_len = self.block_len.clamp(1, self.gen_len.max(1));
                widgets::slider_usize(ui, "Block length", &mut self.block_len, 1..=self.gen_len.max(1))
                    .on_hover_text("the canvas is decoded block by block, left to right (semi-autoregressive); one block: all at once");
                let blocks = self.gen_len.div_ceil(self.block_len.max(1));
                self.steps = self.steps.clamp(blocks, self.gen_len.max(blocks));
                widgets::slider_usize(ui, "Steps", &mut self.steps, blocks..=self.gen_len.max(blocks)).on_hover_text("model calls in all; fewer commit more tokens per call (faster, rougher)");
            } else {
                ui.label("Steps");
                ui.horizontal(|ui| {
                    ui.checkbox(&mut self.infill_auto_steps, "one per hole token");
                    if !self.infill_auto_steps {
                        ui.add(egui::Slider::new(&mut self.steps, 1..=256)).on_hover_text("model calls in all");
                    }
                });
                ui.end_row();
            }
            widgets::slider_f64(ui, "Temperature", &mut self.temperature, 0.0..=2.0).on_hover_text("0: always the likeliest token (greedy)");
            widgets::slider_f64(ui, "Top-p", &mut self.top_p, 0.05..=1.0).on_hover_text("sample only from the likeliest tokens making up this probability (1: all)");
            if self.mode == TextMode::Generate {
                widgets::slider_f64(ui, "Guidance (CFG)", &mut self.guidance, 0.0..=3.0).on_hover_text("LLaDA's classifier-free guidance: how much more to follow the prompt (0: off)");
            }
            named_choice(ui, "Remasking", &REMASKING, &mut self.remasking, "which proposed tokens are committed first at each step");
            ui.label("Parallel decoding");
            ui.horizontal(|ui| {
                let mut on = self.threshold.is_some();
                ui.checkbox(&mut on, "threshold").on_hover_text("Fast-dLLM: commit every token at least this confident, not a fixed number per step (fewer model calls)");
                match (on, self.threshold) {
                    (true, None) => self.threshold = Some(0.9),
                    (false, Some(_)) => self.threshold = None,
                    _ => {}
                }
                if let Some(t) = &mut self.threshold {
                    ui.add(egui::Slider::new(t, 0.5..=0.99).max_decimals(2));
                }
            });
            ui.end_row();
            named_choice(ui, "Cache", &CACHES, &mut self.cache, "Fast-dLLM key/value caching between steps");
            widgets::seed(ui, &mut self.seed, &mut self.new_seed_each_run);
        });
    }

    fn template_ui(&mut self, ui: &mut egui::Ui) {
        let l = ui.label("Template");
        let id = egui::Id::unique(TEMPLATE_ID);
        ui.add(egui::TextEdit::multiline(&mut self.template).id(id).desired_rows(3).desired_width(f32::INFINITY).font(egui::TextStyle::Monospace)).labelled_by(l.id);
        ui.horizontal(|ui| {
            let selection = egui::TextEdit::load_state(ui.ctx(), id).and_then(|s| s.cursor.char_range()).filter(|r| !r.is_empty()).map(|r| {
                let (p, s) = (r.primary.index.0, r.secondary.index.0);
                let (a, b) = (p.min(s), p.max(s));
                a..b
            });
            if ui.add_enabled(selection.is_some(), egui::Button::new("Make hole from selection")).on_hover_text("replace the selected text with a hole of as many tokens").clicked()
                && let Some(range) = selection
            {
                let chosen: String = self.template.chars().skip(range.start).take(range.len()).collect();
                let tokens = self.slot.ready().and_then(|m| m.model.tokenizer.encode(&chosen, false).ok()).map_or(chosen.split_whitespace().count(), |ids| ids.len());
                self.template = make_hole(&self.template, range, tokens);
            }
            ui.weak("holes: [4] [1..3] [1 {cat,dog}] [4 /regex/] [3 chars:[a-z]]");
        });
        if let Err(e) = Template::parse(&self.template) {
            widgets::error(ui, &format!("the template: {e}"));
        }
    }

    /// Draws the tab.
    pub fn ui(&mut self, ui: &mut egui::Ui, queue: &mut StudioQueue) {
        self.slot.ui(ui, true);
        ui.horizontal(|ui| {
            ui.selectable_value(&mut self.mode, TextMode::Generate, "Continue a prompt").on_hover_text("write after a prompt, many tokens per step");
            ui.selectable_value(&mut self.mode, TextMode::Infill, "Fill a template").on_hover_text("fill the holes of a template, all at once");
            ui.separator();
            let has_chat = self.has_chat();
            ui.add_enabled_ui(has_chat && self.mode == TextMode::Generate, |ui| {
                ui.selectable_value(&mut self.chat, false, "Raw").on_hover_text("the prompt as it is");
                ui.selectable_value(&mut self.chat, true, "Chat").on_hover_text("wrap the prompt in the model's chat template (instruct models)");
            });
            if !has_chat {
                self.chat = false;
            }
        });
        match self.mode {
            TextMode::Generate => widgets::multiline(ui, "Prompt", &mut self.prompt, 3),
            TextMode::Infill => self.template_ui(ui),
        }
        self.controls_ui(ui);
        let progress = progress_of(queue, Tab::Text);
        if run_bar(ui, queue, progress.as_ref(), Tab::Text, self.slot.ready().is_some()) {
            self.generate(queue);
        }
        ui.separator();
        if let Some(Preview::Text(canvas)) = progress.as_ref().and_then(|p| p.preview.as_ref()) {
            if self.mode == TextMode::Generate {
                ui.label(egui::RichText::new(&self.prompt).strong());
            }
            ui.label(canvas.layout(ui));
        } else if let Some(r) = &self.last.result {
            if r.mode == TextMode::Generate {
                ui.label(egui::RichText::new(&r.prompt).strong());
            }
            if r.canvas.pieces.is_empty() {
                ui.label(&r.text);
            } else {
                ui.label(r.canvas.layout(ui)).on_hover_text("shading: how confident the model was when it committed each token");
            }
            for (name, text) in &r.holes {
                ui.weak(format!("hole {name}: {text:?}"));
            }
            self.last.stats_ui(ui);
            if let SaveAction::Write(path, overwrite) = self.save.ui(ui) {
                let text = Self::saved_text(r);
                self.save.save(&path, overwrite, |p, o| Ok(stipple_core::output::write_bytes(p, text.as_bytes(), o)?));
            }
        }
        self.last.error_ui(ui);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_selection_becomes_a_hole() {
        assert_eq!(make_hole("The cat sat.", 4..7, 1), "The [1] sat.");
        assert_eq!(make_hole("née café", 4..8, 2), "née [2]");
        assert_eq!(make_hole("abc", 0..3, 0), "[1]");
    }
}
