//! The text model's worker: one thread owns the model and runs the queued jobs in order.
//! Jobs that decode deterministically with the same settings are run together as one
//! left-padded batch (their results are the ones each would get alone); streamed jobs
//! report the finished prefix of their canvas after every step.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device};
use serde_json::json;
use stipple_core::discrete::Remasking;
use stipple_core::progress::{CancelToken, Progress, StepEvent};
use stipple_text::generate::CanvasView;
use stipple_text::generation_defaults::{GenerationDefaults, Requested};
use stipple_text::infill::{InfillOptions, InfillResult, Template, infill};
use stipple_text::tokenizer::Message;
use stipple_text::{CommitRule, GenerateConfig, TextModel};
use tokio::sync::{mpsc, oneshot};

use super::error::ApiError;
use super::metrics::Metrics;
use super::queue::{self, Intake, Queue};

/// What the model is asked to continue.
pub enum Prompt {
    /// Plain text (`/v1/completions`), with the tokenizer's special tokens.
    Raw(String),
    /// A conversation (`/v1/chat/completions`), through the model's chat template.
    Chat(Vec<Message>),
}

/// A generation request, as the handlers hand it over.
pub struct GenerateJob {
    /// The prompt.
    pub prompt: Prompt,
    /// Lengths, steps and sampling the client set (the rest from the model's defaults).
    pub asked: Requested,
    /// Everything else: remasking, commit rule, cache, guidance, early stop, seed.
    pub base: GenerateConfig,
    /// Completions wanted (each with the next seed).
    pub n: usize,
    /// Texts that end a completion (left out of it).
    pub stop: Vec<String>,
    /// Where a streamed job's events go (`None`: answered at the end only).
    pub stream: Option<StreamTo>,
    /// Set when the client leaves.
    pub cancel: CancelToken,
    /// The answer.
    pub reply: oneshot::Sender<Result<Vec<Choice>, ApiError>>,
}

/// A streamed job's receiver.
pub struct StreamTo {
    /// Events in order.
    pub events: mpsc::UnboundedSender<TextEvent>,
    /// Also send the whole canvas after every step.
    pub canvas: bool,
}

/// What a streamed job reports while it runs.
pub enum TextEvent {
    /// Text that follows what was sent before for completion `index`.
    Delta {
        /// The completion.
        index: usize,
        /// The new text.
        text: String,
    },
    /// The whole canvas of completion `index` after a step (`"stipple": {"canvas": true}`).
    Canvas(serde_json::Value),
}

/// A template-infilling request (`/v1/infill`, and `/v1/completions` with a `suffix`).
pub struct InfillJob {
    /// The template.
    pub template: Template,
    /// Steps, decoding, context and the cancel token.
    pub opts: InfillOptions,
    /// The answer.
    pub reply: oneshot::Sender<Result<InfillResult, ApiError>>,
}

/// A job for the text worker.
pub enum TextJob {
    /// Continue a prompt.
    Generate(GenerateJob),
    /// Fill a template's holes.
    Infill(InfillJob),
}

/// One finished completion.
#[derive(Clone, Debug)]
pub struct Choice {
    /// Its place among the request's `n`.
    pub index: usize,
    /// The text, cut at end-of-text and at the first stop text.
    pub text: String,
    /// `stop` (end-of-text or a stop text) or `length` (the canvas ran out).
    pub finish_reason: &'static str,
    /// Prompt tokens (after the chat template).
    pub prompt_tokens: usize,
    /// Tokens generated up to end-of-text.
    pub completion_tokens: usize,
}

/// What the handlers need to know of the loaded model.
#[derive(Clone, Debug)]
pub struct TextInfo {
    /// The id clients name it by.
    pub id: String,
    /// Longest canvas (prompt + generated) it reads, when known.
    pub max_len: Option<usize>,
}

