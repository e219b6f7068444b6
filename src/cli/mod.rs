//! The command line: the parsed [`Cli`], global options, progress bars, and one module
//! per command. It parses arguments and draws progress; the work is done by the library
//! crates, so the studio and other front ends share it.

use anyhow::Result;
use clap::{Parser, Subcommand};
use device::{DTypeArg, DeviceArg};

mod audio;
mod batch;
mod bench;
mod bench_kernels;
mod device;
mod image;
mod infill;
mod models;
mod progress;
mod schedule;
mod serve;
mod studio;
mod text;
#[cfg(feature = "train")]
mod train;

/// Diffusion generation of text, images and music.
#[derive(Parser, Debug)]
#[command(name = "stipple", version, about, long_about = None)]
pub struct Cli {
    /// Compute device: cpu, cuda:N, or auto (the first GPU when built with CUDA and one is
    /// there, else the CPU).
    #[arg(long, global = true, default_value = "cpu")]
    pub device: DeviceArg,
    /// Floating-point type of the model weights: f32, f16 or bf16.
    #[arg(long, global = true, default_value = "f32")]
    pub dtype: DTypeArg,
    /// Seed of the portable noise generator (the same seed gives the same result on every device).
    #[arg(long, global = true)]
    pub seed: Option<u64>,
    /// Print one JSON object on stdout (progress goes to stderr).
    #[arg(long, global = true)]
    pub json: bool,
    /// Most memory the process may use, e.g. 8G or 512M (default: what the machine has
    /// available). Runs predicted to need more are refused before they start.
    #[arg(long, global = true, value_name = "SIZE")]
    pub max_memory: Option<stipple_core::memory::MemoryLimit>,
    /// Write outputs inside this folder only: output paths are taken relative to it, and
    /// absolute paths, `..` and links out of it are refused (what `stipple batch` applies
    /// to its jobs).
    #[arg(long, global = true, value_name = "DIR")]
    pub out_dir: Option<std::path::PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate text with a masked-diffusion language model (LLaDA, Dream, BERT-family).
    #[command(allow_negative_numbers = true)]
    Text(text::TextArgs),
    /// Fill the holes of a text template under constraints.
    #[command(allow_negative_numbers = true)]
    Infill(infill::InfillArgs),
    /// Generate images with a Stable Diffusion-family model.
    #[command(allow_negative_numbers = true)]
    Image(image::ImageArgs),
    /// Generate music as spectrograms (Riffusion), or convert audio <-> spectrograms.
    #[command(allow_negative_numbers = true)]
    Audio(audio::AudioArgs),
    /// Run a file of jobs (JSON Lines, or one command line per line), resumably: results
    /// and a manifest go to --out; `batch merge` joins the manifests of shards.
    Batch(batch::BatchArgs),
    /// Serve the models over HTTP: OpenAI-compatible text and images, AUTOMATIC1111's API,
    /// infilling, music, health and Prometheus metrics (see docs/serve.md).
    Serve(serve::ServeArgs),
    /// Open the desktop studio (text, image and music tabs; built with `--features studio`).
    Studio(studio::StudioArgs),
    /// Prepare data, train small text, image and music models, and measure them.
    #[cfg(feature = "train")]
    Train(train::TrainArgs),
    /// Benchmark models and kernels.
    Bench(bench::BenchArgs),
    /// Print the timesteps and sigmas a sampler will use (inspect a scheduler_config.json).
    Schedule(schedule::ScheduleArgs),
    /// Print every parameter's allowed range and the rules between them (Markdown).
    Params,
}

/// Runs one parsed command line, printing its JSON summary with `--json`.
pub fn run(cli: &Cli) -> Result<()> {
    let models = models::ModelCache::default();
    let summary = execute(cli, &Context { models: &models, bars: None })?;
    if let (true, Some(summary)) = (cli.json, summary) {
        println!("{summary}");
    }
    Ok(())
}

