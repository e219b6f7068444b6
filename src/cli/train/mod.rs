//! `stipple train`: preparing data and training small models with stipple itself —
//! masked-diffusion text models ([`text`]), latent text-to-image models ([`image`]) and,
//! on spectrogram pictures, text-to-music models ([`music`]),
//! through one run driver ([`session`]: checkpoints, resume, progress, loss curve).

pub mod image;
pub mod music;
pub mod session;
pub mod text;

use anyhow::Result;
use clap::{Args, Subcommand};

use super::Global;

/// `stipple train` arguments.
#[derive(Args, Debug)]
pub struct TrainArgs {
    #[command(subcommand)]
    pub command: TrainCommand,
}

/// What to prepare or train.
#[derive(Subcommand, Debug)]
pub enum TrainCommand {
    /// Clean plain-text sources into DIR/train.txt and DIR/heldout.txt.
    PrepareText(text::PrepareTextArgs),
    /// Train a byte-level BPE tokenizer on DIR/train.txt into a model folder.
    Tokenizer(text::TokenizerArgs),
    /// Train a LLaDA-architecture model with the masked-diffusion objective.
    Text(text::TextTrainArgs),
    /// Measure a text model on held-out text against a unigram baseline.
    EvalText(text::EvalTextArgs),
    /// Measure whether prompts control a trained image model (nearest training caption).
    EvalImage(image::EvalImageArgs),
    /// Rasterise an SVG emoji sprite sheet into a captioned image folder.
    PrepareEmoji(image::PrepareEmojiArgs),
    /// Render captioned General MIDI phrases as spectrograms (a music training set).
    PrepareMusic(music::PrepareMusicArgs),
    /// Measure whether prompts control a trained music model (tempo, brightness).
    EvalMusic(music::EvalMusicArgs),
    /// Train the KL autoencoder of a latent diffusion model.
    Vae(image::VaeTrainArgs),
    /// Train a text-to-image UNet and its text encoder on a trained autoencoder's latents.
    Image(image::ImageTrainArgs),
}

/// Options of every model run.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// Continue the run saved in OUT/checkpoint, with its own settings.
    #[arg(long)]
    pub resume: bool,
    /// Optimiser steps.
    #[arg(long, default_value_t = 2000)]
    pub steps: usize,
    /// Peak learning rate (default: 2e-3 for text, 1e-3 for images).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Warm-up steps.
    #[arg(long, default_value_t = 100)]
    pub warmup: usize,
    /// AdamW weight decay.
    #[arg(long, default_value_t = 0.1)]
    pub weight_decay: f64,
    /// Gradient-norm clip.
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    /// EMA decay of the saved weights.
    #[arg(long, default_value_t = 0.995)]
    pub ema: f64,
    /// Save a checkpoint (and the model, loss curve) every N steps.
    #[arg(long, default_value_t = 100)]
    pub checkpoint_every: usize,
    /// Stop (after saving) once this much wall time has passed; --resume continues.
    #[arg(long)]
    pub max_minutes: Option<f64>,
}

impl RunArgs {
    /// The loop settings with `lr` as the default peak rate.
    pub fn looped(&self, default_lr: f64, seed: u64) -> stipple_core::training::LoopOptions {
        let lr = self.lr.unwrap_or(default_lr);
        stipple_core::training::LoopOptions {
            steps: self.steps,
            schedule: stipple_core::training::WarmupCosine { peak: lr, warmup: self.warmup, total: self.steps, floor: lr * 0.1 },
            clip: Some(self.clip),
            seed,
        }
    }
}

/// Run `stipple train`.
pub fn run(g: &Global, args: &TrainArgs) -> Result<()> {
    match &args.command {
        TrainCommand::PrepareText(a) => text::prepare_text(g, a),
        TrainCommand::Tokenizer(a) => text::tokenizer(g, a),
        TrainCommand::Text(a) => text::train_text(g, a),
        TrainCommand::EvalText(a) => text::eval_text(g, a),
        TrainCommand::PrepareEmoji(a) => image::prepare_emoji(g, a),
        TrainCommand::PrepareMusic(a) => music::prepare_music(g, a),
        TrainCommand::EvalMusic(a) => music::eval_music(g, a),
        TrainCommand::Vae(a) => image::train_vae(g, a),
        TrainCommand::EvalImage(a) => image::eval_image(g, a),
        TrainCommand::Image(a) => image::train_image(g, a),
    }
}
