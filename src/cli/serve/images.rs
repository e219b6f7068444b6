//! The image endpoints: OpenAI's `/v1/images/generations` and AUTOMATIC1111's
//! `/sdapi/v1/txt2img`, `/img2img`, `/progress`, `/interrupt`, `/sd-models` and
//! `/samplers`, translated into the image worker's jobs. Pictures come back as base64
//! PNGs carrying their parameters, as `stipple image` writes them.

use std::time::Instant;

use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use stipple_core::samplers::{SAMPLER_NAMES, SamplerSpec, SigmaSpacing};
use stipple_image::ImageRequest;
use stipple_image::metadata::{a1111_sampler_name, stipple_sampler_name};
use tokio::sync::oneshot;

use super::error::{ApiError, ApiJson};
use super::image_worker::{ImageJob, Pictures};
use super::{Shared, unix_now};

/// Most pictures one request may ask for.
const MAX_PICTURES: usize = 16;

/// stipple's options in an OpenAI images request's `"stipple"` object.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct StippleImage {
    seed: Option<u64>,
    negative_prompt: Option<String>,
    steps: Option<usize>,
    guidance: Option<f64>,
    sampler: Option<String>,
}

/// `POST /v1/images/generations`.
#[derive(Deserialize, Debug)]
pub struct OpenAiImageRequest {
    prompt: String,
    model: Option<String>,
    n: Option<usize>,
    size: Option<String>,
    response_format: Option<String>,
    stipple: Option<StippleImage>,
}

/// `POST /sdapi/v1/txt2img` and `/img2img`: the fields of A1111's API that stipple uses
/// (the others are accepted and ignored, as A1111 ignores what a script does not use).
#[derive(Deserialize, Serialize, Debug, Clone, Default)]
pub struct A1111Request {
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    negative_prompt: String,
    steps: Option<usize>,
    cfg_scale: Option<f64>,
    sampler_name: Option<String>,
    sampler_index: Option<String>,
    scheduler: Option<String>,
    seed: Option<i64>,
    width: Option<usize>,
    height: Option<usize>,
    batch_size: Option<usize>,
    n_iter: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    init_images: Option<Vec<String>>,
    denoising_strength: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mask: Option<String>,
    inpainting_mask_invert: Option<u8>,
}

fn image_queue<'a>(state: &'a Shared, model: Option<&str>) -> Result<&'a (super::queue::Queue<ImageJob>, super::image_worker::ImageInfo), ApiError> {
    match (&state.image, model) {
        (Some(q), None) => Ok(q),
        (Some(q), Some(m)) if q.1.id == m => Ok(q),
        (_, m) => Err(ApiError::unknown_model(m.unwrap_or("(an image model)"), &state.model_ids())),
    }
}

/// A sampler by stipple's name, or A1111's display name (`Euler a`, `DPM++ 2M Karras`).
fn sampler(name: &str, param: &str) -> Result<SamplerSpec, ApiError> {
    stipple_sampler_name(name).parse().map_err(|e: stipple_core::Error| ApiError::invalid(e.to_string()).param(param))
}

/// `WIDTHxHEIGHT` (`auto`: the model's own size).
fn size(s: &str) -> Result<Option<(usize, usize)>, ApiError> {
    if s == "auto" {
        return Ok(None);
    }
    let bad = || ApiError::invalid(format!("size must be WIDTHxHEIGHT (e.g. 512x512) or auto, got {s:?}")).param("size");
    let (w, h) = s.split_once('x').ok_or_else(bad)?;
    Ok(Some((w.trim().parse().map_err(|_| bad())?, h.trim().parse().map_err(|_| bad())?)))
}

/// Runs `req` with one seed per picture and waits for the pictures.
async fn make(state: &Shared, queue: &super::queue::Queue<ImageJob>, mut req: ImageRequest, seeds: Vec<u64>) -> Result<Pictures, ApiError> {
    state.refuse_if_shutting_down()?;
    req.batch = seeds.len();
    req.validate().map_err(|e| ApiError::from_generation(&e.into()))?;
    let (cancel, _guard) = state.track();
    let (reply, rx) = oneshot::channel();
    queue.submit(ImageJob { req, seeds, cancel, reply })?;
    rx.await.map_err(|_| ApiError::internal("the image model failed on this request (see the server's log)"))?
}

fn seeds_from(first: u64, n: usize) -> Vec<u64> {
    (0..n as u64).map(|k| first.wrapping_add(k)).collect()
}

fn count(n: usize, param: &str) -> Result<usize, ApiError> {
    if !(1..=MAX_PICTURES).contains(&n) {
        return Err(ApiError::invalid(format!("{param} must be 1 to {MAX_PICTURES}, got {n}")).param(param));
    }
    Ok(n)
}

