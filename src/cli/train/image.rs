//! Images: `stipple train prepare-emoji`, `vae` and `image`. The result is a diffusers
//! Stable Diffusion folder (model_index.json, scheduler, tokenizer, text_encoder, unet,
//! vae) that `stipple image --model` loads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;
use clap::{Args, ValueEnum};
use serde_json::json;
use stipple_core::config::{ClassDefaults, SchedulerConfig, TimestepSpacing};
use stipple_core::prediction::PredictionType;
use stipple_core::training::{Params, TrainState};
use stipple_image::models::vae::{AutoencoderKL, VaeConfig};
use stipple_image::tokenizer::ClipTokenizer;
use stipple_image::train::dataset::{self, ImageFolder};
use stipple_image::train::{autoencoder, clip_vocab, emoji, latent_diffusion};

use super::super::Global;
use super::RunArgs;
use super::session::{Schedule, Session};

/// `stipple train prepare-emoji` arguments.
#[derive(Args, Debug)]
pub struct PrepareEmojiArgs {
    /// The sprite sheet (npm @svgmoji/noto: package/sprites/all.svg).
    #[arg(long)]
    pub sprites: PathBuf,
    /// Emoji names (npm emoji-datasource: package/emoji.json).
    #[arg(long)]
    pub names: PathBuf,
    /// Output image folder (images/ and metadata.jsonl).
    #[arg(long)]
    pub out: PathBuf,
    /// Side of the pictures in pixels.
    #[arg(long, default_value_t = 32)]
    pub size: u32,
    /// Leave out a category of emoji.json (repeatable), e.g. Flags.
    #[arg(long)]
    pub skip_category: Vec<String>,
}

/// `stipple train vae` arguments.
#[derive(Args, Debug)]
pub struct VaeTrainArgs {
    /// Image folder (metadata.jsonl + pictures).
    #[arg(long)]
    pub data: PathBuf,
    /// Autoencoder folder to write (config.json, diffusion_pytorch_model.safetensors, ...).
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
    /// Side of the pictures.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Channels per level (each level but the last halves the side).
    #[arg(long, value_delimiter = ',', default_value = "32,64,64")]
    pub channels: Vec<usize>,
    /// Latent channels.
    #[arg(long, default_value_t = 4)]
    pub latent_channels: usize,
    /// GroupNorm groups.
    #[arg(long, default_value_t = 8)]
    pub groups: usize,
    /// Pictures per step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Weight of the KL term.
    #[arg(long, default_value_t = 1e-4)]
    pub kl_weight: f64,
    /// Start from this trained autoencoder (its weights and settings) instead of fresh
    /// weights: a further stage, e.g. at a lower --lr.
    #[arg(long, conflicts_with_all = ["size", "channels", "latent_channels", "groups"])]
    pub init: Option<PathBuf>,
    /// With --init: train the decoder only. The encoder stays as it was, so its latents,
    /// and a UNet already trained on them, stay valid while the pictures sharpen.
    #[arg(long, requires = "init")]
    pub decoder_only: bool,
}

/// The prediction target on the command line.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum PredictionArg {
    /// The noise.
    Epsilon,
    /// The velocity.
    V,
}