/// What a command runs with beyond its arguments: the models already loaded, and the
/// progress display it draws under (a batch's).
pub struct Context<'a> {
    /// Loaded models, reused across the jobs of a batch.
    pub models: &'a models::ModelCache,
    /// The batch's progress display: a job's step bar goes under the batch's bar, and the
    /// job prints no messages of its own.
    pub bars: Option<&'a indicatif::MultiProgress>,
}

/// Runs one parsed command line and returns its JSON summary (paths written, seed,
/// timings), for the commands that make one.
pub fn execute(cli: &Cli, ctx: &Context<'_>) -> Result<Option<serde_json::Value>> {
    let global = global(cli, ctx)?;
    let none = |r: Result<()>| r.map(|()| None);
    match &cli.command {
        Command::Schedule(args) => schedule::run(args, global.quiet()).map(Some),
        Command::Params => {
            print!("{}", stipple::parameters::markdown());
            Ok(None)
        }
        Command::Text(args) => text::run(&global, args).map(Some),
        Command::Infill(args) => infill::run(&global, args).map(Some),
        Command::Image(args) => image::run(&global, args).map(Some),
        Command::Audio(args) => audio::run(&global, args).map(Some),
        Command::Bench(args) => none(bench::run(&global, args)),
        #[cfg(feature = "train")]
        Command::Train(args) => none(train::run(&global, args)),
        Command::Batch(args) => none(batch::run(cli, args)),
        Command::Studio(args) => none(studio::run(&global, args)),
        Command::Serve(args) => none(serve::run(&global, args)),
    }
}

/// The global options of `cli` resolved (checked before any work), in the context `ctx`;
/// sets the process's memory limit to the command's.
pub fn global<'a>(cli: &Cli, ctx: &Context<'a>) -> Result<Global<'a>> {
    let global = Global {
        device: ctx.models.device(cli.device)?,
        dtype: cli.dtype.0,
        seed: cli.seed,
        json: cli.json,
        out_dir: cli.out_dir.clone(),
        models: ctx.models,
        bars: ctx.bars,
    };
    if let Some(dir) = &global.out_dir
        && !dir.is_dir()
    {
        anyhow::bail!("--out-dir {}: no such folder", dir.display());
    }
    stipple_core::memory::set_limit(cli.max_memory.unwrap_or_default());
    Ok(global)
}

/// Global options, resolved, and the context a command runs in.
pub struct Global<'a> {
    /// Compute device.
    pub device: candle_core::Device,
    /// Weight dtype.
    pub dtype: candle_core::DType,
    /// Seed (None: the command's default).
    pub seed: Option<u64>,
    /// One JSON object on stdout.
    pub json: bool,
    /// The folder outputs are confined to (`--out-dir`).
    pub out_dir: Option<std::path::PathBuf>,
    /// Loaded models, reused across a batch's jobs.
    pub models: &'a models::ModelCache,
    /// A batch's progress display (see [`Context::bars`]).
    pub bars: Option<&'a indicatif::MultiProgress>,
}

impl Global<'_> {
    /// Whether the command prints its own messages and draws its own progress bar (not
    /// inside a batch, and not with `--json`, whose stdout is one object).
    pub fn quiet(&self) -> bool {
        self.json || self.bars.is_some()
    }

    /// A step progress bar for this command: its own, or a line under the batch's bar.
    pub fn step_bar(&self, label: &str) -> progress::BarProgress {
        match self.bars {
            Some(bars) => progress::BarProgress::under(bars, label),
            None => progress::BarProgress::new(label, self.json),
        }
    }

    /// Where an output named `path` goes: as given, or inside `--out-dir` (refused when it
    /// would leave it).
    pub fn output(&self, path: &std::path::Path) -> Result<std::path::PathBuf> {
        match &self.out_dir {
            None => Ok(path.to_path_buf()),
            Some(root) => Ok(stipple_core::output::confine(root, path)?),
        }
    }
}
