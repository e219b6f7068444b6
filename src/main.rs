//! The `stipple` command-line tool.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use serde_json::json;
use stipple::cli::device::{DTypeArg, DeviceArg};
use stipple_core::config::{SchedulerConfig, presets};
use stipple_core::samplers::{SAMPLER_NAMES, SamplerSpec, SigmaSpacing};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keep freed memory mapped: candle allocates a fresh buffer for every op, and returning
/// pages to the OS makes the kernel zero them again on the next step (measured ~20% of a
/// UNet step). `MIMALLOC_PURGE_DELAY` in the environment still wins.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // Safety: plain option setter of the linked mimalloc, called before other threads start.
        // mi_option_purge_delay (index 15 in mimalloc 2.x and 3.x; libmimalloc-sys lacks the name)
        const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
        unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
        // Large tensors (logits, activations of a training batch) are "huge" objects that
        // mimalloc maps from the OS one by one, so each costs a fresh round of page zeroing;
        // from a reserved arena they are reused instead (address space only, committed on
        // use; measured 15% of a training step).
        // Safety: mimalloc's documented reservation call, made before other threads start.
        unsafe { mi_reserve_os_memory(8 << 30, false, true) };
    }
}

unsafe extern "C" {
    /// mimalloc's `mi_reserve_os_memory` (libmimalloc-sys exposes only the arena-id variant).
    fn mi_reserve_os_memory(size: usize, commit: bool, allow_large: bool) -> std::ffi::c_int;
}

/// Diffusion generation of text, images and music.
#[derive(Parser, Debug)]
#[command(name = "stipple", version, about, long_about = None)]
struct Cli {
    /// Compute device: cpu or cuda:N.
    #[arg(long, global = true, default_value = "cpu")]
    device: DeviceArg,
    /// Floating-point type of the model weights: f32, f16 or bf16.
    #[arg(long, global = true, default_value = "f32")]
    dtype: DTypeArg,
    /// Seed of the portable noise generator (the same seed gives the same result on every device).
    #[arg(long, global = true)]
    seed: Option<u64>,
    /// Print one JSON object on stdout (progress goes to stderr).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Generate text with a masked-diffusion language model (LLaDA, Dream, BERT-family).
    Text(stipple::cli::text::TextArgs),
    /// Fill the holes of a text template under constraints.
    Infill(stipple::cli::infill::InfillArgs),
    /// Generate images with a Stable Diffusion-family model.
    Image(stipple::cli::image::ImageArgs),
    /// Generate music as spectrograms (Riffusion), or convert audio <-> spectrograms.
    Audio(stipple::cli::audio::AudioArgs),
    /// Run a file of jobs: one stipple command line per line (`#` comments).
    Batch(BatchArgs),
    /// Open the desktop studio (text, image and music tabs; built with `--features studio`).
    Studio(stipple::cli::studio::StudioArgs),
    /// Prepare data and train small models (text now; images and music follow).
    Train(stipple::cli::train::TrainArgs),
    /// Benchmark models and kernels.
    Bench(stipple::cli::bench::BenchArgs),
    /// Print the timesteps and sigmas a sampler will use (inspect a scheduler_config.json).
    Schedule(ScheduleArgs),
}

#[derive(Args, Debug)]
struct BatchArgs {
    /// The job file: one command per line, as typed after `stipple` (e.g.
    /// `text "Call me Ishmael" --gen-len 32` or `image "red heart" --out heart.png`);
    /// blank lines and lines starting with # are skipped.
    file: std::path::PathBuf,
    /// Run the remaining jobs after one fails (the exit status still reports the failure).
    #[arg(long)]
    keep_going: bool,
}

#[derive(Args, Debug)]
struct ScheduleArgs {
    /// Sampler name.
    #[arg(long, default_value = "euler", help = format!("Sampler: {}", SAMPLER_NAMES.join(", ")))]
    scheduler: String,
    /// Number of inference steps.
    #[arg(long, default_value_t = 30)]
    steps: usize,
    /// Sigma spacing override: karras or exponential.
    #[arg(long)]
    sigmas: Option<SigmaSpacing>,
    /// A diffusers scheduler_config.json (or a model folder containing scheduler/scheduler_config.json).
    #[arg(long, conflicts_with = "preset")]
    config: Option<std::path::PathBuf>,
    /// A built-in hub config: sd15, sd21v, sd-turbo, sd3.
    #[arg(long, default_value = "sd15")]
    preset: String,
    /// Dynamic flow shift mu (flow configs with use_dynamic_shifting).
    #[arg(long)]
    mu: Option<f64>,
}