/// `stipple train image` arguments.
#[derive(Args, Debug)]
pub struct ImageTrainArgs {
    /// Image folder (metadata.jsonl + pictures).
    #[arg(long)]
    pub data: PathBuf,
    /// A trained autoencoder folder (from `stipple train vae`).
    #[arg(long)]
    pub vae: PathBuf,
    /// Pipeline folder to write.
    #[arg(long)]
    pub out: PathBuf,
    #[command(flatten)]
    pub run: RunArgs,
    /// UNet channels per level.
    #[arg(long, value_delimiter = ',', default_value = "64,128")]
    pub channels: Vec<usize>,
    /// Attention heads.
    #[arg(long, default_value_t = 4)]
    pub heads: usize,
    /// GroupNorm groups of the UNet.
    #[arg(long, default_value_t = 16)]
    pub groups: usize,
    /// Text encoder width.
    #[arg(long, default_value_t = 128)]
    pub text_hidden: usize,
    /// Text encoder layers.
    #[arg(long, default_value_t = 2)]
    pub text_layers: usize,
    /// Caption tokens (start and end included).
    #[arg(long, default_value_t = 16)]
    pub max_tokens: usize,
    /// Pictures per step.
    #[arg(long, default_value_t = 32)]
    pub batch: usize,
    /// Probability of the empty caption (classifier-free guidance).
    #[arg(long, default_value_t = 0.1)]
    pub caption_dropout: f64,
    /// What the UNet predicts.
    #[arg(long, value_enum, default_value = "epsilon")]
    pub prediction: PredictionArg,
    /// Start from this trained pipeline (its UNet, text encoder, tokenizer and their
    /// settings) instead of fresh weights: a further stage, e.g. at a lower --lr.
    #[arg(long, conflicts_with_all = ["channels", "heads", "groups", "text_hidden", "text_layers", "max_tokens"])]
    pub init: Option<PathBuf>,
}

/// `stipple train eval-image` arguments.
#[derive(Args, Debug)]
pub struct EvalImageArgs {
    /// A trained pipeline folder.
    #[arg(long)]
    pub model: PathBuf,
    /// Its training image folder.
    #[arg(long)]
    pub data: PathBuf,
    /// Prompts, spread over the captions.
    #[arg(long, default_value_t = 32)]
    pub prompts: usize,
    /// Sampler steps.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// Guidance scales to compare.
    #[arg(long, value_delimiter = ',', default_value = "1,5")]
    pub guidance: Vec<f64>,
}

pub fn eval_image(g: &Global, a: &EvalImageArgs) -> Result<()> {
    let pipe = stipple_image::StableDiffusion::load(&a.model, &g.device, g.dtype).with_context(|| format!("loading {}", a.model.display()))?;
    let vae_cfg: VaeConfig = serde_json::from_str(&std::fs::read_to_string(a.model.join("vae/config.json"))?)?;
    let size = vae_cfg.sample_size.context("the autoencoder's config has no sample_size")? as u32;
    let data = ImageFolder::load(&a.data, size, &g.device)?;
    let opts = stipple_image::train::eval::EvalOptions { prompts: a.prompts, steps: a.steps, guidance: a.guidance.clone(), seed: g.seed.unwrap_or(0) };
    let r = stipple_image::train::eval::nearest_caption(&pipe, &data, &opts)?;
    if g.json {
        println!("{}", serde_json::to_string(&r)?);
    } else {
        println!("{} prompts against {} training pictures (chance of top-1: {:.2}%)", r.prompts.len(), r.pictures, 100.0 * r.chance_top1);
        for x in &r.results {
            println!("guidance {:>4}: nearest picture has the prompt's caption {:.0}% (top-5 {:.0}%), mean rank {:.1}", x.guidance, 100.0 * x.top1, 100.0 * x.top5, x.mean_rank);
        }
    }
    Ok(())
}

pub fn prepare_emoji(g: &Global, a: &PrepareEmojiArgs) -> Result<()> {
    if !(8..=512).contains(&a.size) {
        bail!("--size must be between 8 and 512 pixels");
    }
    let opts = emoji::EmojiOptions { size: a.size, skip_categories: a.skip_category.clone() };
    let records = emoji::prepare(&a.sprites, &a.names, &a.out, &opts)?;
    if records.is_empty() {
        bail!("no emoji of {} had a name in {}", a.sprites.display(), a.names.display());
    }
    dataset::write_metadata(&a.out, &records)?;
    if g.json {
        println!("{}", json!({ "pictures": records.len(), "size": a.size }));
    } else {
        println!("{} captioned {}x{} pictures in {}", records.len(), a.size, a.size, a.out.display());
    }
    Ok(())
}

/// The EMA weights of the parameters under `prefix.` (all when empty), names without it.
fn weights_of(state: &TrainState, prefix: &str) -> HashMap<String, Tensor> {
    state.ema.weights().iter().filter_map(|(k, t)| if prefix.is_empty() { Some((k.clone(), t.clone())) } else { k.strip_prefix(&format!("{prefix}.")).map(|n| (n.to_string(), t.clone())) }).collect()
}

