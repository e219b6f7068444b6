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
mod progress;
mod schedule;
mod studio;
mod text;
#[cfg(feature = "train")]
mod train;

/// Diffusion generation of text, images and music.
#[derive(Parser, Debug)]
#[command(name = "stipple", version, about, long_about = None)]
pub struct Cli {
    /// Compute device: cpu or cuda:N.
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
    /// Run a file of jobs: one stipple command line per line (`#` comments).
    Batch(batch::BatchArgs),
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

/// Runs one parsed command line.
pub fn run(cli: &Cli) -> Result<()> {
    // Validate the global options early so mistakes are reported before any work.
    let global = Global { device: cli.device.open()?, dtype: cli.dtype.0, seed: cli.seed, json: cli.json, out_dir: cli.out_dir.clone() };
    if let Some(dir) = &global.out_dir
        && !dir.is_dir()
    {
        anyhow::bail!("--out-dir {}: no such folder", dir.display());
    }
    stipple_core::memory::set_limit(cli.max_memory.unwrap_or_default());
    match &cli.command {
        Command::Schedule(args) => schedule::run(cli, args),
        Command::Params => {
            print!("{}", stipple::parameters::markdown());
            Ok(())
        }
        Command::Text(args) => text::run(&global, args),
        Command::Infill(args) => infill::run(&global, args),
        Command::Image(args) => image::run(&global, args),
        Command::Audio(args) => audio::run(&global, args),
        Command::Bench(args) => bench::run(&global, args),
        #[cfg(feature = "train")]
        Command::Train(args) => train::run(&global, args),
        Command::Batch(args) => batch::run(cli, args),
        Command::Studio(args) => studio::run(&global, args),
    }
}

/// Global options, resolved.
pub struct Global {
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
}

impl Global {
    /// Where an output named `path` goes: as given, or inside `--out-dir` (refused when it
    /// would leave it).
    pub fn output(&self, path: &std::path::Path) -> Result<std::path::PathBuf> {
        match &self.out_dir {
            None => Ok(path.to_path_buf()),
            Some(root) => Ok(stipple_core::output::confine(root, path)?),
        }
    }
}
