//! `stipple schedule`: the timesteps and sigmas a sampler will use.

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use stipple_core::config::{SchedulerConfig, presets};
use stipple_core::samplers::{SAMPLER_NAMES, SamplerSpec, SigmaSpacing};


#[derive(Args, Debug)]
pub struct ScheduleArgs {
    /// Sampler name.
    #[arg(long, default_value = "euler", help = format!("Sampler: {}", SAMPLER_NAMES.join(", ")))]
    pub scheduler: String,
    /// Number of inference steps.
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Sigma spacing override: karras or exponential.
    #[arg(long)]
    pub sigmas: Option<SigmaSpacing>,
    /// A diffusers scheduler_config.json (or a model folder containing scheduler/scheduler_config.json).
    #[arg(long, conflicts_with = "preset")]
    pub config: Option<std::path::PathBuf>,
    /// A built-in hub config: sd15, sd21v, sd-turbo, sd3.
    #[arg(long, default_value = "sd15")]
    pub preset: String,
    /// Dynamic flow shift mu (flow configs with use_dynamic_shifting).
    #[arg(long)]
    pub mu: Option<f64>,
}

/// Prints the schedule (without `--json`) and returns it as JSON.
pub fn run(args: &ScheduleArgs, quiet: bool) -> Result<serde_json::Value> {
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
    let summary = json!({
        "scheduler": spec.to_string(),
        "steps": args.steps,
        "model_calls": sched.timesteps().len(),
        "timesteps": sched.timesteps(),
        "sigmas": sched.sigmas(),
        "init_noise_sigma": sched.init_noise_sigma(),
    });
    if !quiet {
        println!("{spec}: {} steps, {} model calls, init_noise_sigma {:.6}", args.steps, sched.timesteps().len(), sched.init_noise_sigma());
        for (i, t) in sched.timesteps().iter().enumerate() {
            match sched.sigmas() {
                Some(s) => println!("{i:4}  t = {t:10.4}  sigma = {:.6}", s[i]),
                None => println!("{i:4}  t = {t:10.4}"),
            }
        }
    }
    Ok(summary)
}