/// Writes `config` as `config.json` and `weights` (in f16) as `file` into `dir`.
fn save_component(dir: &Path, config: &serde_json::Value, weights: &HashMap<String, Tensor>, file: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cast: HashMap<String, Tensor> = weights.iter().map(|(k, t)| Ok((k.clone(), t.to_dtype(DType::F16)?))).collect::<Result<_>>()?;
    stipple_core::output::write_file(&dir.join(file), true, |tmp| Ok::<_, anyhow::Error>(candle_core::safetensors::save(&cast, tmp)?))?;
    let text = serde_json::to_string_pretty(config)?;
    stipple_core::output::write_file(&dir.join("config.json"), true, |tmp| Ok::<_, anyhow::Error>(std::fs::write(tmp, &text)?))
}

fn params_of(varmap: &candle_nn::VarMap) -> Result<Params> {
    let data = varmap.data().lock().map_err(|_| anyhow::anyhow!("parameter map lock poisoned"))?;
    Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

pub fn train_vae(g: &Global, a: &VaeTrainArgs) -> Result<()> {
    let session = Session::open(&a.out, a.run.resume)?;
    let seed = g.seed.unwrap_or(0);
    let (config, opts, looped) = match &session.record {
        Some(r) => {
            let opts: autoencoder::AutoencoderOptions = serde_json::from_value(r.options["autoencoder"].clone())?;
            let looped = serde_json::from_value::<LoopRecord>(r.options["loop"].clone())?.into();
            (r.config.clone(), opts, looped)
        }
        None => {
            if a.channels.is_empty() || a.channels.iter().any(|c| c % a.groups != 0) || a.size % (1 << (a.channels.len() - 1)) != 0 {
                bail!("--channels must be multiples of --groups ({}), and --size ({}) divisible by 2^(levels - 1)", a.groups, a.size);
            }
            let opts = autoencoder::AutoencoderOptions { batch: a.batch, kl_weight: a.kl_weight, decoder_only: a.decoder_only };
            let config = match &a.init {
                Some(init) => {
                    let path = init.join("config.json");
                    serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| format!("{}: --init needs an autoencoder trained by `stipple train vae`", path.display()))?)?
                }
                None => autoencoder::config(a.size, &a.channels, a.latent_channels, a.groups),
            };
            (config, opts, a.run.looped(1e-3, seed))
        }
    };
    let init = init_dir(&session, &a.init);
    let size = config["sample_size"].as_u64().context("vae config without sample_size")? as u32;
    let data = ImageFolder::load(&a.data, size, &g.device)?;
    eprintln!("{} pictures of {size}x{size}", data.records.len());
    let (vae, varmap) = autoencoder::new(&config, &g.device, looped.seed)?;
    // also when resuming: a frozen encoder is not in the checkpoint
    if let Some(dir) = &init {
        stipple_image::train::init::load_trained(&varmap, &[("", &dir.join("diffusion_pytorch_model.safetensors"))])?;
    }
    // a frozen encoder's weights are saved as they are; the trained ones as their EMA
    let (trained, frozen): (Params, Params) = params_of(&varmap)?.into_iter().partition(|(name, _)| !opts.decoder_only || autoencoder::is_decoder_param(name));
    let frozen: HashMap<String, Tensor> = frozen.into_iter().map(|(k, v)| (k, v.as_tensor().clone())).collect();
    let (weight_decay, ema) = optimiser(&session, &a.run);
    let mut state = TrainState::new(trained, weight_decay, ema)?;
    let options = json!({ "autoencoder": opts, "loop": LoopRecord::from(&looped), "init": init, "optimiser": { "weight_decay": weight_decay, "ema": ema } });
    let sched = Schedule { steps: looped.steps, per_step: opts.batch, unit: "images", every: a.run.checkpoint_every, max_minutes: a.run.max_minutes };
    let summary = session.run(
        g,
        &mut state,
        config.clone(),
        options,
        &sched,
        |st, on_step| Ok(autoencoder::train(&vae, &data.images, &opts, &looped, st, on_step)?),
        |st| {
            let mut weights = frozen.clone();
            weights.extend(weights_of(st, ""));
            // the scaling factor of the saved (averaged) weights, measured on the data; a
            // frozen encoder keeps the scale its latents were trained with
            let mut out = config.clone();
            if !opts.decoder_only {
                let cfg: VaeConfig = serde_json::from_value(config.clone())?;
                let fixed = AutoencoderKL::new(&cfg, VarBuilder::from_tensors(weights.clone(), DType::F32, &g.device))?;
                out["scaling_factor"] = autoencoder::scaling_factor(&fixed, &data.images, 64)?.into();
            }
            save_component(&a.out, &out, &weights, "diffusion_pytorch_model.safetensors")
        },
    )?;
    report(g, &summary, &a.out)
}

