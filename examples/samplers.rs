//! Runs every stipple sampler on Gaussian "data" with the exact denoiser and prints how
//! close the samples come to the data distribution, and how long each run took.
//!
//! cargo run --release --example samplers -- [steps]

use std::time::Instant;

use candle_core::{DType, Device};
use stipple::core::config::{SchedulerConfig, presets};
use stipple::core::noise::PortableRng;
use stipple::core::progress::{CancelToken, NoProgress};
use stipple::core::samplers::{self, SAMPLER_NAMES, SamplerSpec, analytic::GaussianData};

fn main() -> anyhow::Result<()> {
    let steps: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(20);
    let (mu, std) = (0.5, 0.3);
    println!("target: mean {mu}, std {std}; {steps} steps; 4 x 4 x 64 x 64 latents");
    for name in SAMPLER_NAMES {
        let spec: SamplerSpec = name.parse()?;
        let preset = if *name == "flow-euler" { presets::SD3 } else { presets::SD15 };
        let cfg = SchedulerConfig::from_json(preset)?;
        let steps = if *name == "lcm" { steps.min(50) } else { steps };
        let mut scheduler = spec.build(&cfg, steps, None)?;
        let mut rng = PortableRng::new(0);
        let x = rng.randn((4, 4, 64, 64), DType::F32, &Device::Cpu)?.affine(scheduler.init_noise_sigma(), 0.0)?;
        let mut model = GaussianData::new(mu, std, &cfg)?;
        let start = Instant::now();
        let out = samplers::sample(scheduler.as_mut(), x, 0, &mut model, &mut rng, &mut NoProgress, &CancelToken::new())?;
        let v: Vec<f32> = out.flatten_all()?.to_vec1()?;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / v.len() as f64;
        let sd = (v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / v.len() as f64).sqrt();
        println!("{name:>16}: mean {mean:.4}  std {sd:.4}  ({} model calls, {:.1} ms)", scheduler.timesteps().len(), start.elapsed().as_secs_f64() * 1e3);
    }
    Ok(())
}
