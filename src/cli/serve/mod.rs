//! `stipple serve`: an HTTP server speaking the APIs existing clients already use —
//! OpenAI's chat, completions (with fill-in-the-middle `suffix`), models and images APIs,
//! AUTOMATIC1111's txt2img / img2img / progress — plus stipple's own infilling and music
//! endpoints, health and Prometheus metrics. The models load at start-up, each owned by
//! one worker thread fed by a bounded queue; the handlers only translate requests into
//! the library's request types (no generation logic lives here). The endpoints and the
//! `"stipple"` options are documented in docs/serve.md.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Args;
use serde_json::json;
use stipple_core::memory::MemoryLimit;
use stipple_core::progress::CancelToken;

mod error;
mod images;
mod image_worker;
mod metrics;
mod music;
mod music_worker;
mod queue;
mod text;
mod text_worker;

use error::ApiError;
use metrics::{Metrics, QueueGauge};

use super::Global;

/// `stipple serve` arguments.
#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Address to listen on (0.0.0.0: every interface, e.g. in a container).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: a free one, printed at start-up).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Text model: folder, hub id or GGUF file (default: the embedded stipple-mini text
    /// model; `none`: serve no text model).
    #[arg(long)]
    pub text_model: Option<String>,
    /// Quantize the text model's weights as they load (q8_0, q6_k, q5_k, q5_0, q4_k, q4_0).
    #[arg(long, value_parser = super::text::parse_quantize)]
    pub quantize: Option<candle_core::quantized::GgmlDType>,
    /// Image model: diffusers folder, hub id or single-file checkpoint (default: the
    /// embedded stipple-mini image model; `none`: serve no image model).
    #[arg(long)]
    pub image_model: Option<String>,
    /// Music model: Riffusion-layout folder or hub id (default: the embedded stipple-mini
    /// music model; `none`: serve no music model).
    #[arg(long)]
    pub music_model: Option<String>,
    /// Requests that may wait per model; past it the server answers 429 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// Most text requests decoded together as one batch (1: no batching).
    #[arg(long, default_value_t = 8)]
    pub max_batch: usize,
    /// Largest request body accepted (413 past it), e.g. 512K or 32M.
    #[arg(long, default_value = "32M")]
    pub max_body: MemoryLimit,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health and /metrics.
    #[arg(long, env = "STIPPLE_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// On SIGTERM or Ctrl-C: seconds in-flight requests may take to finish before they
    /// are cancelled.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace: u64,
    /// Print no line per request on stderr.
    #[arg(long)]
    pub quiet: bool,
}

/// What every handler shares.
pub struct AppState {
    text: Option<(queue::Queue<text_worker::TextJob>, text_worker::TextInfo)>,
    image: Option<(queue::Queue<image_worker::ImageJob>, image_worker::ImageInfo)>,
    music: Option<(queue::Queue<music_worker::MusicJob>, String)>,
    live: Arc<Mutex<image_worker::LiveProgress>>,
    metrics: Arc<Metrics>,
    api_key: Option<String>,
    shutting_down: AtomicBool,
    inflight: Mutex<Vec<(u64, CancelToken)>>,
    next_id: AtomicU64,
    log: bool,
}

type Shared = Arc<AppState>;

impl AppState {
    /// Every model id served, for errors and `/v1/models`.
    fn model_ids(&self) -> Vec<String> {
        let mut ids = Vec::new();
        ids.extend(self.text.as_ref().map(|(_, i)| i.id.clone()));
        ids.extend(self.image.as_ref().map(|(_, i)| i.id.clone()));
        ids.extend(self.music.as_ref().map(|(_, id)| id.clone()));
        ids
    }

    /// A request's cancel token, registered so shutdown can cancel it; the guard cancels
    /// it when dropped — when the handler ends, or is dropped because its client left.
    fn track(self: &Arc<Self>) -> (CancelToken, CancelGuard) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let token = CancelToken::new();
        self.inflight.lock().unwrap_or_else(|p| p.into_inner()).push((id, token.clone()));
        (token.clone(), CancelGuard { state: self.clone(), id, token })
    }

    /// 503 once SIGTERM has come: requests on kept-alive connections get no new work.
    fn refuse_if_shutting_down(&self) -> Result<(), ApiError> {
        if self.shutting_down.load(Ordering::SeqCst) {
            return Err(ApiError::unavailable("the server is shutting down"));
        }
        Ok(())
    }

    /// A fresh response id with `prefix` (`chatcmpl-…`).
    fn response_id(&self, prefix: &str) -> String {
        format!("{prefix}-{:x}{:06x}", std::process::id(), self.next_id.fetch_add(1, Ordering::Relaxed))
    }
}

