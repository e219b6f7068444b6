//! OpenAI's text endpoints — `/v1/models`, `/v1/completions` (with fill-in-the-middle
//! `suffix`), `/v1/chat/completions` — and stipple's `/v1/infill`, translated into the
//! text worker's jobs. Streams are OpenAI's server-sent chunks: the canvas's finished
//! prefix as ordinary deltas, and, with `"stipple": {"canvas": true}`, `stipple.canvas`
//! events with the whole canvas after every step.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use stipple_core::discrete::Remasking;
use stipple_core::progress::CancelToken;
use stipple_text::generation_defaults::Requested;
use stipple_text::infill::{Hole, InfillOptions, InfillResult, Template};
use stipple_text::tokenizer::Message;
use stipple_text::{CacheMode, CommitRule, GenerateConfig};
use tokio::sync::{mpsc, oneshot};

use super::error::{ApiError, ApiJson};
use super::text_worker::{Choice, GenerateJob, InfillJob, Prompt, StreamTo, TextEvent, TextJob};
use super::{CancelGuard, Shared, unix_now};

/// Most completions one request may ask for (`n`).
const MAX_N: usize = 16;
/// The hole's length of a fill-in-the-middle request without `max_tokens` (OpenAI's
/// completions default).
const FIM_DEFAULT_TOKENS: usize = 16;

/// stipple's own decoding options, in a request's `"stipple"` object.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct StippleText {
    /// Denoising steps (default: one per generated token).
    steps: Option<usize>,
    /// Semi-autoregressive block length (default: the whole length).
    #[serde(alias = "block_len")]
    block_length: Option<usize>,
    /// low_confidence (default), random, margin or entropy.
    remasking: Option<String>,
    /// Fast-dLLM parallel decoding: commit every proposal at least this confident.
    threshold: Option<f64>,
    /// Fast-dLLM factor-based parallel decoding.
    factor: Option<f64>,
    /// none (default), prefix or dual.
    cache: Option<String>,
    /// LLaDA's classifier-free guidance weight (0: off).
    cfg: Option<f64>,
    /// Stop after the block in which end-of-text appeared.
    early_stop: Option<bool>,
    /// Top-k sampling (with a temperature above 0).
    top_k: Option<usize>,
    /// Send `stipple.canvas` events with the whole canvas after every step (streams only).
    canvas: Option<bool>,
    /// `/v1/infill`: text the model reads before the template.
    context: Option<String>,
}

/// A string or a list of strings (`prompt`, `stop`).
#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Debug, Default)]
struct StreamOptions {
    include_usage: Option<bool>,
}

/// The sampling and streaming fields chat and completion requests share.
#[derive(Deserialize, Debug)]
pub struct Sampling {
    temperature: Option<f64>,
    top_p: Option<f64>,
    n: Option<usize>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    stop: Option<OneOrMany>,
    seed: Option<u64>,
    stipple: Option<StippleText>,
}

/// `POST /v1/completions`.
#[derive(Deserialize, Debug)]
pub struct CompletionRequest {
    model: String,
    prompt: OneOrMany,
    suffix: Option<String>,
    max_tokens: Option<usize>,
    #[serde(default)]
    echo: bool,
    #[serde(flatten)]
    sampling: Sampling,
}

/// One chat message; `content` is a string or OpenAI's list of text parts.
#[derive(Deserialize, Debug)]
struct ChatMessage {
    role: String,
    content: Option<Content>,
}

#[derive(Deserialize, Debug)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Deserialize, Debug)]
struct ContentPart {
    #[serde(rename = "type")]
    kind: String,
    text: Option<String>,
}

/// `POST /v1/chat/completions`.
#[derive(Deserialize, Debug)]
pub struct ChatRequest {
    model: String,
    messages: Vec<ChatMessage>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    #[serde(flatten)]
    sampling: Sampling,
}

