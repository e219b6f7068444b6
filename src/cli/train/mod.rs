//! `stipple train`: preparing data and training small models with stipple itself —
//! masked-diffusion text models ([`text`]), latent text-to-image models ([`image`]) and,
//! on spectrogram pictures, text-to-music models ([`music`]). The recipes and the run
//! driver live in the library (`stipple_core::training`, each backend's `train`); this
//! module parses arguments and draws the progress bar ([`RunBar`]).

pub mod image;
pub mod music;
pub mod text;

use anyhow::Result;
use clap::{Args, Subcommand};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stipple_core::training::{RunEvent, RunSettings};

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
    /// The library's run settings, with the global seed.
    pub fn settings(&self, g: &Global) -> RunSettings {
        RunSettings {
            resume: self.resume,
            steps: self.steps,
            lr: self.lr,
            warmup: self.warmup,
            weight_decay: self.weight_decay,
            clip: self.clip,
            ema: self.ema,
            checkpoint_every: self.checkpoint_every,
            max_minutes: self.max_minutes,
            seed: g.seed.unwrap_or(0),
        }
    }
}

/// Draws a run's events: a bar on a terminal (loss, throughput, learning rate), a line
/// per checkpoint in logs of unattended runs, nothing but notes with `--json`.
pub struct RunBar {
    bar: ProgressBar,
    /// The bar draws only on a terminal; logs get a line per checkpoint instead.
    log_lines: bool,
}

impl RunBar {
    /// Runs a recipe with a bar, then prints its summary.
    pub fn drive<E: Into<anyhow::Error>>(g: &Global, out: &std::path::Path, recipe: impl FnOnce(&mut dyn FnMut(&RunEvent)) -> std::result::Result<serde_json::Value, E>) -> Result<()> {
        let bar = Self::new(g)?;
        let summary = recipe(&mut |e| bar.show(e)).map_err(Into::into)?;
        bar.finish(g, &summary, out);
        Ok(())
    }

    /// A bar for a run (hidden with `--json`).
    pub fn new(g: &Global) -> Result<Self> {
        let bar = ProgressBar::with_draw_target(Some(0), if g.json { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
        bar.set_style(ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps {elapsed_precise} (eta {eta})")?.progress_chars("=> "));
        Ok(Self { bar, log_lines: !g.json && !std::io::IsTerminal::is_terminal(&std::io::stderr()) })
    }

    /// Shows one event.
    pub fn show(&self, event: &RunEvent) {
        match event {
            RunEvent::Started { step, of, resumed } => {
                if *resumed {
                    eprintln!("resuming at step {step} of {of}");
                }
                self.bar.set_length(*of as u64);
                self.bar.set_position(*step as u64);
            }
            RunEvent::Note(line) => eprintln!("{line}"),
            RunEvent::Step(s) => {
                self.bar.set_message(format!("loss {:.4} | {:.0} {}/s | lr {:.1e}", s.loss_avg, s.rate, s.unit, s.lr));
                self.bar.set_position(s.step as u64);
            }
            RunEvent::Saved(s) => {
                if self.log_lines {
                    eprintln!("step {}/{}: loss {:.4}, {:.0} {}/s, lr {:.2e}, {:.1} min", s.step, s.of, s.loss_avg, s.rate, s.unit, s.lr, s.minutes);
                }
            }
        }
    }

    /// Ends the bar and prints the run's summary (JSON, or a line naming the model).
    pub fn finish(&self, g: &Global, summary: &serde_json::Value, out: &std::path::Path) {
        self.bar.finish();
        if g.json {
            println!("{summary}");
        } else {
            println!("{}/{} steps in {:.1} min; model in {}, loss curve in {}", summary["steps"], summary["of_steps"], summary["seconds"].as_f64().unwrap_or(0.0) / 60.0, out.display(), out.join("loss.png").display());
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
