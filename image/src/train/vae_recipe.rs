//! The autoencoder recipe of `stipple train vae`: a KL autoencoder trained (or a further
//! stage of one, optionally the decoder alone) on a captioned image folder through the
//! core's run driver, saved as a diffusers `vae/` folder with its measured scaling factor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use stipple_core::training::{LoopOptions, Params, RunEvent, RunPlan, RunSettings, TrainState, TrainingRun};

use super::autoencoder::{self, AutoencoderOptions};
use super::dataset::ImageFolder;
use super::hub_layout::{ema_weights, params_of, save_component};
use crate::error::{Error, Result, invalid};
use crate::models::vae::{AutoencoderKL, VaeConfig};

/// The shape of an autoencoder trained from scratch.
#[derive(Clone, Debug)]
pub struct VaeShape {
    /// Side of the pictures.
    pub size: usize,
    /// Channels per level (each level but the last halves the side).
    pub channels: Vec<usize>,
    /// Latent channels.
    pub latent_channels: usize,
    /// GroupNorm groups.
    pub groups: usize,
}

/// A `stipple train vae` run.
#[derive(Clone, Debug)]
pub struct VaeTrainJob {
    /// Image folder (metadata.jsonl + pictures).
    pub data: PathBuf,
    /// Autoencoder folder to write.
    pub out: PathBuf,
    /// The run's settings.
    pub run: RunSettings,
    /// The shape of a fresh autoencoder (unused with `init`).
    pub shape: VaeShape,
    /// Pictures per step.
    pub batch: usize,
    /// Weight of the KL term.
    pub kl_weight: f64,
    /// Start from this trained autoencoder (its weights and settings).
    pub init: Option<PathBuf>,
    /// With `init`: train the decoder only, so the latents (and a UNet trained on them)
    /// stay valid.
    pub decoder_only: bool,
}

/// The configuration of a new run: `init`'s, or a fresh one of `shape`.
fn new_config(job: &VaeTrainJob) -> Result<serde_json::Value> {
    let s = &job.shape;
    if s.channels.is_empty() || s.groups == 0 || s.channels.iter().any(|c| c % s.groups != 0) || s.size % (1 << (s.channels.len() - 1)) != 0 {
        return Err(invalid(format!("--channels must be multiples of --groups ({}), and --size ({}) divisible by 2^(levels - 1)", s.groups, s.size)));
    }
    Ok(match &job.init {
        Some(init) => {
            let path = init.join("config.json");
            let text = std::fs::read_to_string(&path).map_err(|e| Error::Model(format!("{}: --init needs an autoencoder trained by `stipple train vae`: {e}", path.display())))?;
            serde_json::from_str(&text).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?
        }
        None => autoencoder::config(s.size, &s.channels, s.latent_channels, s.groups),
    })
}

/// Trains (or resumes) an autoencoder; returns the run's summary (also in `train.json`).
pub fn train_vae(job: &VaeTrainJob, device: &Device, events: &mut dyn FnMut(&RunEvent)) -> Result<serde_json::Value> {
    let run = TrainingRun::open(&job.out, job.run.resume)?;
    let (config, opts, looped): (serde_json::Value, AutoencoderOptions, LoopOptions) = match &run.record {
        Some(r) => (r.config.clone(), run.saved_option("autoencoder")?.ok_or_else(|| invalid("the checkpoint has no autoencoder settings"))?, run.saved_option("loop")?.ok_or_else(|| invalid("the checkpoint has no loop settings"))?),
        None => (new_config(job)?, AutoencoderOptions { batch: job.batch, kl_weight: job.kl_weight, decoder_only: job.decoder_only }, job.run.loop_options(1e-3)),
    };
    let init = run.init_dir(job.init.as_deref());
    let size = config["sample_size"].as_u64().ok_or_else(|| invalid("vae config without sample_size"))? as u32;
    let data = ImageFolder::load(&job.data, size, device)?;
    events(&RunEvent::Note(format!("{} pictures of {size}x{size}", data.records.len())));
    let (vae, varmap) = autoencoder::new(&config, device, looped.seed)?;
    // also when resuming: a frozen encoder is not in the checkpoint
    if let Some(dir) = &init {
        super::init::load_trained(&varmap, &[("", &dir.join("diffusion_pytorch_model.safetensors"))])?;
    }
    // a frozen encoder's weights are saved as they are; the trained ones as their EMA
    let (trained, frozen): (Params, Params) = params_of(&varmap)?.into_iter().partition(|(name, _)| !opts.decoder_only || autoencoder::is_decoder_param(name));
    let frozen: HashMap<String, Tensor> = frozen.into_iter().map(|(k, v)| (k, v.as_tensor().clone())).collect();
    let mut state = run.new_state(trained, &job.run)?;
    let options = TrainingRun::record_options("autoencoder", &opts, &looped, init.as_deref(), &state)?;
    let plan = RunPlan::new(&looped, opts.batch, "images", &job.run);
    run.run(
        &mut state,
        config.clone(),
        options,
        &plan,
        events,
        |st, on_step| autoencoder::train(&vae, &data.images, &opts, &looped, st, on_step),
        |st| save_autoencoder(&job.out, &config, &frozen, st, &opts, &data.images, device),
    )
}

/// Saves the frozen weights with the trained ones' EMA. The scaling factor is measured on
/// the data for the saved (averaged) weights; a frozen encoder keeps the scale its
/// latents were trained with.
fn save_autoencoder(out: &Path, config: &serde_json::Value, frozen: &HashMap<String, Tensor>, st: &TrainState, opts: &AutoencoderOptions, images: &Tensor, device: &Device) -> Result<()> {
    let mut weights = frozen.clone();
    weights.extend(ema_weights(st, ""));
    let mut saved = config.clone();
    if !opts.decoder_only {
        let cfg: VaeConfig = serde_json::from_value(config.clone()).map_err(|e| invalid(format!("vae config: {e}")))?;
        let fixed = AutoencoderKL::new(&cfg, VarBuilder::from_tensors(weights.clone(), DType::F32, device))?;
        saved["scaling_factor"] = autoencoder::scaling_factor(&fixed, images, 64)?.into();
    }
    save_component(out, &saved, &weights, "diffusion_pytorch_model.safetensors")
}