/// `POST /v1/infill`: stipple's template syntax.
#[derive(Deserialize, Debug)]
pub struct InfillRequest {
    model: String,
    template: String,
    context: Option<String>,
    steps: Option<usize>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    seed: Option<u64>,
    stipple: Option<StippleText>,
}

/// `GET /v1/models`.
pub async fn models(State(state): State<Shared>) -> Response {
    let created = unix_now();
    let mut data = Vec::new();
    let entry = |id: &str, details: Value| json!({ "id": id, "object": "model", "created": created, "owned_by": "stipple", "stipple": details });
    if let Some((_, i)) = &state.text {
        data.push(entry(&i.id, json!({ "kind": "text", "context_length": i.max_len })));
    }
    if let Some((_, i)) = &state.image {
        data.push(entry(&i.id, json!({ "kind": "image", "native_size": format!("{}x{}", i.native.0, i.native.1), "sampler": i.defaults.0, "steps": i.defaults.1, "guidance": i.defaults.2 })));
    }
    if let Some((_, id)) = &state.music {
        data.push(entry(id, json!({ "kind": "music" })));
    }
    axum::Json(json!({ "object": "list", "data": data })).into_response()
}

/// `GET /v1/models/{id}`.
pub async fn model(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ApiError> {
    if !state.model_ids().contains(&id) {
        return Err(ApiError::unknown_model(&id, &state.model_ids()));
    }
    Ok(axum::Json(json!({ "id": id, "object": "model", "created": unix_now(), "owned_by": "stipple" })).into_response())
}

/// The text model's queue, when `model` names it.
fn text_queue<'a>(state: &'a Shared, model: &str) -> Result<&'a super::queue::Queue<TextJob>, ApiError> {
    match &state.text {
        Some((q, info)) if info.id == model => Ok(q),
        _ => Err(ApiError::unknown_model(model, &state.model_ids())),
    }
}

fn remasking(name: &str) -> Result<Remasking, ApiError> {
    Ok(match name.replace('-', "_").as_str() {
        "low_confidence" | "maskgit_plus" => Remasking::LowConfidence,
        "random" => Remasking::Random,
        "margin" | "topk_margin" => Remasking::Margin,
        "entropy" => Remasking::Entropy,
        other => return Err(ApiError::invalid(format!("unknown remasking {other:?}: use low_confidence, random, margin or entropy")).param("stipple.remasking")),
    })
}

fn cache(name: &str) -> Result<CacheMode, ApiError> {
    Ok(match name {
        "none" => CacheMode::None,
        "prefix" => CacheMode::Prefix,
        "dual" => CacheMode::Dual,
        other => return Err(ApiError::invalid(format!("unknown cache {other:?}: use none, prefix or dual")).param("stipple.cache")),
    })
}

/// The decoding settings of a request (`seed` 0 when none is given, as the CLI's).
fn decoding(opts: &StippleText, temperature: Option<f64>, seed: Option<u64>) -> Result<GenerateConfig, ApiError> {
    let mut cfg = GenerateConfig { seed: seed.unwrap_or(0), guidance: opts.cfg.unwrap_or(0.0), early_stop: opts.early_stop.unwrap_or(false), temperature: temperature.unwrap_or(0.0), top_k: opts.top_k, ..GenerateConfig::default() };
    if let Some(r) = &opts.remasking {
        cfg.remasking = remasking(r)?;
    }
    if let Some(c) = &opts.cache {
        cfg.cache = cache(c)?;
    }
    cfg.commit = match (opts.threshold, opts.factor) {
        (Some(_), Some(_)) => return Err(ApiError::invalid("give stipple.threshold or stipple.factor, not both").param("stipple.threshold")),
        (Some(t), None) => CommitRule::Threshold(t),
        (None, Some(f)) => CommitRule::Factor(f),
        (None, None) => CommitRule::Schedule,
    };
    Ok(cfg)
}