/// `POST /v1/images/generations`.
pub async fn openai(State(state): State<Shared>, ApiJson(r): ApiJson<OpenAiImageRequest>) -> Result<Response, ApiError> {
    let (queue, _) = image_queue(&state, r.model.as_deref())?;
    match r.response_format.as_deref() {
        None | Some("b64_json") => {}
        Some(other) => return Err(ApiError::invalid(format!("response_format {other:?} is not served: this server returns the pictures inline, use b64_json")).param("response_format")),
    }
    let n = count(r.n.unwrap_or(1), "n")?;
    let opts = r.stipple.unwrap_or_default();
    let size = r.size.as_deref().map(size).transpose()?.flatten();
    let req = ImageRequest {
        prompt: r.prompt.clone(),
        negative_prompt: opts.negative_prompt,
        steps: opts.steps,
        guidance: opts.guidance,
        sampler: opts.sampler.as_deref().map(|s| sampler(s, "stipple.sampler")).transpose()?,
        width: size.map(|s| s.0),
        height: size.map(|s| s.1),
        ..ImageRequest::default()
    };
    let seeds = seeds_from(opts.seed.unwrap_or_else(stipple_core::noise::random_seed), n);
    let pictures = make(&state, queue, req, seeds.clone()).await?;
    let data: Vec<Value> = pictures.pngs.iter().map(|png| json!({ "b64_json": B64.encode(png), "revised_prompt": r.prompt })).collect();
    let infos: Vec<Value> = pictures.infos.iter().map(|i| i.to_json()).collect();
    Ok(axum::Json(json!({ "created": unix_now(), "data": data, "stipple": { "seeds": seeds, "parameters": infos } })).into_response())
}

/// A base64 picture as A1111 clients send it (optionally a `data:` URL).
fn picture(b64: &str, param: &str) -> Result<image::DynamicImage, ApiError> {
    let data = b64.split_once(";base64,").map_or(b64, |(_, d)| d);
    let bytes = B64.decode(data.trim()).map_err(|e| ApiError::bad_request(format!("{param} is not base64: {e}")).param(param))?;
    image::load_from_memory(&bytes).map_err(|e| ApiError::invalid(format!("{param} is not a picture stipple reads (PNG): {e}")).param(param))
}

/// The request `r` describes (an img2img one when `init` is given).
fn a1111_request(info: &super::image_worker::ImageInfo, r: &A1111Request, img2img: bool) -> Result<ImageRequest, ApiError> {
    let mut spec = match r.sampler_name.as_deref().or(r.sampler_index.as_deref()) {
        Some(name) => Some(sampler(name, "sampler_name")?),
        None => None,
    };
    // A1111 1.9+: the sigma spacing as its own field
    if let Some(s) = r.scheduler.as_deref().map(str::to_ascii_lowercase) {
        let base = spec.unwrap_or(sampler(&info.defaults.0, "sampler_name")?);
        spec = match s.as_str() {
            "karras" => Some(SamplerSpec { sigmas: SigmaSpacing::Karras, ..base }),
            "exponential" => Some(SamplerSpec { sigmas: SigmaSpacing::Exponential, ..base }),
            "automatic" | "" => spec,
            other => return Err(ApiError::invalid(format!("scheduler {other:?} is not served: use automatic, karras or exponential")).param("scheduler")),
        };
    }
    let mut req = ImageRequest {
        prompt: r.prompt.clone(),
        negative_prompt: Some(r.negative_prompt.clone()).filter(|s| !s.is_empty()),
        steps: r.steps,
        guidance: r.cfg_scale,
        sampler: spec,
        width: r.width,
        height: r.height,
        ..ImageRequest::default()
    };
    if img2img {
        let init = r.init_images.as_ref().and_then(|v| v.first()).ok_or_else(|| ApiError::invalid("img2img needs init_images (one base64 picture)").param("init_images"))?;
        req.init_image = Some(picture(init, "init_images[0]")?);
        req.strength = r.denoising_strength.unwrap_or(0.75);
        if let Some(m) = &r.mask {
            let mut mask = picture(m, "mask")?;
            if r.inpainting_mask_invert == Some(1) {
                mask.invert();
            }
            req.mask = Some(mask);
            // A1111 pastes the untouched pixels back over the result
            req.keep_unmasked = true;
        }
    }
    Ok(req)
}

/// `POST /sdapi/v1/txt2img`.
pub async fn txt2img(State(state): State<Shared>, ApiJson(r): ApiJson<A1111Request>) -> Result<Response, ApiError> {
    a1111(state, r, false).await
}

/// `POST /sdapi/v1/img2img`.
pub async fn img2img(State(state): State<Shared>, ApiJson(r): ApiJson<A1111Request>) -> Result<Response, ApiError> {
    a1111(state, r, true).await
}