/// Cancels a request's generation when dropped (see [`AppState::track`]).
pub struct CancelGuard {
    state: Shared,
    id: u64,
    token: CancelToken,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.token.cancel();
        self.state.inflight.lock().unwrap_or_else(|p| p.into_inner()).retain(|(i, _)| *i != self.id);
    }
}

/// Seconds since the Unix epoch (OpenAI's `created`).
fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// A model source given on the command line: `None` for the embedded default of `kind`,
/// `Some(None)` for `none`.
fn source(given: &Option<String>, kind: &str) -> Result<Option<(String, String)>> {
    match given.as_deref() {
        Some("none") => Ok(None),
        Some(s) => Ok(Some((s.to_string(), model_id(s)))),
        None => Ok(Some((stipple::defaults::model(kind)?.display().to_string(), format!("stipple-mini-{kind}")))),
    }
}

/// The id a model is served under: a hub id as given, a folder or file by its name.
fn model_id(source: &str) -> String {
    let path = std::path::Path::new(source);
    if path.exists() {
        path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| source.to_string())
    } else {
        source.to_string()
    }
}

/// Run `stipple serve` until SIGTERM or Ctrl-C.
pub fn run(g: &Global, args: &ServeArgs) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let live = Arc::new(Mutex::new(image_worker::LiveProgress::default()));
    let capacity = args.queue.max(1);
    let started = Instant::now();
    let text = match source(&args.text_model, "text")? {
        Some((src, id)) => Some(text_worker::start(src, id, g.device.clone(), g.dtype, args.quantize, capacity, args.max_batch, metrics.clone())?),
        None => None,
    };
    let image = match source(&args.image_model, "image")? {
        Some((src, id)) => Some(image_worker::start(PathBuf::from(src), id, g.device.clone(), g.dtype, capacity, metrics.clone(), live.clone())?),
        None => None,
    };
    let music = match source(&args.music_model, "music")? {
        Some((src, id)) => Some(music_worker::start(PathBuf::from(src), id, g.device.clone(), g.dtype, capacity, metrics.clone())?),
        None => None,
    };
    let state = Arc::new(AppState {
        text,
        image,
        music,
        live,
        metrics,
        api_key: args.api_key.clone().filter(|k| !k.is_empty()),
        shutting_down: AtomicBool::new(false),
        inflight: Mutex::new(Vec::new()),
        next_id: AtomicU64::new(1),
        log: !args.quiet,
    });
    eprintln!("models loaded in {:.1} s: {}", started.elapsed().as_secs_f64(), state.model_ids().join(", "));
    let max_body = match args.max_body {
        MemoryLimit::Bytes(b) => b as usize,
        MemoryLimit::Machine => usize::MAX,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the async runtime")?;
    runtime.block_on(serve(state, args, max_body))
}

/// The routes, with the body limit, the API key check and the request log around them.
pub fn router(state: Shared, max_body: usize) -> Router {
    Router::new()
        .route("/v1/models", get(text::models))
        .route("/v1/models/{id}", get(text::model))
        .route("/v1/completions", post(text::completions))
        .route("/v1/chat/completions", post(text::chat))
        .route("/v1/infill", post(text::infill))
        .route("/v1/images/generations", post(images::openai))
        .route("/sdapi/v1/txt2img", post(images::txt2img))
        .route("/sdapi/v1/img2img", post(images::img2img))
        .route("/sdapi/v1/progress", get(images::progress))
        .route("/sdapi/v1/interrupt", post(images::interrupt))
        .route("/sdapi/v1/sd-models", get(images::sd_models))
        .route("/sdapi/v1/samplers", get(images::samplers))
        .route("/v1/audio/generations", post(music::generate))
        .route("/health", get(health))
        .route("/metrics", get(metrics_text))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state.clone(), check_key))
        .layer(middleware::from_fn_with_state(state.clone(), log_and_count))
        .layer(DefaultBodyLimit::max(max_body))
        .with_state(state)
}