/// Loads the model on its own thread and starts serving `capacity` waiting jobs;
/// returns once it has loaded (or failed to).
pub fn start(source: String, id: String, device: Device, dtype: DType, quantize: Option<GgmlDType>, capacity: usize, max_batch: usize, metrics: Arc<Metrics>) -> Result<(Queue<TextJob>, TextInfo)> {
    let (queue, intake) = queue::bounded("text", capacity);
    let info = queue::spawn_owner(
        "text",
        move || {
            let source = stipple_text::gguf::localize(&source)?;
            let model = TextModel::load_quantized(&source, &device, dtype, quantize).with_context(|| format!("loading {source}"))?;
            Ok((model, GenerationDefaults::of_model(&source)?))
        },
        move |(model, _)| TextInfo { id, max_len: model.lm.traits().max_len },
        move |(model, defaults)| Worker { model, defaults, intake, max_batch: max_batch.max(1), metrics, waiting: VecDeque::new() }.run(),
    )?;
    Ok((queue, info))
}

struct Worker {
    model: TextModel,
    defaults: GenerationDefaults,
    intake: Intake<TextJob>,
    max_batch: usize,
    metrics: Arc<Metrics>,
    /// Jobs taken off the queue while looking for batch mates, in arrival order.
    waiting: VecDeque<TextJob>,
}

/// A generation job with its prompt tokenized and its settings resolved.
struct Prepared {
    job: GenerateJob,
    ids: Vec<u32>,
    cfg: GenerateConfig,
    /// Tokens of the canvas that make the completion (`max_tokens`; the canvas may be
    /// longer, rounded up to whole blocks of the model's length).
    keep: usize,
    /// Jobs with the same key (and `Some`) may run as one batch.
    batch_key: Option<String>,
}

impl Worker {
    fn run(mut self) {
        loop {
            let job = match self.waiting.pop_front() {
                Some(j) => j,
                None => match self.intake.next() {
                    Some(j) => j,
                    None => return,
                },
            };
            queue::survive("text", || match job {
                TextJob::Infill(j) => self.infill(j),
                TextJob::Generate(j) => self.generate(j),
            });
        }
    }

    fn infill(&mut self, job: InfillJob) {
        self.intake.started(1);
        let started = Instant::now();
        let result = if job.opts.cancel.is_cancelled() {
            Err(ApiError::from_generation(&anyhow::Error::from(stipple_core::Error::Cancelled)))
        } else {
            infill(&self.model, &job.template, &job.opts, None).map_err(|e| ApiError::from_generation(&e.into()))
        };
        if let Ok(r) = &result {
            Metrics::add(&self.metrics.tokens, r.holes.iter().map(|h| h.ids.len() as u64).sum());
            Metrics::add(&self.metrics.text_micros, started.elapsed().as_micros() as u64);
        }
        self.count_cancelled(&result);
        let _ = job.reply.send(result);
        self.intake.finished(1, started.elapsed());
    }

    fn generate(&mut self, job: GenerateJob) {
        let first = match self.prepare(job) {
            Ok(p) => p,
            Err(()) => return,
        };
        let Some(key) = first.batch_key.clone() else {
            self.intake.started(1);
            let started = Instant::now();
            self.run_alone(first);
            self.intake.finished(1, started.elapsed());
            return;
        };
        // batch mates: jobs already queued with the same settings
        while let Some(j) = self.intake.try_next() {
            self.waiting.push_back(j);
        }
        let mut batch = vec![first];
        let mut rest = VecDeque::new();
        while let Some(j) = self.waiting.pop_front() {
            match j {
                TextJob::Generate(g) if batch.len() < self.max_batch => match self.prepare(g) {
                    Ok(p) if p.batch_key.as_deref() == Some(&key) => batch.push(p),
                    Ok(p) => rest.push_back(TextJob::Generate(p.job)),
                    Err(()) => {}
                },
                other => rest.push_back(other),
            }
        }
        self.waiting = rest;
        self.intake.started(batch.len());
        let started = Instant::now();
        let n = batch.len();
        self.run_batch(batch);
        self.intake.finished(n, started.elapsed());
    }

    /// Tokenizes and settles a job, answering it with the error when it cannot run.
    fn prepare(&mut self, job: GenerateJob) -> std::result::Result<Prepared, ()> {
        match self.resolve(&job) {
            Ok((ids, cfg, keep)) => {
                let batch_key = batchable(&job, &cfg).then(|| format!("{:?}", (cfg.gen_len, cfg.steps, cfg.block_len, cfg.remasking, cfg.commit, cfg.cache, cfg.guidance, cfg.early_stop, cfg.eps)));
                Ok(Prepared { job, ids, cfg, keep, batch_key })
            }
            Err(e) => {
                // counted as started and finished at once
                self.intake.started(1);
                let _ = job.reply.send(Err(e));
                self.intake.finished(1, std::time::Duration::ZERO);
                Err(())
            }
        }
    }

