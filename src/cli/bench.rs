//! `stipple bench`: timed runs of real workloads, reported as medians (the machines are
//! shared and noisy), optionally against a reference run of the Python implementation
//! recorded as JSON (tools/bench_text_reference.py).

use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use serde_json::{Value, json};
use stipple_core::progress::CancelToken;
use stipple_text::generate::generate;
use stipple_text::models::{DiffusionLm, Span};
use stipple_text::GenerateConfig;

use super::Global;
use super::text::DecodeArgs;

/// `stipple bench` arguments.
#[derive(Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

/// What to benchmark.
#[derive(Subcommand, Debug)]
pub enum BenchWhat {
    /// Text generation: tokens per second and the forward-pass time.
    Text(TextBench),
    /// One UNet evaluation of an image model, as a guided sampling step makes it.
    Image(ImageBench),
    /// Rendering a spectrogram (inverse mel + Griffin-Lim), and optionally the whole
    /// text-to-music path's real-time factor with a model.
    Audio(AudioBench),
    /// stipple's fused kernels against the candle ops they replace, at real models' shapes
    /// (on the `--device` and `--dtype` given).
    Kernels(super::bench_kernels::KernelBench),
}

/// `stipple bench audio` arguments.
#[derive(Args, Debug)]
pub struct AudioBench {
    /// Seconds of audio to render (5.12 = one Riffusion window).
    #[arg(long, default_value_t = 5.12)]
    pub seconds: f64,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Also time text-to-music with this model (a Riffusion-layout folder).
    #[arg(long)]
    pub model: Option<std::path::PathBuf>,
    /// Denoising steps per window for the text-to-music timing.
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    /// A reference run (JSON with render_median_s, from tools/bench_audio_reference.py) to compare with.
    #[arg(long)]
    pub reference: Option<std::path::PathBuf>,
}

/// `stipple bench image` arguments.
#[derive(Args, Debug)]
pub struct ImageBench {
    /// Pipeline folder.
    #[arg(long)]
    pub model: std::path::PathBuf,
    /// Batch (2 = one guided step of one image).
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Latent size (64 = a 512x512 image for SD 1.x).
    #[arg(long, default_value_t = 64)]
    pub latent: usize,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// A reference run (JSON with median_s, from tools/bench_image_reference.py unet) to compare with.
    #[arg(long)]
    pub reference: Option<std::path::PathBuf>,
}

/// `stipple bench text` arguments.
#[derive(Args, Debug)]
pub struct TextBench {
    /// Model folder.
    #[arg(long)]
    pub model: String,
    /// A reference run (JSON with prompt_ids, generated_ids, tokens_per_s, forward_ms):
    /// decode the same prompt and report speed ratios and token agreement.
    #[arg(long)]
    pub reference: Option<std::path::PathBuf>,
    /// Prompt length (random ids) when no reference is given.
    #[arg(long, default_value_t = 32)]
    pub prompt_len: usize,
    /// Tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub gen_len: usize,
    /// Steps.
    #[arg(long, default_value_t = 128)]
    pub steps: usize,
    /// Block length.
    #[arg(long, default_value_t = 32)]
    pub block_len: usize,
    /// Timed runs (the median is reported).
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 }
}

fn ids(v: &Value, key: &str) -> Result<Vec<u32>> {
    v.get(key)
        .and_then(Value::as_array)
        .with_context(|| format!("reference has no {key}"))?
        .iter()
        .map(|x| x.as_u64().map(|x| x as u32).context("bad id"))
        .collect()
}

/// Run `stipple bench`.
pub fn run(g: &Global, args: &BenchArgs) -> Result<()> {
    match &args.what {
        BenchWhat::Text(t) => text(g, t),
        BenchWhat::Image(i) => image(g, i),
        BenchWhat::Audio(a) => audio(g, a),
        BenchWhat::Kernels(k) => super::bench_kernels::run(g, k),
    }
}

