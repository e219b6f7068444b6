//! `POST /v1/audio/generations`: stipple's music endpoint (prompt, seconds, steps,
//! guidance, seed, loop), answered with a WAV file, translated into the music worker's job.

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use stipple_audio::MusicRequest;
use tokio::sync::oneshot;

use super::Shared;
use super::error::{ApiError, ApiJson};
use super::music_worker::MusicJob;

/// The request body.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct MusicApiRequest {
    model: Option<String>,
    prompt: String,
    negative_prompt: Option<String>,
    seconds: Option<f64>,
    steps: Option<usize>,
    guidance: Option<f64>,
    sampler: Option<String>,
    seed: Option<u64>,
    #[serde(rename = "loop", default)]
    looped: bool,
    response_format: Option<String>,
}

/// `POST /v1/audio/generations`: a 16-bit PCM WAV; the seed and length in `X-Stipple-Seed`
/// and `X-Stipple-Seconds`.
pub async fn generate(State(state): State<Shared>, ApiJson(r): ApiJson<MusicApiRequest>) -> Result<Response, ApiError> {
    let queue = match (&state.music, r.model.as_deref()) {
        (Some((q, _)), None) => q,
        (Some((q, id)), Some(m)) if id == m => q,
        (_, m) => return Err(ApiError::unknown_model(m.unwrap_or("(a music model)"), &state.model_ids())),
    };
    state.refuse_if_shutting_down()?;
    if let Some(f) = r.response_format.as_deref().filter(|f| *f != "wav") {
        return Err(ApiError::invalid(format!("response_format {f:?} is not served: use wav")).param("response_format"));
    }
    let sampler = match r.sampler.as_deref() {
        Some(s) => Some(stipple_image::metadata::stipple_sampler_name(s).parse().map_err(|e: stipple_core::Error| ApiError::invalid(e.to_string()).param("sampler"))?),
        None => None,
    };
    let seed = r.seed.unwrap_or_else(stipple_core::noise::random_seed);
    let req = MusicRequest {
        prompt: r.prompt,
        negative_prompt: r.negative_prompt,
        seconds: r.seconds,
        steps: r.steps,
        guidance: r.guidance,
        sampler,
        seed,
        init_audio: None,
        strength: 0.75,
        to_prompt: None,
        to_seed: None,
        looped: r.looped,
        continue_from: None,
    };
    req.validate().map_err(|e| ApiError::from_generation(&e.into()))?;
    let (cancel, _guard) = state.track();
    let (reply, rx) = oneshot::channel();
    queue.submit(MusicJob { req, cancel, reply })?;
    let (wav, seconds) = rx.await.map_err(|_| ApiError::internal("the music model failed on this request (see the server's log)"))??;
    Ok(([(header::CONTENT_TYPE, "audio/wav".to_string()), (header::HeaderName::from_static("x-stipple-seed"), seed.to_string()), (header::HeaderName::from_static("x-stipple-seconds"), format!("{seconds:.3}"))], wav).into_response())
}