fn check_n(n: Option<usize>) -> Result<usize, ApiError> {
    let n = n.unwrap_or(1);
    if !(1..=MAX_N).contains(&n) {
        return Err(ApiError::invalid(format!("n must be 1 to {MAX_N}, got {n}")).param("n"));
    }
    Ok(n)
}

fn check_max_tokens(n: Option<usize>, name: &str) -> Result<(), ApiError> {
    if n == Some(0) {
        return Err(ApiError::invalid(format!("{name} must be at least 1")).param(name));
    }
    Ok(())
}

/// What a text request turns into, before its kind's response is written.
struct TextCall {
    prompt: Prompt,
    asked: Requested,
    base: GenerateConfig,
    n: usize,
    stop: Vec<String>,
    canvas: bool,
}

/// `POST /v1/completions`.
pub async fn completions(State(state): State<Shared>, ApiJson(req): ApiJson<CompletionRequest>) -> Result<Response, ApiError> {
    state.refuse_if_shutting_down()?;
    let sampling = req.sampling;
    let queue = text_queue(&state, &req.model)?;
    let opts = sampling.stipple.unwrap_or_default();
    check_max_tokens(req.max_tokens, "max_tokens")?;
    let n = check_n(sampling.n)?;
    let prompts = req.prompt.into_vec();
    if prompts.is_empty() {
        return Err(ApiError::invalid("prompt is empty").param("prompt"));
    }
    let base = decoding(&opts, sampling.temperature, sampling.seed)?;
    let stop = sampling.stop.map(OneOrMany::into_vec).unwrap_or_default();
    let writer = Writer { kind: Kind::Completion, id: state.response_id("cmpl"), model: req.model.clone(), include_usage: sampling.stream_options.and_then(|o| o.include_usage).unwrap_or(false) };
    if let Some(suffix) = req.suffix {
        // fill in the middle: one hole of up to max_tokens between the prompt and the suffix
        if prompts.len() != 1 || n != 1 {
            return Err(ApiError::invalid("a request with a suffix takes one prompt and n = 1").param("suffix"));
        }
        let len = req.max_tokens.unwrap_or(FIM_DEFAULT_TOKENS);
        let template = Template::new().text(prompts[0].clone()).hole(Hole::range(0, len)).text(suffix);
        let decode = GenerateConfig { top_p: sampling.top_p, ..base };
        let (cancel, _guard) = state.track();
        let result = run_infill(queue, template, InfillOptions { steps: opts.steps, decode, context: None, cancel }).await?;
        let text = result.holes.first().map(|h| h.text.clone()).unwrap_or_default();
        let (text, _) = super::text_worker::cut_at_stop(&text, &stop);
        let choice = Choice { index: 0, completion_tokens: result.holes.first().map_or(0, |h| h.ids.len()), text, finish_reason: "stop", prompt_tokens: result.ids.len().saturating_sub(result.holes.first().map_or(0, |h| h.ids.len())) };
        return Ok(if sampling.stream { writer.finished_stream(vec![choice]) } else { writer.body(&[choice]).into_response() });
    }
    let asked = Requested { gen_len: req.max_tokens, block_len: opts.block_length, steps: opts.steps, temperature: sampling.temperature, top_p: sampling.top_p, top_k: opts.top_k };
    if sampling.stream {
        if prompts.len() != 1 {
            return Err(ApiError::invalid("a streamed request takes one prompt").param("prompt"));
        }
        let call = TextCall { prompt: Prompt::Raw(prompts[0].clone()), asked, base, n, stop, canvas: opts.canvas.unwrap_or(false) };
        return stream(&state, queue, call, writer).await;
    }
    // several prompts: one job each (they may be decoded as one batch), choices in order
    let mut pending = Vec::new();
    let (cancel, _guard) = state.track();
    for p in &prompts {
        let call = TextCall { prompt: Prompt::Raw(p.clone()), asked: asked.clone(), base: base.clone(), n, stop: stop.clone(), canvas: false };
        pending.push(submit(queue, call, None, cancel.clone())?);
    }
    let mut choices = Vec::new();
    for (i, rx) in pending.into_iter().enumerate() {
        for mut c in answer(rx).await? {
            c.index = i * n + c.index;
            if req.echo {
                c.text = format!("{}{}", prompts[i], c.text);
            }
            choices.push(c);
        }
    }
    Ok(writer.body(&choices).into_response())
}