async fn a1111(state: Shared, r: A1111Request, img2img: bool) -> Result<Response, ApiError> {
    let (queue, info) = image_queue(&state, None)?;
    let req = a1111_request(info, &r, img2img)?;
    let n = count(r.batch_size.unwrap_or(1).saturating_mul(r.n_iter.unwrap_or(1)), "batch_size")?;
    // A1111: -1 (or none) draws a seed; picture k gets seed + k
    let first = match r.seed {
        Some(s) if s >= 0 => s as u64,
        _ => stipple_core::noise::random_seed(),
    };
    let seeds = seeds_from(first, n);
    let pictures = make(&state, queue, req, seeds.clone()).await?;
    let images: Vec<String> = pictures.pngs.iter().map(|p| B64.encode(p)).collect();
    let i0 = &pictures.infos[0];
    let info_json = json!({
        "prompt": r.prompt,
        "all_prompts": vec![&r.prompt; n],
        "negative_prompt": r.negative_prompt,
        "all_negative_prompts": vec![&r.negative_prompt; n],
        "seed": first,
        "all_seeds": seeds,
        "subseed": -1,
        "all_subseeds": vec![-1; n],
        "subseed_strength": 0,
        "width": i0.width,
        "height": i0.height,
        "sampler_name": a1111_sampler_name(&i0.sampler),
        "cfg_scale": i0.guidance,
        "steps": i0.steps,
        "batch_size": n,
        "restore_faces": false,
        "sd_model_name": i0.model,
        "denoising_strength": i0.strength,
        "infotexts": pictures.infos.iter().map(|i| i.a1111_parameters()).collect::<Vec<_>>(),
        "version": format!("stipple {}", env!("CARGO_PKG_VERSION")),
    });
    // the parameters echoed as A1111 does, without the (large) pictures sent
    let mut parameters = serde_json::to_value(A1111Request { init_images: None, mask: None, ..r })
        .map_err(|e| ApiError::internal(e.to_string()))?;
    parameters["seed"] = json!(first);
    Ok(axum::Json(json!({ "images": images, "parameters": parameters, "info": info_json.to_string() })).into_response())
}

/// `GET /sdapi/v1/progress` query.
#[derive(Deserialize, Debug, Default)]
pub struct ProgressQuery {
    #[serde(default)]
    skip_current_image: bool,
}

/// `GET /sdapi/v1/progress`: the running picture's step and a preview of it.
pub async fn progress(State(state): State<Shared>, Query(q): Query<ProgressQuery>) -> Result<Response, ApiError> {
    let (queue, _) = image_queue(&state, None)?;
    let mut l = state.live.lock().unwrap_or_else(|p| p.into_inner());
    if !q.skip_current_image {
        // previews are made while someone watches
        l.preview_until = Some(Instant::now() + std::time::Duration::from_secs(5));
    }
    let fraction = if l.running && l.total > 0 { l.step as f64 / l.total as f64 } else { 0.0 };
    let eta = match (l.started, fraction > 0.0) {
        (Some(t), true) => t.elapsed().as_secs_f64() * (1.0 - fraction) / fraction,
        _ => 0.0,
    };
    let image = if l.running && !q.skip_current_image { l.preview.as_ref().map(|p| B64.encode(p)) } else { None };
    Ok(axum::Json(json!({
        "progress": fraction,
        "eta_relative": eta,
        "state": {
            "skipped": false,
            "interrupted": false,
            "job": if l.running { "txt2img" } else { "" },
            "job_count": queue.waiting() + queue.running(),
            "job_timestamp": "",
            "job_no": 0,
            "sampling_step": l.step,
            "sampling_steps": l.total,
        },
        "current_image": image,
        "textinfo": null,
    }))
    .into_response())
}

/// `POST /sdapi/v1/interrupt`: cancels the running picture (its request answers 499-free:
/// the client that made it gets an error saying it was cancelled).
pub async fn interrupt(State(state): State<Shared>) -> Result<Response, ApiError> {
    image_queue(&state, None)?;
    if let Some(c) = &state.live.lock().unwrap_or_else(|p| p.into_inner()).cancel {
        c.cancel();
    }
    Ok(axum::Json(json!({})).into_response())
}

/// `GET /sdapi/v1/sd-models`.
pub async fn sd_models(State(state): State<Shared>) -> Result<Response, ApiError> {
    let (_, info) = image_queue(&state, None)?;
    Ok(axum::Json(json!([{ "title": info.id, "model_name": info.id, "hash": null, "sha256": null, "filename": info.id, "config": null }])).into_response())
}

/// `GET /sdapi/v1/samplers`.
pub async fn samplers() -> Response {
    let list: Vec<Value> = SAMPLER_NAMES.iter().map(|s| json!({ "name": a1111_sampler_name(s), "aliases": [s], "options": {} })).collect();
    axum::Json(list).into_response()
}
