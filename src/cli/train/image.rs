//! Images: `stipple train prepare-emoji`, `vae` and `image`. The result is a diffusers
//! Stable Diffusion folder (model_index.json, scheduler, tokenizer, text_encoder, unet,
//! vae) that `stipple image --model` loads.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, ValueEnum};
use serde_json::json;
use stipple_core::prediction::PredictionType;
use stipple_image::train::image_recipe::{self, ImageTrainJob, TextToImageShape};
use stipple_image::train::vae_recipe::{self, VaeShape, VaeTrainJob};
use stipple_image::train::{emoji, eval};

use super::super::Global;
use super::{RunArgs, RunBar};

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
    let opts = eval::EvalOptions { prompts: a.prompts, steps: a.steps, guidance: a.guidance.clone(), seed: g.seed.unwrap_or(0) };
    let r = eval::eval_image(&a.model, &a.data, &opts, &g.device, g.dtype)?;
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
    let opts = emoji::EmojiOptions { size: a.size, skip_categories: a.skip_category.clone() };
    let records = emoji::prepare_set(&a.sprites, &a.names, &a.out, &opts)?;
    if g.json {
        println!("{}", json!({ "pictures": records.len(), "size": a.size }));
    } else {
        println!("{} captioned {}x{} pictures in {}", records.len(), a.size, a.size, a.out.display());
    }
    Ok(())
}

pub fn train_vae(g: &Global, a: &VaeTrainArgs) -> Result<()> {
    let job = VaeTrainJob {
        data: a.data.clone(),
        out: a.out.clone(),
        run: a.run.settings(g),
        shape: VaeShape { size: a.size, channels: a.channels.clone(), latent_channels: a.latent_channels, groups: a.groups },
        batch: a.batch,
        kl_weight: a.kl_weight,
        init: a.init.clone(),
        decoder_only: a.decoder_only,
    };
    RunBar::drive(g, &a.out, |events| vae_recipe::train_vae(&job, &g.device, events))
}

pub fn train_image(g: &Global, a: &ImageTrainArgs) -> Result<()> {
    let job = ImageTrainJob {
        data: a.data.clone(),
        vae: a.vae.clone(),
        out: a.out.clone(),
        run: a.run.settings(g),
        shape: TextToImageShape { channels: a.channels.clone(), heads: a.heads, groups: a.groups, text_hidden: a.text_hidden, text_layers: a.text_layers, max_tokens: a.max_tokens },
        batch: a.batch,
        caption_dropout: a.caption_dropout,
        prediction: match a.prediction {
            PredictionArg::Epsilon => PredictionType::Epsilon,
            PredictionArg::V => PredictionType::VPrediction,
        },
        init: a.init.clone(),
    };
    RunBar::drive(g, &a.out, |events| image_recipe::train_image(&job, &g.device, events))
}