/// `POST /v1/chat/completions`.
pub async fn chat(State(state): State<Shared>, ApiJson(req): ApiJson<ChatRequest>) -> Result<Response, ApiError> {
    state.refuse_if_shutting_down()?;
    let sampling = req.sampling;
    let queue = text_queue(&state, &req.model)?;
    let opts = sampling.stipple.unwrap_or_default();
    check_max_tokens(req.max_tokens, "max_tokens")?;
    check_max_tokens(req.max_completion_tokens, "max_completion_tokens")?;
    let n = check_n(sampling.n)?;
    if req.messages.is_empty() {
        return Err(ApiError::invalid("messages is empty").param("messages"));
    }
    let mut messages = Vec::new();
    for (i, m) in req.messages.into_iter().enumerate() {
        let content = match m.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.kind.as_str(), p.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        (kind, _) => return Err(ApiError::invalid(format!("content parts of type {kind:?} are not supported (text only)")).param(&format!("messages[{i}].content"))),
                    }
                }
                text
            }
        };
        messages.push(Message { role: m.role, content });
    }
    let base = decoding(&opts, sampling.temperature, sampling.seed)?;
    let asked = Requested { gen_len: req.max_completion_tokens.or(req.max_tokens), block_len: opts.block_length, steps: opts.steps, temperature: sampling.temperature, top_p: sampling.top_p, top_k: opts.top_k };
    let call = TextCall { prompt: Prompt::Chat(messages), asked, base, n, stop: sampling.stop.map(OneOrMany::into_vec).unwrap_or_default(), canvas: opts.canvas.unwrap_or(false) };
    let writer = Writer { kind: Kind::Chat, id: state.response_id("chatcmpl"), model: req.model.clone(), include_usage: sampling.stream_options.and_then(|o| o.include_usage).unwrap_or(false) };
    if sampling.stream {
        return stream(&state, queue, call, writer).await;
    }
    let (cancel, _guard) = state.track();
    let choices = answer(submit(queue, call, None, cancel)?).await?;
    Ok(writer.body(&choices).into_response())
}

/// `POST /v1/infill`.
pub async fn infill(State(state): State<Shared>, ApiJson(req): ApiJson<InfillRequest>) -> Result<Response, ApiError> {
    state.refuse_if_shutting_down()?;
    let queue = text_queue(&state, &req.model)?;
    let opts = req.stipple.unwrap_or_default();
    let template = Template::parse(&req.template).map_err(|e| ApiError::invalid(e.to_string()).param("template"))?;
    let decode = GenerateConfig { top_p: req.top_p, ..decoding(&opts, req.temperature, req.seed)? };
    let (cancel, _guard) = state.track();
    let context = req.context.or(opts.context);
    let r = run_infill(queue, template, InfillOptions { steps: req.steps.or(opts.steps), decode, context, cancel }).await?;
    let generated: usize = r.holes.iter().map(|h| h.ids.len()).sum();
    let holes: Vec<Value> = r.holes.iter().map(|h| json!({ "name": h.name, "text": h.text, "tokens": h.ids.len(), "confidences": h.confidences })).collect();
    Ok(axum::Json(json!({
        "id": state.response_id("infill"),
        "object": "stipple.infill",
        "created": unix_now(),
        "model": req.model,
        "text": r.text,
        "holes": holes,
        "nfe": r.nfe,
        "elapsed_ms": r.elapsed_ms,
        "usage": { "prompt_tokens": r.ids.len() - generated, "completion_tokens": generated, "total_tokens": r.ids.len() },
    }))
    .into_response())
}

