//! Parity of every continuous sampler with HF diffusers, on golden files written by
//! `tools/make_scheduler_goldens.py` (diffusers 0.42.1): timesteps, sigmas,
//! init_noise_sigma, every noise draw, and the sample after each step, for the SD 1.5,
//! SD 2.1 (v), sd-turbo (trailing), zero-SNR, cosine, SD3 and FLUX-style configs.

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use serde::Deserialize;
use stipple_core::config::SchedulerConfig;
use stipple_core::noise::ReplayNoise;
use stipple_core::progress::{CancelToken, NoProgress};
use stipple_core::samplers::{self, SamplerSpec, Scheduler};
use stipple_core::timesteps::img2img_start;

/// Relative tolerance on samples: max |rust - diffusers| / max |diffusers|.
const TOL: f64 = 1e-5;

#[derive(Deserialize)]
struct Golden {
    config_name: String,
    config: serde_json::Value,
    shape: Vec<usize>,
    flux_mu: Option<f64>,
    alphas_cumprod: Option<Vec<f64>>,
    cases: Vec<Case>,
}

#[derive(Deserialize)]
struct Case {
    sampler: String,
    steps: usize,
    timesteps: Vec<f64>,
    sigmas: Option<Vec<f64>>,
    init_noise_sigma: Option<f64>,
    base: Vec<f32>,
    init_noise: Vec<f32>,
    strength: Option<f64>,
    init_latents: Option<Vec<f32>>,
    start_index: Option<usize>,
    noised: Option<Vec<f32>>,
    samples: Vec<Vec<f32>>,
    noises: Vec<Vec<f32>>,
}

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/schedulers")
}

fn load(name: &str) -> Golden {
    let text = std::fs::read_to_string(golden_dir().join(format!("{name}.json"))).expect("golden file");
    serde_json::from_str(&text).expect("golden json")
}

/// The golden sampler names map to a user-facing spec plus config overrides.
fn spec_for(name: &str) -> (SamplerSpec, serde_json::Value) {
    let (user, overrides) = match name {
        "ddim-eta" => ("ddim", serde_json::json!({"eta": 0.6})),
        "pndm" => ("pndm", serde_json::json!({"skip_prk_steps": true})),
        "euler-karras" => ("euler", serde_json::json!({"use_karras_sigmas": true})),
        "euler-exponential" => ("euler", serde_json::json!({"use_exponential_sigmas": true})),
        "heun-karras" => ("heun", serde_json::json!({"use_karras_sigmas": true})),
        "dpm++2m-exponential" => ("dpm++2m", serde_json::json!({"use_exponential_sigmas": true})),
        "unipc-karras" => ("unipc", serde_json::json!({"use_karras_sigmas": true})),
        other => (other, serde_json::json!({})),
    };
    (user.parse().unwrap_or_else(|e| panic!("{name}: {e}")), overrides)
}

/// The fixed "denoiser" of the golden script.
fn model(input: &Tensor, t: f64, base: &Tensor) -> Tensor {
    let a = 0.8 + 0.2 * (t * 0.0031).cos();
    let b = 0.3 * (t * 0.0017 + 1.0).sin();
    let a = a as f32 as f64;
    let b = b as f32 as f64;
    (input.affine(0.7, 0.0).unwrap().tanh().unwrap().affine(a, 0.0).unwrap() + base.affine(b, 0.0).unwrap()).unwrap()
}

fn rel_err(got: &Tensor, want: &[f32]) -> f64 {
    let got: Vec<f32> = got.flatten_all().unwrap().to_vec1().unwrap();
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(0f64, |m, &v| m.max(v.abs() as f64)).max(1e-6);
    let err = got.iter().zip(want).fold(0f64, |m, (&g, &w)| m.max((g as f64 - w as f64).abs()));
    err / scale
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * b.abs().max(1e-3)
}