fn schedule(cli: &Cli, args: &ScheduleArgs) -> Result<()> {
    let cfg = match &args.config {
        Some(path) => {
            let file = if path.is_dir() { path.join("scheduler").join("scheduler_config.json") } else { path.clone() };
            SchedulerConfig::from_file(&file).with_context(|| format!("reading {}", file.display()))?
        }
        None => {
            let text = presets::by_name(&args.preset)
                .with_context(|| format!("unknown preset {:?} (sd15, sd21v, sd-turbo, sd3)", args.preset))?;
            SchedulerConfig::from_json(text)?
        }
    };
    let mut spec: SamplerSpec = args.scheduler.parse()?;
    if let Some(s) = args.sigmas {
        spec.sigmas = s;
    }
    let sched = spec.build(&cfg, args.steps, args.mu)?;
    if cli.json {
        println!(
            "{}",
            json!({
                "scheduler": spec.to_string(),
                "steps": args.steps,
                "model_calls": sched.timesteps().len(),
                "timesteps": sched.timesteps(),
                "sigmas": sched.sigmas(),
                "init_noise_sigma": sched.init_noise_sigma(),
            })
        );
    } else {
        println!("{spec}: {} steps, {} model calls, init_noise_sigma {:.6}", args.steps, sched.timesteps().len(), sched.init_noise_sigma());
        for (i, t) in sched.timesteps().iter().enumerate() {
            match sched.sigmas() {
                Some(s) => println!("{i:4}  t = {t:10.4}  sigma = {:.6}", s[i]),
                None => println!("{i:4}  t = {t:10.4}"),
            }
        }
    }
    Ok(())
}

/// `stipple batch`: each line parsed as a command line and run in this process, in order.
/// The batch's global options (`--seed`, `--device`, `--dtype`, `--json`) apply to every job
/// unless its line gives its own. With `--json`, stdout is JSON Lines: each job's object,
/// then a summary.
fn batch(cli: &Cli, args: &BatchArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading the job file {}", args.file.display()))?;
    let mut jobs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words = shlex::split(line).with_context(|| format!("{}:{}: unbalanced quotes", args.file.display(), i + 1))?;
        let mut argv = vec!["stipple".to_string()];
        let given = |flag: &str| words.iter().any(|w| w == flag || w.starts_with(&format!("{flag}=")));
        if !given("--device") {
            argv.extend(["--device".into(), cli.device.to_string()]);
        }
        if !given("--dtype") {
            argv.extend(["--dtype".into(), cli.dtype.to_string()]);
        }
        if let (Some(seed), false) = (cli.seed, given("--seed")) {
            argv.extend(["--seed".into(), seed.to_string()]);
        }
        if cli.json && !given("--json") {
            argv.push("--json".into());
        }
        argv.extend(words);
        let job = Cli::try_parse_from(&argv).map_err(|e| anyhow::anyhow!("{}:{}: {}", args.file.display(), i + 1, e.to_string().trim_end()))?;
        if matches!(job.command, Command::Batch(_) | Command::Studio(_)) {
            bail!("{}:{}: `batch` and `studio` cannot run inside a batch", args.file.display(), i + 1);
        }
        jobs.push((i + 1, line.to_string(), job));
    }
    if jobs.is_empty() {
        bail!("{} holds no jobs", args.file.display());
    }
    let (total, mut failed) = (jobs.len(), Vec::new());
    let start = std::time::Instant::now();
    for (k, (line_no, line, job)) in jobs.iter().enumerate() {
        eprintln!("[{}/{total}] line {line_no}: {line}", k + 1);
        let t = std::time::Instant::now();
        match run(job) {
            Ok(()) => eprintln!("[{}/{total}] done in {:.1} s", k + 1, t.elapsed().as_secs_f64()),
            Err(e) => {
                if cli.json {
                    println!("{}", json!({ "line": line_no, "error": format!("{e:#}") }));
                }
                eprintln!("[{}/{total}] line {line_no} failed: {e:#}", k + 1);
                failed.push(*line_no);
                if !args.keep_going {
                    break;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if cli.json {
        println!("{}", json!({ "batch": args.file.display().to_string(), "jobs": total, "failed_lines": failed, "seconds": secs }));
    }
    eprintln!("{} of {total} jobs succeeded in {secs:.1} s", total - failed.len());
    if !failed.is_empty() {
        bail!("{} job(s) failed (lines {:?})", failed.len(), failed);
    }
    Ok(())
}

fn run(cli: &Cli) -> Result<()> {
    // Validate the global options early so mistakes are reported before any work.
    let global = stipple::cli::Global { device: cli.device.open()?, dtype: cli.dtype.0, seed: cli.seed, json: cli.json };
    match &cli.command {
        Command::Schedule(args) => schedule(cli, args),
        Command::Text(args) => stipple::cli::text::run(&global, args),
        Command::Infill(args) => stipple::cli::infill::run(&global, args),
        Command::Image(args) => stipple::cli::image::run(&global, args),
        Command::Audio(args) => stipple::cli::audio::run(&global, args),
        Command::Bench(args) => stipple::cli::bench::run(&global, args),
        Command::Train(args) => stipple::cli::train::run(&global, args),
        Command::Batch(args) => batch(cli, args),
        Command::Studio(args) => stipple::cli::studio::run(&global, args),
    }
}

fn main() -> ExitCode {
    tune_allocator();
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if cli.json {
                println!("{}", json!({ "error": format!("{e:#}") }));
            }
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
