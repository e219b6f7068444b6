//! The image model's worker: one thread owns the pipeline and runs the queued requests in
//! order, each as one model batch with a seed per picture; it keeps the running job's
//! progress (and, while someone asks for it, a preview) for A1111's `/sdapi/v1/progress`.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use stipple_core::noise::{PerSample, PortableRng};
use stipple_core::progress::{CancelToken, StepEvent};
use stipple_image::metadata::{GenerationInfo, png_bytes};
use stipple_image::preview::Previewer;
use stipple_image::{ImageRequest, StableDiffusion};
use tokio::sync::oneshot;

use super::error::ApiError;
use super::metrics::Metrics;
use super::queue::{self, Queue};

/// A request for pictures.
pub struct ImageJob {
    /// What to make (`batch` = the number of seeds).
    pub req: ImageRequest,
    /// One seed per picture: picture k is the one `stipple image --seed seeds[k]` makes.
    pub seeds: Vec<u64>,
    /// Set when the client leaves (or A1111's interrupt).
    pub cancel: CancelToken,
    /// The answer.
    pub reply: oneshot::Sender<Result<Pictures, ApiError>>,
}

/// Finished pictures.
pub struct Pictures {
    /// PNG files with their parameters in the text chunks, one per seed.
    pub pngs: Vec<Vec<u8>>,
    /// Each picture's parameters.
    pub infos: Vec<GenerationInfo>,
}

/// What the handlers need to know of the loaded pipeline.
#[derive(Clone, Debug)]
pub struct ImageInfo {
    /// The id clients name it by.
    pub id: String,
    /// Its native size (width, height).
    pub native: (usize, usize),
    /// Its default sampler, steps and guidance.
    pub defaults: (String, usize, f64),
}

/// The running job, as `/sdapi/v1/progress` reports it.
#[derive(Default)]
pub struct LiveProgress {
    /// A job is running.
    pub running: bool,
    /// Steps done and in all.
    pub step: usize,
    /// See `step`.
    pub total: usize,
    /// When the running job started.
    pub started: Option<Instant>,
    /// Its cancel token (A1111's interrupt).
    pub cancel: Option<CancelToken>,
    /// The latest preview as PNG, made only while clients ask for it.
    pub preview: Option<Vec<u8>>,
    /// Until when previews are made (pushed forward by each progress request).
    pub preview_until: Option<Instant>,
}

/// Loads the pipeline on its own thread and starts serving `capacity` waiting jobs.
pub fn start(source: PathBuf, id: String, device: Device, dtype: DType, capacity: usize, metrics: Arc<Metrics>, live: Arc<Mutex<LiveProgress>>) -> anyhow::Result<(Queue<ImageJob>, ImageInfo)> {
    let (queue, intake) = queue::bounded("image", capacity);
    let info = queue::spawn_owner(
        "image",
        move || StableDiffusion::load_with_config(&source, None, &device, dtype).with_context(|| format!("loading {}", source.display())),
        move |pipe| {
            let req = ImageRequest { prompt: String::new(), ..ImageRequest::default() };
            let native = pipe.output_size(&req).unwrap_or((512, 512));
            let sampler = pipe.default_sampler().map(|s| s.to_string()).unwrap_or_default();
            ImageInfo { id, native, defaults: (sampler, pipe.default_steps(), pipe.default_guidance()) }
        },
        move |pipe| intake.serve_each(|job| run(&pipe, job, &metrics, &live)),
    )?;
    Ok((queue, info))
}

fn run(pipe: &StableDiffusion, job: ImageJob, metrics: &Metrics, live: &Mutex<LiveProgress>) {
    let lock = || live.lock().unwrap_or_else(|p| p.into_inner());
    {
        let mut l = lock();
        *l = LiveProgress { running: true, started: Some(Instant::now()), cancel: Some(job.cancel.clone()), preview_until: l.preview_until, ..LiveProgress::default() };
    }
    let previewer = Previewer::for_pipeline(pipe, None);
    let mut progress = |e: &StepEvent<'_, Tensor>| {
        let wanted = {
            let mut l = lock();
            (l.step, l.total) = (e.step, e.total);
            l.preview_until.is_some_and(|t| Instant::now() < t)
        };
        if let (true, Some(latents)) = (wanted, e.preview) {
            // the preview is made outside the lock; a failed one leaves the last
            if let Ok(png) = previewer.preview(latents).map_err(anyhow::Error::from).and_then(|img| Ok(png_bytes(&img, None)?)) {
                lock().preview = Some(png);
            }
        }
    };
    let result = if job.cancel.is_cancelled() {
        Err(anyhow::Error::from(stipple_core::Error::Cancelled))
    } else if job.seeds.len() == 1 {
        pipe.generate(&job.req, &mut PortableRng::new(job.seeds[0]), &mut progress, &job.cancel).map_err(anyhow::Error::from)
    } else {
        let mut noise = PerSample { sources: job.seeds.iter().map(|&s| PortableRng::new(s)).collect() };
        pipe.generate(&job.req, &mut noise, &mut progress, &job.cancel).map_err(anyhow::Error::from)
    };
    {
        let mut l = lock();
        (l.running, l.cancel) = (false, None);
    }
    let answer = result
        .and_then(|out| {
            Metrics::add(&metrics.steps, out.denoise_steps as u64);
            Metrics::add(&metrics.step_micros, Duration::from_secs_f64(out.denoise_seconds).as_micros() as u64);
            let mut pictures = Pictures { pngs: Vec::new(), infos: Vec::new() };
            for (img, &seed) in out.images.iter().zip(&job.seeds) {
                let info = GenerationInfo { seed: Some(seed), ..out.info.clone() };
                pictures.pngs.push(png_bytes(img, Some(&info))?);
                pictures.infos.push(info);
            }
            Ok(pictures)
        })
        .map_err(|e| ApiError::from_generation(&e));
    if matches!(&answer, Err(e) if e.status.as_u16() == 499) {
        Metrics::add(&metrics.cancelled, 1);
    }
    let _ = job.reply.send(answer);
}
