//! The music model's worker: one thread owns the Riffusion pipeline and renders the
//! queued requests in order, each to the bytes of a WAV file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use candle_core::{DType, Device, Tensor};
use stipple_audio::wav::{WavFormat, wav_bytes};
use stipple_audio::{MusicRequest, Riffusion};
use stipple_core::progress::{CancelToken, StepEvent};
use tokio::sync::oneshot;

use super::error::ApiError;
use super::metrics::Metrics;
use super::queue::{self, Queue};

/// A request for a clip.
pub struct MusicJob {
    /// What to make.
    pub req: MusicRequest,
    /// Set when the client leaves.
    pub cancel: CancelToken,
    /// The answer: a 16-bit PCM WAV file and its length in seconds.
    pub reply: oneshot::Sender<Result<(Vec<u8>, f64), ApiError>>,
}

/// Loads the model on its own thread and starts serving `capacity` waiting jobs; returns
/// the id clients name it by.
pub fn start(source: PathBuf, id: String, device: Device, dtype: DType, capacity: usize, metrics: Arc<Metrics>) -> anyhow::Result<(Queue<MusicJob>, String)> {
    let (queue, intake) = queue::bounded("music", capacity);
    let id = queue::spawn_owner(
        "music",
        move || Riffusion::load(&source, &device, dtype).with_context(|| format!("loading {}", source.display())),
        move |_| id,
        move |riff| intake.serve_each(|job| run(&riff, job, &metrics)),
    )?;
    Ok((queue, id))
}

fn run(riff: &Riffusion, job: MusicJob, metrics: &Metrics) {
    let mut steps = 0u64;
    let mut progress = |_: &StepEvent<'_, Tensor>| steps += 1;
    let answer = if job.cancel.is_cancelled() {
        Err(anyhow::Error::from(stipple_core::Error::Cancelled))
    } else {
        riff.generate(&job.req, &mut progress, &job.cancel).map_err(anyhow::Error::from).and_then(|music| {
            Metrics::add(&metrics.steps, steps);
            Metrics::add(&metrics.step_micros, Duration::from_secs_f64(music.diffusion_seconds).as_micros() as u64);
            let seconds = music.audio.len() as f64 / music.sample_rate as f64;
            Ok((wav_bytes(&music.audio, music.sample_rate, WavFormat::Pcm16)?, seconds))
        })
    }
    .map_err(|e| ApiError::from_generation(&e));
    if matches!(&answer, Err(e) if e.status.as_u16() == 499) {
        Metrics::add(&metrics.cancelled, 1);
    }
    let _ = job.reply.send(answer);
}