    /// The prompt's ids, the decoding settings, and how many generated tokens make the
    /// completion.
    fn resolve(&self, job: &GenerateJob) -> std::result::Result<(Vec<u32>, GenerateConfig, usize), ApiError> {
        let ids = match &job.prompt {
            Prompt::Raw(p) => self.model.prompt_ids(p, true),
            Prompt::Chat(m) => self.model.chat_ids(m),
        }
        .map_err(|e| ApiError::from_generation(&e.into()))?;
        // clients pick any max_tokens; a model that decodes in blocks gets its canvas
        // rounded up to whole blocks, and the completion is cut at max_tokens
        let mut asked = job.asked;
        if let (Some(n), None, Some(b)) = (asked.gen_len, asked.block_len, self.defaults.block_len)
            && b > 0
            && let Some(whole) = n.checked_next_multiple_of(b)
        {
            asked.gen_len = Some(whole);
        }
        if let Some(max) = self.model.lm.traits().max_len {
            let canvas = asked.gen_len.unwrap_or(1);
            if ids.len().saturating_add(canvas) > max {
                return Err(ApiError::bad_request(format!(
                    "this model's maximum context length is {max} tokens; the prompt has {} tokens and {canvas} more were asked for",
                    ids.len()
                ))
                .code("context_length_exceeded")
                .param(if matches!(job.prompt, Prompt::Chat(_)) { "messages" } else { "prompt" }));
            }
        }
        let s = self.defaults.settle_for_prompt_len(&self.model, ids.len(), &asked).map_err(|e| ApiError::from_generation(&e.into()))?;
        let cfg = GenerateConfig { gen_len: s.gen_len, steps: s.steps, block_len: s.block_len, temperature: s.temperature, top_p: s.top_p, top_k: s.top_k, ..job.base.clone() };
        cfg.validate().map_err(|e| ApiError::from_generation(&e.into()))?;
        Ok((ids, cfg, job.asked.gen_len.unwrap_or(s.gen_len).min(s.gen_len)))
    }

    /// A job run by itself: `n` completions, each with the next seed, streamed if asked.
    fn run_alone(&mut self, p: Prepared) {
        let Prepared { job, ids, cfg, keep, .. } = p;
        let mut choices = Vec::new();
        let started = Instant::now();
        for index in 0..job.n {
            let cfg = GenerateConfig { seed: cfg.seed.wrapping_add(index as u64), ..cfg.clone() };
            // this completion's own token: a stop text ends it, not the request's others
            let run = CancelToken::new();
            let mut watch = StepWatch { model: &self.model, keep, index, stream: job.stream.as_ref(), stop: &job.stop, client: &job.cancel, run: &run, sent: String::new(), confidence: Vec::new(), stopped: false };
            let result = if job.cancel.is_cancelled() {
                Err(stipple_text::Error::Core(stipple_core::Error::Cancelled))
            } else {
                self.model.generate_ids(std::slice::from_ref(&ids), &cfg, Some(&mut watch), run.clone())
            };
            Metrics::add(&self.metrics.text_runs, 1);
            Metrics::add(&self.metrics.text_rows, 1);
            let choice = match result {
                Ok((outs, _)) => {
                    let c = self.choice(index, &outs[0].generated_ids[..keep], ids.len(), &job.stop);
                    watch.finish(&c.text);
                    c
                }
                // a stop text was reached while streaming: what was sent is the completion
                Err(_) if watch.stopped => Choice { index, text: watch.sent.clone(), finish_reason: "stop", prompt_tokens: ids.len(), completion_tokens: self.model.tokenizer.encode(&watch.sent, false).map(|t| t.len()).unwrap_or(0) },
                Err(e) => {
                    let e = ApiError::from_generation(&e.into());
                    if e.status.as_u16() == 499 {
                        Metrics::add(&self.metrics.cancelled, 1);
                    }
                    let _ = job.reply.send(Err(e));
                    return;
                }
            };
            Metrics::add(&self.metrics.tokens, choice.completion_tokens as u64);
            choices.push(choice);
        }
        Metrics::add(&self.metrics.text_micros, started.elapsed().as_micros() as u64);
        let _ = job.reply.send(Ok(choices));
    }