fn text(g: &Global, args: &TextBench) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be > 0");
    }
    let model = DiffusionLm::load_path(std::path::Path::new(&args.model), &g.device, g.dtype)
        .with_context(|| format!("loading {}", args.model))?;
    let reference: Option<Value> = match &args.reference {
        Some(p) => Some(serde_json::from_str(&std::fs::read_to_string(p).with_context(|| p.display().to_string())?)?),
        None => None,
    };
    let prompt: Vec<u32> = match &reference {
        Some(r) => ids(r, "prompt_ids")?,
        None => {
            let mut rng = stipple_core::noise::PortableRng::new(g.seed.unwrap_or(1));
            let v = model.traits().vocab.min(model.traits().mask_id as usize) as f64;
            (0..args.prompt_len).map(|_| (rng.next_uniform() * v) as u32).collect()
        }
    };
    let mut cfg = GenerateConfig {
        gen_len: args.gen_len,
        steps: args.steps,
        block_len: args.block_len,
        seed: g.seed.unwrap_or(0),
        ..GenerateConfig::default()
    };
    args.decode.apply(&mut cfg);

    // forward pass over the whole canvas
    let mut canvas = prompt.clone();
    canvas.extend(std::iter::repeat_n(model.traits().mask_id, args.gen_len));
    let input = candle_core::Tensor::from_vec(canvas.clone(), (1, canvas.len()), model.device())?;
    let span = Span { ids: &input, start: 0, positions: None, key_mask: None, logits_rows: None };
    model.forward(&span, None, false)?; // warm-up
    let mut fwd = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        model.forward(&span, None, false)?.to_device(&candle_core::Device::Cpu)?;
        fwd.push(t.elapsed().as_secs_f64() * 1e3);
    }
    let mut tps = Vec::new();
    let mut nfe = 0;
    let mut generated = Vec::new();
    for _ in 0..args.runs {
        let t = Instant::now();
        let out = generate(&model, std::slice::from_ref(&prompt), &cfg, None, CancelToken::new())?;
        tps.push(args.gen_len as f64 / t.elapsed().as_secs_f64());
        nfe = out.nfe;
        generated = out.generated(0).to_vec();
    }
    let mut obj = json!({
        "model": args.model,
        "device": format!("{:?}", g.device),
        "threads": candle_core::utils::get_num_threads(),
        "cpu_kernels": stipple_kernels::cpu_features::describe(),
        "prompt_len": prompt.len(),
        "gen_len": args.gen_len,
        "steps": args.steps,
        "block_len": args.block_len,
        "nfe": nfe,
        "tokens_per_s": median(tps.clone()),
        "tokens_per_s_runs": tps,
        "forward_ms": median(fwd),
        "generated_ids": generated,
    });
    if let Some(r) = &reference {
        let want = ids(r, "generated_ids")?;
        let agree = want.iter().zip(&generated).filter(|(a, b)| a == b).count() as f64 / want.len().max(1) as f64;
        let m = obj.as_object_mut().expect("object");
        if let Some(rt) = r.get("tokens_per_s").and_then(Value::as_f64) {
            m.insert("reference_tokens_per_s".into(), json!(rt));
            m.insert("speed_ratio".into(), json!(m["tokens_per_s"].as_f64().unwrap() / rt));
        }
        if let Some(rf) = r.get("forward_ms").and_then(Value::as_f64) {
            m.insert("reference_forward_ms".into(), json!(rf));
            m.insert("forward_ratio".into(), json!(rf / m["forward_ms"].as_f64().unwrap()));
        }
        m.insert("token_agreement".into(), json!(agree));
    }
    if g.json {
        println!("{obj}");
    } else {
        println!("{}", serde_json::to_string_pretty(&obj)?);
    }
    Ok(())
}

fn image(g: &Global, args: &ImageBench) -> Result<()> {
    use stipple_core::noise::PortableRng;
    use stipple_image::models::unet::UNetConditioning;

    if args.runs == 0 || args.batch == 0 {
        bail!("--runs and --batch must be at least 1");
    }
    let pipe = stipple_image::StableDiffusion::load(&args.model, &g.device, g.dtype)
        .with_context(|| format!("loading {}", args.model.display()))?;
    let cfg = &pipe.unet.config;
    let ctx_dim = match &cfg.cross_attention_dim {
        stipple_image::models::unet::PerBlock::One(d) => *d,
        stipple_image::models::unet::PerBlock::Each(v) => v[0],
    };
    if cfg.has_text_time() || cfg.time_cond_proj_dim.is_some() {
        bail!("bench image times SD 1.x/2.x-style UNets (no SDXL / LCM conditioning)");
    }
    let mut rng = PortableRng::new(g.seed.unwrap_or(0));
    let dt = pipe.unet.dtype();
    let x = rng.randn((args.batch, cfg.in_channels, args.latent, args.latent), dt, &g.device)?;
    let context = rng.randn((args.batch, 77, ctx_dim), dt, &g.device)?;
    let cond = UNetConditioning { context: &context, text_embeds: None, time_ids: None, timestep_cond: None };
    pipe.unet.forward(&x, 500.0, &cond)?; // warm-up
    let mut times = Vec::with_capacity(args.runs);
    let cpu_start = process_cpu_seconds();
    let wall_start = Instant::now();
    for _ in 0..args.runs {
        let t = Instant::now();
        let y = pipe.unet.forward(&x, 500.0, &cond)?;
        y.device().synchronize()?;
        times.push(t.elapsed().as_secs_f64());
    }
    let busy = match (cpu_start, process_cpu_seconds()) {
        (Some(a), Some(b)) => Some((b - a) / wall_start.elapsed().as_secs_f64()),
        _ => None,
    };
    let med = median(times.clone());
    let mut out = json!({
        "what": format!("stipple UNet, batch {}, {}x{} latents, {:?}", args.batch, args.latent, args.latent, dt),
        "threads": rayon_threads(),
        "cpu_kernels": stipple_kernels::cpu_features::describe(),
        "busy_threads": busy,
        "seconds": times,
        "median_s": med,
    });
    if let Some(path) = &args.reference {
        let r: Value = serde_json::from_str(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)?;
        let rm = r["median_s"].as_f64().context("reference has no median_s")?;
        out["reference_median_s"] = json!(rm);
        out["speedup_vs_reference"] = json!(rm / med);
    }
    if g.json {
        println!("{out}");
    } else {
        println!("{} ({}): median {:.3} s over {} runs", out["what"].as_str().unwrap_or_default(), out["cpu_kernels"].as_str().unwrap_or_default(), med, args.runs);
        if let Some(s) = out.get("speedup_vs_reference") {
            println!("reference median {:.3} s: stipple is {:.2}x its speed", out["reference_median_s"], s.as_f64().unwrap_or(0.0));
        }
    }
    Ok(())
}