async fn run_infill(queue: &super::queue::Queue<TextJob>, template: Template, opts: InfillOptions) -> Result<InfillResult, ApiError> {
    let (reply, rx) = oneshot::channel();
    queue.submit(TextJob::Infill(InfillJob { template, opts, reply }))?;
    answer(rx).await
}

fn submit(queue: &super::queue::Queue<TextJob>, call: TextCall, stream: Option<StreamTo>, cancel: CancelToken) -> Result<oneshot::Receiver<Result<Vec<Choice>, ApiError>>, ApiError> {
    let (reply, rx) = oneshot::channel();
    queue.submit(TextJob::Generate(GenerateJob { prompt: call.prompt, asked: call.asked, base: call.base, n: call.n, stop: call.stop, stream, cancel, reply }))?;
    Ok(rx)
}

async fn answer<T>(rx: oneshot::Receiver<Result<T, ApiError>>) -> Result<T, ApiError> {
    rx.await.map_err(|_| ApiError::internal("the text model failed on this request (see the server's log)"))?
}

/// A streamed request: waits until the job has sent its first event (so errors found
/// before decoding get their own status), then streams server-sent events.
async fn stream(state: &Shared, queue: &super::queue::Queue<TextJob>, call: TextCall, writer: Writer) -> Result<Response, ApiError> {
    let (cancel, guard) = state.track();
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let canvas = call.canvas;
    let mut reply = submit(queue, call, Some(StreamTo { events: events_tx, canvas }), cancel)?;
    let first = tokio::select! {
        e = events.recv() => e,
        r = &mut reply => match r {
            Ok(Err(e)) => return Err(e),
            Ok(Ok(choices)) => return Ok(writer.finished_stream(choices)),
            Err(_) => return Err(ApiError::internal("the text model failed on this request (see the server's log)")),
        },
    };
    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(forward(writer, first, events, reply, tx, guard));
    let body = futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx)) });
    Ok(Sse::new(body).keep_alive(KeepAlive::new().interval(std::time::Duration::from_secs(2))).into_response())
}

/// Turns a job's events into SSE events until it ends; a client that leaves drops the
/// receiver, which drops `guard` and so cancels the job.
async fn forward(writer: Writer, first: Option<TextEvent>, mut events: mpsc::UnboundedReceiver<TextEvent>, reply: oneshot::Receiver<Result<Vec<Choice>, ApiError>>, tx: mpsc::Sender<Event>, guard: CancelGuard) {
    let mut started = std::collections::BTreeSet::new();
    let mut next = first;
    while let Some(event) = next {
        let sse = match event {
            TextEvent::Delta { index, text } => writer.delta(index, &text, started.insert(index)),
            TextEvent::Canvas(v) => Event::default().event("stipple.canvas").data(v.to_string()),
        };
        if tx.send(sse).await.is_err() {
            return;
        }
        // a client gone between events is noticed at once, not at the next event
        next = tokio::select! {
            e = events.recv() => e,
            () = tx.closed() => return,
        };
    }
    let finals: Vec<Event> = match reply.await {
        Ok(Ok(choices)) => {
            let mut out: Vec<Event> = choices.iter().map(|c| writer.finish(c, !started.contains(&c.index))).collect();
            if writer.include_usage {
                out.push(writer.usage_chunk(&choices));
            }
            out.push(Event::default().data("[DONE]"));
            out
        }
        // an error after the stream began: OpenAI's error object as the last event
        Ok(Err(e)) => vec![Event::default().data(json!({ "error": { "message": e.message, "type": "server_error", "code": e.code } }).to_string())],
        Err(_) => vec![Event::default().data(json!({ "error": { "message": "the text model failed on this request (see the server's log)", "type": "server_error" } }).to_string())],
    };
    for e in finals {
        if tx.send(e).await.is_err() {
            return;
        }
    }
    drop(guard);
}