    /// Jobs with the same settings decoded together as one batch.
    fn run_batch(&mut self, batch: Vec<Prepared>) {
        let (batch, gone): (Vec<_>, Vec<_>) = batch.into_iter().partition(|p| !p.job.cancel.is_cancelled());
        for p in gone {
            Metrics::add(&self.metrics.cancelled, 1);
            let _ = p.job.reply.send(Err(ApiError::from_generation(&anyhow::Error::from(stipple_core::Error::Cancelled))));
        }
        let Some(first) = batch.first() else { return };
        let cfg = first.cfg.clone();
        let ids: Vec<Vec<u32>> = batch.iter().map(|p| p.ids.clone()).collect();
        // the batch stops when every one of its clients has left
        let cancel = CancelToken::new();
        let tokens: Vec<CancelToken> = batch.iter().map(|p| p.job.cancel.clone()).collect();
        let mut watch = |_: &StepEvent<'_, CanvasView>| {
            if tokens.iter().all(CancelToken::is_cancelled) {
                cancel.cancel();
            }
        };
        let started = Instant::now();
        let result = self.model.generate_ids(&ids, &cfg, Some(&mut watch), cancel.clone());
        Metrics::add(&self.metrics.text_runs, 1);
        Metrics::add(&self.metrics.text_rows, batch.len() as u64);
        Metrics::add(&self.metrics.text_micros, started.elapsed().as_micros() as u64);
        match result {
            Ok((outs, _)) => {
                for (p, out) in batch.into_iter().zip(outs) {
                    let c = self.choice(0, &out.generated_ids[..p.keep], p.ids.len(), &p.job.stop);
                    Metrics::add(&self.metrics.tokens, c.completion_tokens as u64);
                    let _ = p.job.reply.send(Ok(vec![c]));
                }
            }
            Err(e) => {
                let e = ApiError::from_generation(&e.into());
                if e.status.as_u16() == 499 {
                    Metrics::add(&self.metrics.cancelled, batch.len() as u64);
                }
                for p in batch {
                    let _ = p.job.reply.send(Err(e.clone()));
                }
            }
        }
    }

    /// The completion made of `generated` (the kept part of the canvas).
    fn choice(&self, index: usize, generated: &[u32], prompt_tokens: usize, stop: &[String]) -> Choice {
        let eos = &self.model.lm.traits().eos_ids;
        let end = generated.iter().position(|t| eos.contains(t));
        let text = self.model.text_of(generated).unwrap_or_default();
        let (text, stopped) = cut_at_stop(&text, stop);
        Choice {
            index,
            finish_reason: if end.is_some() || stopped { "stop" } else { "length" },
            completion_tokens: if stopped { self.model.tokenizer.encode(&text, false).map(|t| t.len()).unwrap_or(0) } else { end.unwrap_or(generated.len()) },
            text,
            prompt_tokens,
        }
    }

    fn count_cancelled<T>(&self, r: &std::result::Result<T, ApiError>) {
        if matches!(r, Err(e) if e.status.as_u16() == 499) {
            Metrics::add(&self.metrics.cancelled, 1);
        }
    }
}

/// Whether a job may share a batch: no stream, one completion, and a decoding that draws
/// no random numbers (greedy, deterministic commits), so one batch seed changes nothing.
fn batchable(job: &GenerateJob, cfg: &GenerateConfig) -> bool {
    let random_commit = matches!(cfg.commit, CommitRule::Origin) || cfg.alg_temp.is_some() || cfg.remasking == Remasking::Random;
    job.stream.is_none() && job.n == 1 && !random_commit && cfg.temperature == 0.0
}

/// `text` up to the first of the `stop` texts, and whether one was found.
pub fn cut_at_stop(text: &str, stop: &[String]) -> (String, bool) {
    match stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min() {
        Some(at) => (text[..at].to_string(), true),
        None => (text.to_string(), false),
    }
}