fn audio(g: &Global, args: &AudioBench) -> Result<()> {
    use stipple_audio::griffin_lim::PhaseInit;
    use stipple_audio::{MusicRequest, Riffusion, SpectrogramCodec, SpectrogramParams};

    if args.runs == 0 || !(args.seconds > 0.0) {
        bail!("--runs must be at least 1 and --seconds positive");
    }
    // Riffusion's parameters on a deterministic two-tone signal with clicks, the same
    // signal tools/bench_audio_reference.py renders
    let params = SpectrogramParams::riffusion();
    let codec = SpectrogramCodec::new(params.clone())?;
    let n = (args.seconds * params.sample_rate as f64).round() as usize;
    let signal: Vec<f32> = (0..n)
        .map(|i| {
            let t = i as f64 / params.sample_rate as f64;
            let click = if (t * 4.0).fract() < 0.01 { 0.5 } else { 0.0 };
            (0.3 * (2.0 * std::f64::consts::PI * 220.0 * t).sin() + 0.2 * (2.0 * std::f64::consts::PI * 554.37 * t).sin() + click) as f32
        })
        .collect();
    let mel = codec.mel_from_audio(&signal)?;
    codec.audio_from_mel(&mel, PhaseInit::Random(0))?; // warm-up (FFT plans, pages)
    let mut times = Vec::with_capacity(args.runs);
    for _ in 0..args.runs {
        let t = Instant::now();
        codec.audio_from_mel(&mel, PhaseInit::Random(0))?;
        times.push(t.elapsed().as_secs_f64());
    }
    let med = median(times.clone());
    let mut out = json!({
        "what": format!("stipple inverse mel + Griffin-Lim ({} iterations), {:.2} s at {} Hz, {} mel bins x {} frames", params.griffin_lim_iters, args.seconds, params.sample_rate, mel.n_mels, mel.frames),
        "threads": rayon_threads(),
        "cpu_kernels": stipple_kernels::cpu_features::describe(),
        "render_seconds": times,
        "render_median_s": med,
        "render_realtime_factor": med / args.seconds,
    });
    if let Some(path) = &args.reference {
        let r: Value = serde_json::from_str(&std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?)?;
        let rm = r["render_median_s"].as_f64().context("reference has no render_median_s")?;
        out["reference_render_median_s"] = json!(rm);
        out["render_speedup_vs_reference"] = json!(rm / med);
    }
    if let Some(model) = &args.model {
        let riff = Riffusion::load(model, &g.device, g.dtype).with_context(|| format!("loading {}", model.display()))?;
        let seconds = riff.codec().params().seconds_for_columns(riff.window_columns());
        let req = MusicRequest { prompt: "a jazz piano trio".into(), seconds: Some(seconds), steps: Some(args.steps), seed: g.seed.unwrap_or(0), ..MusicRequest::default() };
        let cancel = stipple_core::progress::CancelToken::new();
        let mut runs = Vec::with_capacity(args.runs);
        for _ in 0..args.runs {
            let t = Instant::now();
            let music = riff.generate(&req, &mut stipple_core::progress::NoProgress, &cancel)?;
            runs.push((t.elapsed().as_secs_f64(), music.diffusion_seconds, music.render_seconds));
        }
        let total = median(runs.iter().map(|r| r.0).collect());
        out["music"] = json!({
            "model": model,
            "seconds_of_audio": seconds,
            "steps": args.steps,
            "median_s": total,
            "diffusion_median_s": median(runs.iter().map(|r| r.1).collect()),
            "render_median_s": median(runs.iter().map(|r| r.2).collect()),
            "realtime_factor": total / seconds,
        });
    }
    if g.json {
        println!("{out}");
    } else {
        println!("{} ({}): median {med:.3} s ({:.3}x real time)", out["what"].as_str().unwrap_or_default(), out["cpu_kernels"].as_str().unwrap_or_default(), med / args.seconds);
        if let Some(s) = out.get("render_speedup_vs_reference") {
            println!("reference (torchaudio) median {:.3} s: stipple is {:.2}x its speed", out["reference_render_median_s"], s.as_f64().unwrap_or(0.0));
        }
        if let Some(m) = out.get("music") {
            println!("text-to-music, {} steps: {:.2} s for {:.2} s of audio (real-time factor {:.2})", args.steps, m["median_s"].as_f64().unwrap_or(0.0), m["seconds_of_audio"].as_f64().unwrap_or(0.0), m["realtime_factor"].as_f64().unwrap_or(0.0));
        }
    }
    Ok(())
}

/// User + system CPU time of this process so far (Linux), to report how many threads
/// were busy on average.
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn rayon_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
