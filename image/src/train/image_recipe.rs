//! The text-to-image recipe of `stipple train image`: a UNet and its CLIP text encoder
//! trained on a trained autoencoder's latents (the whole set encoded once) through the
//! core's run driver, saved as a diffusers Stable Diffusion folder.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::json;
use stipple_core::config::{ClassDefaults, SchedulerConfig, TimestepSpacing};
use stipple_core::prediction::PredictionType;
use stipple_core::training::{LoopOptions, RunEvent, RunPlan, RunSettings, TrainingRun};

use super::clip_vocab;
use super::dataset::ImageFolder;
use super::hub_layout::{copy_tokenizer, ema_weights, params_of, save_component, scheduler_config, write_pipeline_files};
use super::latent_diffusion::{self, DiffusionOptions, LatentSet, TextToImage};
use crate::error::{Error, Result, invalid};
use crate::models::vae::{AutoencoderKL, VaeConfig};
use crate::tokenizer::ClipTokenizer;

/// The shape of a UNet and text encoder trained from scratch.
#[derive(Clone, Debug)]
pub struct TextToImageShape {
    /// UNet channels per level.
    pub channels: Vec<usize>,
    /// Attention heads.
    pub heads: usize,
    /// GroupNorm groups of the UNet.
    pub groups: usize,
    /// Text encoder width.
    pub text_hidden: usize,
    /// Text encoder layers.
    pub text_layers: usize,
    /// Caption tokens (start and end included).
    pub max_tokens: usize,
}

/// A `stipple train image` run.
#[derive(Clone, Debug)]
pub struct ImageTrainJob {
    /// Image folder (metadata.jsonl + pictures).
    pub data: PathBuf,
    /// A trained autoencoder folder.
    pub vae: PathBuf,
    /// Pipeline folder to write.
    pub out: PathBuf,
    /// The run's settings.
    pub run: RunSettings,
    /// The shape of fresh networks (unused with `init`).
    pub shape: TextToImageShape,
    /// Pictures per step.
    pub batch: usize,
    /// Probability of the empty caption (classifier-free guidance).
    pub caption_dropout: f64,
    /// What the UNet predicts (with `init`: the pipeline's own).
    pub prediction: PredictionType,
    /// Start from this trained pipeline (UNet, text encoder, tokenizer and their settings).
    pub init: Option<PathBuf>,
}

/// Reads `init/file`, a config of a pipeline trained by `stipple train image`.
fn read_init(init: &Path, file: &str) -> Result<serde_json::Value> {
    let path = init.join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| Error::Model(format!("{}: --init needs a pipeline trained by `stipple train image`: {e}", path.display())))?;
    serde_json::from_str(&text).map_err(|e| Error::Model(format!("{}: {e}", path.display())))
}

/// The configuration (`unet`, `text_encoder`) and options of a new run.
fn new_run(job: &ImageTrainJob, vae_cfg: &VaeConfig, size: u32, vocab: usize) -> Result<(serde_json::Value, DiffusionOptions)> {
    let opts = |prediction| DiffusionOptions { batch: job.batch, caption_dropout: job.caption_dropout, prediction };
    if let Some(init) = &job.init {
        let (unet, text) = (read_init(init, "unet/config.json")?, read_init(init, "text_encoder/config.json")?);
        if unet["in_channels"].as_u64() != Some(vae_cfg.latent_channels as u64) {
            return Err(invalid(format!("{}: its UNet takes {} latent channels, the autoencoder {} makes {}", init.display(), unet["in_channels"], job.vae.display(), vae_cfg.latent_channels)));
        }
        let v = read_init(init, "scheduler/scheduler_config.json")?["prediction_type"] == "v_prediction";
        return Ok((json!({ "unet": unet, "text_encoder": text }), opts(if v { PredictionType::VPrediction } else { PredictionType::Epsilon })));
    }
    let s = &job.shape;
    let latent = size as usize / vae_cfg.spatial_factor();
    let unet = latent_diffusion::unet_config(latent, vae_cfg.latent_channels, &s.channels, s.text_hidden, s.heads, s.groups);
    let text = latent_diffusion::text_encoder_config(vocab, s.text_hidden, s.text_layers, s.heads, s.max_tokens);
    Ok((json!({ "unet": unet, "text_encoder": text }), opts(job.prediction)))
}

/// The whole set in latent form (the autoencoder's mean and spread, scaled), with the
/// captions tokenized: encoded once, not at every step.
pub fn encode_latents(vae: &AutoencoderKL, scaling_factor: f64, data: &ImageFolder, tokenizer: &ClipTokenizer) -> Result<LatentSet> {
    let (mut means, mut stds) = (Vec::new(), Vec::new());
    let n = data.images.dim(0)?;
    for start in (0..n).step_by(64) {
        let d = vae.encode(&data.images.narrow(0, start, 64.min(n - start))?)?;
        means.push((d.mean * scaling_factor)?);
        stds.push((d.std * scaling_factor)?);
    }
    let captions = data.records.iter().map(|r| tokenizer.encode(&r.text)).collect::<Result<Vec<_>>>()?;
    Ok(LatentSet { mean: Tensor::cat(&means, 0)?, std: Tensor::cat(&stds, 0)?, captions, empty: tokenizer.encode("")? })
}