/// Follows a single-row run: sends the text of the canvas's finished prefix as it grows,
/// the whole canvas when asked, and stops the run at a stop text or when the client left.
struct StepWatch<'a> {
    model: &'a TextModel,
    /// Generated tokens that make the completion.
    keep: usize,
    index: usize,
    stream: Option<&'a StreamTo>,
    stop: &'a [String],
    /// Set when the client leaves.
    client: &'a CancelToken,
    /// Stops this run.
    run: &'a CancelToken,
    /// Text sent so far.
    sent: String,
    /// Confidence each canvas position was committed with.
    confidence: Vec<Option<f64>>,
    /// A stop text was reached.
    stopped: bool,
}

impl StepWatch<'_> {
    fn send(&self, event: TextEvent) {
        if let Some(s) = self.stream
            && s.events.send(event).is_err()
        {
            // the client has gone
            self.client.cancel();
            self.run.cancel();
        }
    }

    /// Sends what `text` adds to what was sent.
    fn send_text(&mut self, text: &str) {
        if let Some(new) = text.strip_prefix(self.sent.as_str())
            && !new.is_empty()
        {
            self.send(TextEvent::Delta { index: self.index, text: new.to_string() });
            self.sent = text.to_string();
        }
    }

    /// The finished completion's text, once the run is over.
    fn finish(&mut self, text: &str) {
        if self.stream.is_some() {
            self.send_text(text);
        }
    }
}

impl Progress<CanvasView> for StepWatch<'_> {
    fn on_step(&mut self, event: &StepEvent<'_, CanvasView>) {
        if self.client.is_cancelled() {
            self.run.cancel();
        }
        let Some(stream) = self.stream else { return };
        let Some(view) = event.preview else { return };
        let (Some(row), Some(&start)) = (view.rows.first(), view.gen_start.first()) else { return };
        if self.confidence.len() != row.len() {
            self.confidence = vec![None; row.len()];
        }
        for c in view.committed.first().into_iter().flatten() {
            if let Some(slot) = self.confidence.get_mut(c.position) {
                *slot = Some(c.confidence);
            }
        }
        let generated = &row[start..];
        if stream.canvas {
            let pieces = self.model.token_pieces(generated);
            let tokens: Vec<serde_json::Value> = generated
                .iter()
                .zip(&pieces)
                .zip(&self.confidence[start..])
                .map(|((&id, piece), conf)| if id == view.mask_id { serde_json::Value::Null } else { json!({ "id": id, "text": piece, "confidence": conf }) })
                .collect();
            let masked = generated.iter().filter(|&&t| t == view.mask_id).count();
            self.send(TextEvent::Canvas(json!({
                "object": "stipple.canvas",
                "index": self.index,
                "step": event.step,
                "total": event.total,
                "nfe": view.nfe,
                "block": view.block,
                "masked": masked,
                "tokens": tokens,
            })));
        }
        // the finished prefix: every kept position up to the first undecided one
        let generated = &generated[..self.keep.min(generated.len())];
        let done = generated.iter().position(|&t| t == view.mask_id).unwrap_or(generated.len());
        let Ok(text) = self.model.text_of(&generated[..done]) else { return };
        // a multi-byte character split across tokens waits for its last token
        let text = if done < generated.len() { text.trim_end_matches('\u{FFFD}') } else { &text };
        let (text, stopped) = cut_at_stop(text, self.stop);
        // a stop text may still be forming at the end: hold back what could begin one
        let hold = if stopped { 0 } else { self.stop.iter().map(|s| longest_prefix_suffix(&text, s)).max().unwrap_or(0) };
        self.send_text(&text[..text.len() - hold]);
        if stopped {
            self.stopped = true;
            self.run.cancel();
        }
    }
}

/// Bytes at the end of `text` that are the beginning of `stop` (0 if none).
fn longest_prefix_suffix(text: &str, stop: &str) -> usize {
    (1..stop.len().min(text.len() + 1)).rev().find(|&k| stop.is_char_boundary(k) && text.ends_with(&stop[..k])).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_texts_cut_and_hold_back() {
        assert_eq!(cut_at_stop("one. two. three", &[". t".into(), "hree".into()]), ("one".into(), true));
        assert_eq!(cut_at_stop("abc", &["".into()]), ("abc".into(), false));
        assert_eq!(longest_prefix_suffix("the end", "END"), 0);
        assert_eq!(longest_prefix_suffix("the en", "end."), 2);
        assert_eq!(longest_prefix_suffix("x", "xyz"), 1);
    }
}