#[derive(Clone, Copy)]
enum Kind {
    Completion,
    Chat,
}

/// Writes responses and chunks in OpenAI's shapes for one request.
struct Writer {
    kind: Kind,
    id: String,
    model: String,
    include_usage: bool,
}

fn usage(choices: &[Choice]) -> Value {
    let prompt: usize = choices.first().map_or(0, |c| c.prompt_tokens);
    let completion: usize = choices.iter().map(|c| c.completion_tokens).sum();
    json!({ "prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion })
}

impl Writer {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.kind, chunk) {
            (Kind::Completion, _) => "text_completion",
            (Kind::Chat, false) => "chat.completion",
            (Kind::Chat, true) => "chat.completion.chunk",
        }
    }

    /// The whole response.
    fn body(&self, choices: &[Choice]) -> axum::Json<Value> {
        let list: Vec<Value> = choices
            .iter()
            .map(|c| match self.kind {
                Kind::Completion => json!({ "index": c.index, "text": c.text, "logprobs": null, "finish_reason": c.finish_reason }),
                Kind::Chat => json!({ "index": c.index, "message": { "role": "assistant", "content": c.text }, "logprobs": null, "finish_reason": c.finish_reason }),
            })
            .collect();
        axum::Json(json!({ "id": self.id, "object": self.object(false), "created": unix_now(), "model": self.model, "system_fingerprint": null, "choices": list, "usage": usage(choices) }))
    }

    fn chunk(&self, choice: Value) -> Event {
        Event::default().data(json!({ "id": self.id, "object": self.object(true), "created": unix_now(), "model": self.model, "system_fingerprint": null, "choices": [choice] }).to_string())
    }

    /// New text of completion `index` (`first`: its first chunk, which names the role).
    fn delta(&self, index: usize, text: &str, first: bool) -> Event {
        self.chunk(match self.kind {
            Kind::Completion => json!({ "index": index, "text": text, "logprobs": null, "finish_reason": null }),
            Kind::Chat if first => json!({ "index": index, "delta": { "role": "assistant", "content": text }, "logprobs": null, "finish_reason": null }),
            Kind::Chat => json!({ "index": index, "delta": { "content": text }, "logprobs": null, "finish_reason": null }),
        })
    }

    /// The last chunk of a completion (with its whole text when none was streamed).
    fn finish(&self, c: &Choice, whole: bool) -> Event {
        let text = if whole { c.text.as_str() } else { "" };
        self.chunk(match self.kind {
            Kind::Completion => json!({ "index": c.index, "text": text, "logprobs": null, "finish_reason": c.finish_reason }),
            Kind::Chat if whole => json!({ "index": c.index, "delta": { "role": "assistant", "content": text }, "logprobs": null, "finish_reason": c.finish_reason }),
            Kind::Chat => json!({ "index": c.index, "delta": {}, "logprobs": null, "finish_reason": c.finish_reason }),
        })
    }

    fn usage_chunk(&self, choices: &[Choice]) -> Event {
        Event::default().data(json!({ "id": self.id, "object": self.object(true), "created": unix_now(), "model": self.model, "choices": [], "usage": usage(choices) }).to_string())
    }

    /// A stream of finished completions (fill-in-the-middle, or a job that sent no text
    /// before it ended).
    fn finished_stream(&self, choices: Vec<Choice>) -> Response {
        let mut events: Vec<Event> = choices.iter().map(|c| self.finish(c, true)).collect();
        if self.include_usage {
            events.push(self.usage_chunk(&choices));
        }
        events.push(Event::default().data("[DONE]"));
        Sse::new(futures_util::stream::iter(events.into_iter().map(Ok::<_, Infallible>))).into_response()
    }
}