fn check_config(name: &str) -> (usize, f64) {
    let golden = load(name);
    let dev = Device::Cpu;
    let base_cfg: SchedulerConfig = serde_json::from_value(golden.config.clone()).unwrap();
    if let Some(ac) = &golden.alphas_cumprod {
        let schedule = base_cfg.noise_schedule(&samplers::Ddpm::DEFAULTS).unwrap();
        for (i, (&g, &w)) in schedule.alphas_cumprod.iter().zip(ac).enumerate() {
            assert!(close(g as f64, w, 1e-6), "{name}: alphas_cumprod[{i}] {g} vs {w}");
        }
    }
    let mut worst = 0f64;
    for case in &golden.cases {
        let label = format!("{}/{}/{} steps{}", golden.config_name, case.sampler, case.steps,
            case.strength.map(|s| format!(" img2img {s}")).unwrap_or_default());
        let (spec, overrides) = spec_for(&case.sampler);
        let cfg = base_cfg.with_overrides(&overrides).unwrap();
        let mut sched = spec.build(&cfg, case.steps, golden.flux_mu).unwrap_or_else(|e| panic!("{label}: {e}"));
        let ts = sched.timesteps();
        assert_eq!(ts.len(), case.timesteps.len(), "{label}: timestep count {ts:?} vs {:?}", case.timesteps);
        for (i, (&g, &w)) in ts.iter().zip(&case.timesteps).enumerate() {
            assert!(close(g, w, 1e-5), "{label}: timestep[{i}] {g} vs {w}");
        }
        if let (Some(g), Some(w)) = (sched.sigmas(), &case.sigmas) {
            assert_eq!(g.len(), w.len(), "{label}: sigma count");
            for (i, (&g, &w)) in g.iter().zip(w).enumerate() {
                assert!(close(g as f64, w, 1e-5), "{label}: sigma[{i}] {g} vs {w}");
            }
        }
        let shape = golden.shape.clone();
        let base = Tensor::from_vec(case.base.clone(), shape.clone(), &dev).unwrap();
        let init_noise = Tensor::from_vec(case.init_noise.clone(), shape.clone(), &dev).unwrap();
        let (x, start) = match (&case.init_latents, case.start_index) {
            (Some(init), Some(start)) => {
                assert_eq!(img2img_start(case.steps, case.strength.unwrap(), sched.order()).unwrap(), start, "{label}");
                if case.samples.is_empty() {
                    continue;
                }
                let x0 = Tensor::from_vec(init.clone(), shape.clone(), &dev).unwrap();
                let noised = sched.add_noise(&x0, &init_noise, start).unwrap();
                let e = rel_err(&noised, case.noised.as_ref().unwrap());
                assert!(e < TOL, "{label}: add_noise rel err {e}");
                (noised, start)
            }
            _ => {
                let s = case.init_noise_sigma.unwrap();
                assert!(close(sched.init_noise_sigma(), s, 1e-6), "{label}: init_noise_sigma {} vs {s}", sched.init_noise_sigma());
                (init_noise.affine(s as f32 as f64, 0.0).unwrap(), 0)
            }
        };
        let mut noise = ReplayNoise::new(case.noises.clone(), vec![]);
        let mut x = x;
        for (k, i) in (start..sched.timesteps().len()).enumerate() {
            let t = sched.timesteps()[i];
            let input = sched.scale_model_input(&x, i).unwrap();
            let out = model(&input, t, &base);
            x = sched.step(&out, i, &x, &mut noise).unwrap_or_else(|e| panic!("{label}: step {i}: {e}"));
            let e = rel_err(&x, &case.samples[k]);
            worst = worst.max(e);
            assert!(e < TOL, "{label}: step {i} (t = {t}) sample rel err {e:.3e}");
        }
        assert_eq!(noise.remaining_normals(), 0, "{label}: diffusers drew more noise than stipple");
        // The shared loop gives the same final sample.
        if start == 0 {
            let mut fresh = spec.build(&cfg, case.steps, golden.flux_mu).unwrap();
            let mut noise = ReplayNoise::new(case.noises.clone(), vec![]);
            let x0 = init_noise.affine(case.init_noise_sigma.unwrap() as f32 as f64, 0.0).unwrap();
            let mut denoiser = |inp: &Tensor, t: f64| Ok(model(inp, t, &base));
            let out = samplers::sample(fresh.as_mut(), x0, 0, &mut denoiser, &mut noise, &mut NoProgress, &CancelToken::new()).unwrap();
            let e = rel_err(&out, case.samples.last().unwrap());
            assert!(e < TOL, "{label}: sample() loop rel err {e}");
        }
    }
    eprintln!("{name}: {} cases, worst relative error {worst:.2e}", golden.cases.len());
    (golden.cases.len(), worst)
}

#[test]
fn sd15() {
    check_config("sd15");
}

#[test]
fn sd21_v_prediction() {
    check_config("sd21v");
}

#[test]
fn sd_turbo_trailing() {
    check_config("sdturbo");
}

#[test]
fn zero_terminal_snr() {
    check_config("zsnr");
}

#[test]
fn cosine_schedule() {
    check_config("cosine");
}

#[test]
fn sd3_flow() {
    check_config("sd3");
}

#[test]
fn flux_dynamic_shift() {
    check_config("flux");
}

#[test]
fn every_user_facing_name_is_covered() {
    let mut covered = std::collections::BTreeSet::new();
    for name in ["sd15", "sd3"] {
        for case in load(name).cases {
            covered.insert(spec_for(&case.sampler).0.kind as u8);
        }
    }
    for name in samplers::SAMPLER_NAMES {
        let spec: SamplerSpec = name.parse().unwrap();
        assert!(covered.contains(&(spec.kind as u8)), "{name} has no golden case");
    }
}

#[test]
fn cancellation_stops_the_loop() {
    let cfg = SchedulerConfig::from_json(r#"{"beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012}"#).unwrap();
    let mut sched: Box<dyn Scheduler> = "euler".parse::<SamplerSpec>().unwrap().build(&cfg, 10, None).unwrap();
    let cancel = CancelToken::new();
    let mut calls = 0;
    let c2 = cancel.clone();
    let mut denoiser = |x: &Tensor, _t: f64| {
        calls += 1;
        if calls == 3 {
            c2.cancel();
        }
        Ok(x.zeros_like()?)
    };
    let x = Tensor::zeros((1, 4, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let mut noise = stipple_core::noise::PortableRng::new(0);
    let r = samplers::sample(sched.as_mut(), x, 0, &mut denoiser, &mut noise, &mut NoProgress, &cancel);
    assert!(matches!(r, Err(stipple_core::Error::Cancelled)));
    assert_eq!(calls, 3);
}