fn report(g: &Global, summary: &serde_json::Value, out: &Path) -> Result<()> {
    if g.json {
        println!("{summary}");
    } else {
        println!("{}/{} steps in {:.1} min; model in {}, loss curve in {}", summary["steps"], summary["of_steps"], summary["seconds"].as_f64().unwrap_or(0.0) / 60.0, out.display(), out.join("loss.png").display());
    }
    Ok(())
}

/// The loop settings as stored in a checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct LoopRecord {
    steps: usize,
    schedule: stipple_core::training::WarmupCosine,
    clip: Option<f64>,
    seed: u64,
}

impl From<&stipple_core::training::LoopOptions> for LoopRecord {
    fn from(l: &stipple_core::training::LoopOptions) -> Self {
        Self { steps: l.steps, schedule: l.schedule, clip: l.clip, seed: l.seed }
    }
}

impl From<LoopRecord> for stipple_core::training::LoopOptions {
    fn from(l: LoopRecord) -> Self {
        Self { steps: l.steps, schedule: l.schedule, clip: l.clip, seed: l.seed }
    }
}

/// The scheduler written with a trained pipeline: Stable Diffusion 1.x's training betas.
fn scheduler_config(prediction: PredictionType) -> serde_json::Value {
    json!({
        "_class_name": "DDIMScheduler",
        "_diffusers_version": "0.42.1",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
        "prediction_type": prediction,
        "clip_sample": false,
        "set_alpha_to_one": false,
        "steps_offset": 1,
        "timestep_spacing": "leading",
        "trained_betas": null,
    })
}