async fn serve(state: Shared, args: &ServeArgs, max_body: usize) -> Result<()> {
    let listener = tokio::net::TcpListener::bind((args.host.as_str(), args.port)).await.with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let addr: SocketAddr = listener.local_addr()?;
    // the first line on stdout: scripts and tests read the port from it (`--port 0`)
    println!("stipple serve listening on http://{addr}");
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let app = router(state.clone(), max_body);
    let grace = Duration::from_secs(args.shutdown_grace);
    let on_signal = {
        let state = state.clone();
        async move {
            shutdown_signal().await;
            eprintln!("shutting down: no new connections; in-flight requests have {} s to finish", grace.as_secs());
            state.shutting_down.store(true, Ordering::SeqCst);
            // past the grace period, what still runs is cancelled
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                let tokens: Vec<CancelToken> = state.inflight.lock().unwrap_or_else(|p| p.into_inner()).iter().map(|(_, t)| t.clone()).collect();
                if !tokens.is_empty() {
                    eprintln!("cancelling {} request(s) still running", tokens.len());
                }
                tokens.iter().for_each(CancelToken::cancel);
            });
        }
    };
    axum::serve(listener, app).with_graceful_shutdown(on_signal).await.context("serving")?;
    eprintln!("stopped");
    Ok(())
}

/// SIGTERM (what Kubernetes and systemd send) or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

/// `Authorization: Bearer KEY`, compared in constant time; /health and /metrics are open
/// (probes and scrapers carry no key).
async fn check_key(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let Some(key) = &state.api_key else { return next.run(req).await };
    if matches!(req.uri().path(), "/health" | "/metrics") {
        return next.run(req).await;
    }
    let given = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).unwrap_or("");
    if key_matches(key, given) {
        next.run(req).await
    } else {
        let mut e = ApiError::bad_request("a valid API key is required: send `Authorization: Bearer KEY`").code("invalid_api_key");
        e.status = StatusCode::UNAUTHORIZED;
        e.into_response()
    }
}

/// Whether `given` is `key`, taking the same time wherever they differ.
fn key_matches(key: &str, given: &str) -> bool {
    use subtle::ConstantTimeEq;
    // equal lengths compared byte by byte in constant time; a length mismatch fails the same way
    let same_len = key.len() == given.len();
    let padded: Vec<u8> = given.bytes().chain(std::iter::repeat(0)).take(key.len()).collect();
    bool::from(key.as_bytes().ct_eq(&padded)) && same_len
}

/// Counts every answer for /metrics and logs one line per request on stderr.
async fn log_and_count(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let route = req.extensions().get::<MatchedPath>().map(|p| p.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
    let (method, uri) = (req.method().clone(), req.uri().path().to_string());
    let t = Instant::now();
    let response = next.run(req).await;
    let secs = t.elapsed().as_secs_f64();
    state.metrics.request(&route, response.status().as_u16(), secs);
    if state.log {
        eprintln!("{method} {uri} {} {:.3} s", response.status().as_u16(), secs);
    }
    response
}

/// `GET /health`: 200 with the models once serving, 503 while shutting down (readiness).
async fn health(State(state): State<Shared>) -> Response {
    let models = json!({
        "text": state.text.as_ref().map(|(_, i)| &i.id),
        "image": state.image.as_ref().map(|(_, i)| &i.id),
        "music": state.music.as_ref().map(|(_, id)| id),
    });
    if state.shutting_down.load(Ordering::SeqCst) {
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(json!({ "status": "shutting down", "models": models }))).into_response()
    } else {
        axum::Json(json!({ "status": "ok", "models": models })).into_response()
    }
}

/// `GET /metrics` in Prometheus' text format.
async fn metrics_text(State(state): State<Shared>) -> Response {
    fn gauge<J>(kind: &'static str, q: &queue::Queue<J>) -> QueueGauge {
        QueueGauge { kind, waiting: q.waiting(), running: q.running() }
    }
    let mut queues = Vec::new();
    queues.extend(state.text.as_ref().map(|(q, _)| gauge("text", q)));
    queues.extend(state.image.as_ref().map(|(q, _)| gauge("image", q)));
    queues.extend(state.music.as_ref().map(|(q, _)| gauge("music", q)));
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], state.metrics.render(&queues)).into_response()
}

async fn not_found(req: Request) -> ApiError {
    let mut e = ApiError::bad_request(format!("no such endpoint: {} {} (see docs/serve.md)", req.method(), req.uri().path()));
    e.status = StatusCode::NOT_FOUND;
    e
}

async fn method_not_allowed(req: Request) -> ApiError {
    let mut e = ApiError::bad_request(format!("{} is not allowed on {}", req.method(), req.uri().path()));
    e.status = StatusCode::METHOD_NOT_ALLOWED;
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_compare_whole() {
        assert!(key_matches("sk-abc", "sk-abc"));
        assert!(!key_matches("sk-abc", "sk-ab"));
        assert!(!key_matches("sk-abc", "sk-abcd"));
        assert!(!key_matches("sk-abc", "sk-abd"));
        assert!(!key_matches("sk-abc", ""));
    }
}