/// The caption tokenizer of the run in `out/tokenizer`: `init`'s copied, or one learnt
/// from the captions (a resumed run keeps the one it wrote).
fn prepare_tokenizer(job: &ImageTrainJob, resumed: bool, data: &ImageFolder) -> Result<PathBuf> {
    let tok_dir = job.out.join("tokenizer");
    match (&job.init, resumed) {
        (_, true) => {}
        (Some(init), false) => copy_tokenizer(&init.join("tokenizer"), &tok_dir)?,
        (None, false) => {
            let mut captions: Vec<String> = data.records.iter().map(|r| r.text.clone()).collect();
            captions.sort();
            captions.dedup();
            clip_vocab::write(&tok_dir, &clip_vocab::learn_merges(&captions, 100_000)?, job.shape.max_tokens)?;
        }
    }
    Ok(tok_dir)
}

/// Trains (or resumes) a text-to-image model; returns the run's summary (also in `train.json`).
pub fn train_image(job: &ImageTrainJob, device: &Device, events: &mut dyn FnMut(&RunEvent)) -> Result<serde_json::Value> {
    let run = TrainingRun::open(&job.out, job.run.resume)?;
    let vae_cfg_path = job.vae.join("config.json");
    let vae_text = std::fs::read_to_string(&vae_cfg_path).map_err(|e| Error::Model(format!("{}: train it first with `stipple train vae`: {e}", job.vae.display())))?;
    let vae_cfg: VaeConfig = serde_json::from_str(&vae_text).map_err(|e| Error::Model(format!("{}: {e}", vae_cfg_path.display())))?;
    let vae_weights = job.vae.join("diffusion_pytorch_model.safetensors");
    // Safety: read-only mapping of the autoencoder's weights, not modified while loaded.
    let vae = AutoencoderKL::new(&vae_cfg, stipple_core::weights::var_builder(&[&vae_weights], DType::F32, device)?)?;
    let size = vae_cfg.sample_size.ok_or_else(|| invalid("the autoencoder's config has no sample_size"))? as u32;
    let data = ImageFolder::load(&job.data, size, device)?;
    let tok_dir = prepare_tokenizer(job, run.record.is_some(), &data)?;
    let tokenizer = ClipTokenizer::from_dir(&tok_dir)?;
    let vocab = crate::error::read_json::<serde_json::Map<String, serde_json::Value>>(&tok_dir.join("vocab.json"))?.len();
    let (config, opts, looped): (serde_json::Value, DiffusionOptions, LoopOptions) = match &run.record {
        Some(r) => (
            r.config.clone(),
            run.saved_option("diffusion")?.ok_or_else(|| invalid("the checkpoint has no diffusion settings"))?,
            run.saved_option("loop")?.ok_or_else(|| invalid("the checkpoint has no loop settings"))?,
        ),
        None => {
            let (config, opts) = new_run(job, &vae_cfg, size, vocab)?;
            (config, opts, job.run.loop_options(1e-3))
        }
    };
    let latents = encode_latents(&vae, vae_cfg.scaling_factor, &data, &tokenizer)?;
    let sched_json = scheduler_config(opts.prediction);
    let alphas = SchedulerConfig::from_json(&sched_json.to_string())?.noise_schedule(&ClassDefaults::common(TimestepSpacing::Leading))?.alphas_cumprod;
    let model = TextToImage::new(&config["unet"], &config["text_encoder"], device, looped.seed)?;
    if let (None, Some(init)) = (&run.record, &job.init) {
        model.load_trained(init)?;
    }
    let init = run.init_dir(job.init.as_deref());
    let mut state = run.new_state(params_of(&model.varmap)?, &job.run)?;
    let parameters: usize = state.params.values().map(|v| v.elem_count()).sum();
    events(&RunEvent::Note(format!("{} pictures, {}x{} latents; {parameters} parameters", data.records.len(), latents.mean.dim(2)?, latents.mean.dim(3)?)));
    let options = TrainingRun::record_options("diffusion", &opts, &looped, init.as_deref(), &state)?;
    let plan = RunPlan::new(&looped, opts.batch, "images", &job.run);
    run.run(
        &mut state,
        config.clone(),
        options,
        &plan,
        events,
        |st, on_step| latent_diffusion::train(&model, &latents, &alphas, &opts, &looped, st, on_step),
        |st| {
            save_component(&job.out.join("unet"), &config["unet"], &ema_weights(st, "unet"), "diffusion_pytorch_model.safetensors")?;
            save_component(&job.out.join("text_encoder"), &config["text_encoder"], &ema_weights(st, "text_encoder"), "model.safetensors")?;
            write_pipeline_files(&job.out, &job.vae, &job.data, &sched_json)
        },
    )
}