pub fn train_image(g: &Global, a: &ImageTrainArgs) -> Result<()> {
    let session = Session::open(&a.out, a.run.resume)?;
    let seed = g.seed.unwrap_or(0);
    let vae_cfg: VaeConfig = serde_json::from_str(&std::fs::read_to_string(a.vae.join("config.json")).with_context(|| format!("{}: train it first with `stipple train vae`", a.vae.display()))?)?;
    let vae_weights = a.vae.join("diffusion_pytorch_model.safetensors");
    // Safety: read-only mapping of the autoencoder's weights, not modified while loaded.
    let vae = AutoencoderKL::new(&vae_cfg, unsafe { VarBuilder::from_mmaped_safetensors(&[&vae_weights], DType::F32, &g.device)? })?;
    let size = vae_cfg.sample_size.context("the autoencoder's config has no sample_size")? as u32;
    let data = ImageFolder::load(&a.data, size, &g.device)?;
    let tok_dir = a.out.join("tokenizer");
    if let (None, Some(init)) = (&session.record, &a.init) {
        copy_tokenizer(&init.join("tokenizer"), &tok_dir)?;
    } else if session.record.is_none() {
        let mut captions: Vec<String> = data.records.iter().map(|r| r.text.clone()).collect();
        captions.sort();
        captions.dedup();
        clip_vocab::write(&tok_dir, &clip_vocab::learn_merges(&captions, 100_000)?, a.max_tokens)?;
    }
    let tokenizer = ClipTokenizer::from_dir(&tok_dir)?;
    let vocab: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&std::fs::read_to_string(tok_dir.join("vocab.json"))?)?;
    let (config, opts, looped) = match &session.record {
        Some(r) => (r.config.clone(), serde_json::from_value(r.options["diffusion"].clone())?, serde_json::from_value::<LoopRecord>(r.options["loop"].clone())?.into()),
        None if a.init.is_some() => {
            let init = a.init.as_deref().unwrap_or(Path::new("."));
            let read = |f: &str| -> Result<serde_json::Value> {
                let path = init.join(f);
                Ok(serde_json::from_str(&std::fs::read_to_string(&path).with_context(|| format!("{}: --init needs a pipeline trained by `stipple train image`", path.display()))?)?)
            };
            let (unet, text) = (read("unet/config.json")?, read("text_encoder/config.json")?);
            if unet["in_channels"].as_u64() != Some(vae_cfg.latent_channels as u64) {
                bail!("{}: its UNet takes {} latent channels, the autoencoder {} makes {}", init.display(), unet["in_channels"], a.vae.display(), vae_cfg.latent_channels);
            }
            let prediction = if read("scheduler/scheduler_config.json")?["prediction_type"] == "v_prediction" { PredictionType::VPrediction } else { PredictionType::Epsilon };
            let opts = latent_diffusion::DiffusionOptions { batch: a.batch, caption_dropout: a.caption_dropout, prediction };
            (json!({ "unet": unet, "text_encoder": text }), opts, a.run.looped(1e-3, seed))
        }
        None => {
            let latent = size as usize / vae_cfg.spatial_factor();
            let unet = latent_diffusion::unet_config(latent, vae_cfg.latent_channels, &a.channels, a.text_hidden, a.heads, a.groups);
            let text = latent_diffusion::text_encoder_config(vocab.len(), a.text_hidden, a.text_layers, a.heads, a.max_tokens);
            let prediction = match a.prediction {
                PredictionArg::Epsilon => PredictionType::Epsilon,
                PredictionArg::V => PredictionType::VPrediction,
            };
            let opts = latent_diffusion::DiffusionOptions { batch: a.batch, caption_dropout: a.caption_dropout, prediction };
            (json!({ "unet": unet, "text_encoder": text }), opts, a.run.looped(1e-3, seed))
        }
    };
    let opts: latent_diffusion::DiffusionOptions = opts;
    // the whole set in latent form, once
    let (mut means, mut stds) = (Vec::new(), Vec::new());
    let n = data.images.dim(0)?;
    for start in (0..n).step_by(64) {
        let d = vae.encode(&data.images.narrow(0, start, 64.min(n - start))?)?;
        means.push((d.mean * vae_cfg.scaling_factor)?);
        stds.push((d.std * vae_cfg.scaling_factor)?);
    }
    let captions = data.records.iter().map(|r| tokenizer.encode(&r.text)).collect::<stipple_image::Result<Vec<_>>>()?;
    let latents = latent_diffusion::LatentSet { mean: Tensor::cat(&means, 0)?, std: Tensor::cat(&stds, 0)?, captions, empty: tokenizer.encode("")? };
    let sched_json = scheduler_config(opts.prediction);
    let alphas = SchedulerConfig::from_json(&sched_json.to_string())?.noise_schedule(&ClassDefaults::common(TimestepSpacing::Leading))?.alphas_cumprod;
    let model = latent_diffusion::TextToImage::new(&config["unet"], &config["text_encoder"], &g.device, looped.seed)?;
    if let (None, Some(init)) = (&session.record, &a.init) {
        model.load_trained(init)?;
    }
    let init = init_dir(&session, &a.init);
    let (weight_decay, ema) = optimiser(&session, &a.run);
    let mut state = TrainState::new(params_of(&model.varmap)?, weight_decay, ema)?;
    eprintln!("{n} pictures, {}x{} latents; {} parameters", latents.mean.dim(2)?, latents.mean.dim(3)?, state.params.values().map(|v| v.elem_count()).sum::<usize>());
    let options = json!({ "diffusion": opts, "loop": LoopRecord::from(&looped), "init": init, "optimiser": { "weight_decay": weight_decay, "ema": ema } });
    let sched = Schedule { steps: looped.steps, per_step: opts.batch, unit: "images", every: a.run.checkpoint_every, max_minutes: a.run.max_minutes };
    let summary = session.run(
        g,
        &mut state,
        config.clone(),
        options,
        &sched,
        |st, on_step| Ok(latent_diffusion::train(&model, &latents, &alphas, &opts, &looped, st, on_step)?),
        |st| {
            save_component(&a.out.join("unet"), &config["unet"], &weights_of(st, "unet"), "diffusion_pytorch_model.safetensors")?;
            save_component(&a.out.join("text_encoder"), &config["text_encoder"], &weights_of(st, "text_encoder"), "model.safetensors")?;
            write_pipeline_files(&a.out, &a.vae, &a.data, &sched_json)
        },
    )?;
    report(g, &summary, &a.out)
}

/// AdamW's weight decay and the EMA's decay: a resumed run's own (runs saved before
/// they were recorded: the command line's), else the command line's.
fn optimiser(session: &Session, run: &RunArgs) -> (f64, f64) {
    let saved = session.record.as_ref().map(|r| &r.options["optimiser"]);
    let get = |key: &str, given: f64| saved.and_then(|o| o[key].as_f64()).unwrap_or(given);
    (get("weight_decay", run.weight_decay), get("ema", run.ema))
}

/// The trained model a run started from: `--init`, or a resumed run's own.
fn init_dir(session: &Session, init: &Option<PathBuf>) -> Option<PathBuf> {
    match &session.record {
        Some(r) => r.options["init"].as_str().map(PathBuf::from),
        None => init.clone(),
    }
}

/// Copies a trained pipeline's tokenizer folder (the vocabulary its text encoder knows).
fn copy_tokenizer(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("creating {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("{}: --init needs a pipeline trained by `stipple train image`", from.display()))? {
        let src = entry?.path();
        if let Some(name) = src.file_name().filter(|_| src.is_file()) {
            stipple_core::output::write_file(&to.join(name), true, |tmp| Ok::<_, anyhow::Error>(std::fs::copy(&src, tmp).map(|_| ())?))?;
        }
    }
    Ok(())
}

/// model_index.json, the scheduler config, the autoencoder (copied when it lives
/// elsewhere) and, for spectrogram sets, the data's `spectrogram_params.json`.
fn write_pipeline_files(out: &Path, vae: &Path, data: &Path, scheduler: &serde_json::Value) -> Result<()> {
    let index = json!({
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.42.1",
        "feature_extractor": [null, null],
        "image_encoder": [null, null],
        "requires_safety_checker": false,
        "safety_checker": [null, null],
        "scheduler": ["diffusers", scheduler["_class_name"]],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
    });
    let write = |path: PathBuf, value: &serde_json::Value| -> Result<()> {
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new(".")))?;
        let text = serde_json::to_string_pretty(value)?;
        stipple_core::output::write_file(&path, true, |tmp| Ok::<_, anyhow::Error>(std::fs::write(tmp, &text)?))
    };
    write(out.join("model_index.json"), &index)?;
    write(out.join("scheduler/scheduler_config.json"), scheduler)?;
    let params = data.join("spectrogram_params.json");
    if params.is_file() {
        stipple_core::output::write_file(&out.join("spectrogram_params.json"), true, |tmp| Ok::<_, anyhow::Error>(std::fs::copy(&params, tmp).map(|_| ())?))?;
    }
    let target = out.join("vae");
    let same = std::fs::canonicalize(vae).ok().zip(std::fs::canonicalize(&target).ok()).is_some_and(|(a, b)| a == b);
    if !same {
        std::fs::create_dir_all(&target)?;
        for f in ["config.json", "diffusion_pytorch_model.safetensors"] {
            let (src, dst) = (vae.join(f), target.join(f));
            stipple_core::output::write_file(&dst, true, |tmp| Ok::<_, anyhow::Error>(std::fs::copy(&src, tmp).map(|_| ())?))?;
        }
    }
    Ok(())
}
