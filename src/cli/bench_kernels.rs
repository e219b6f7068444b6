//! `stipple bench kernels`: each of stipple's fused kernels against the candle ops it
//! replaces, on the chosen device and dtype, at the shapes real models run (LLaDA-8B's
//! vocabulary and MLP, SD 1.5's 64x64 activations). This is the number that justifies
//! each kernel: a ratio below 1 means candle's ops are faster there.

use std::time::Instant;

use anyhow::{Result, bail};
use candle_core::{D, DType, Device, Tensor};
use clap::Args;
use serde_json::json;
use stipple_core::discrete::sampling::gumbel_argmax;
use stipple_core::noise::PortableRng;
use stipple_kernels::confidence::{Accumulate, GumbelNoise, confidence_stats, gumbel_pick, row_stats};
use stipple_kernels::{attention, gated, group_norm};

use super::Global;

/// `stipple bench kernels` arguments.
#[derive(Args, Debug)]
pub struct KernelBench {
    /// Timed runs per kernel (the median is reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Only the cases whose name contains this.
    #[arg(long)]
    pub only: Option<String>,
}

/// One timed comparison.
struct Case {
    name: &'static str,
    /// What the fused side runs on this device (the kernel, or a note that it falls back).
    fused: Box<dyn FnMut() -> Result<()>>,
    /// The candle ops (or, for the Gumbel pass, the host path it replaced).
    baseline: Box<dyn FnMut() -> Result<()>>,
}

fn timed(device: &Device, runs: usize, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    f()?; // warm-up: PTX loading, allocator
    device.synchronize()?;
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        f()?;
        device.synchronize()?;
        ms.push(t.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(ms[ms.len() / 2])
}

/// The candle-op form of the confidence statistics: softmax, max, argmax and Σ p log p,
/// brought to the host as the sampler needs them.
fn confidence_candle(logits: &Tensor) -> Result<()> {
    let p = candle_nn::ops::softmax_last_dim(&logits.to_dtype(DType::F32)?)?;
    let p1 = p.max_keepdim(D::Minus1)?;
    let arg = p.argmax_keepdim(D::Minus1)?;
    let h = (&p * p.clamp(1e-30f32, 1f32)?.log()?)?.sum_keepdim(D::Minus1)?;
    let _ = (p1.to_vec2::<f32>()?, arg.to_vec2::<u32>()?, h.to_vec2::<f32>()?);
    Ok(())
}

fn cases(device: &Device, dtype: DType) -> Result<Vec<Case>> {
    let mut rng = PortableRng::new(7);
    let mut randn = |shape: &[usize]| rng.randn(shape.to_vec(), dtype, device);
    let mut out: Vec<Case> = Vec::new();

    // the masked-diffusion step over LLaDA's vocabulary: 32 masked positions of a block
    let logits = randn(&[32, 126_464])?.affine(3.0, 0.0)?;
    let l2 = logits.clone();
    out.push(Case {
        name: "confidence 32x126464 (LLaDA vocab)",
        fused: Box::new(move || Ok(drop(confidence_stats(&logits, Accumulate::F32)?))),
        baseline: Box::new(move || confidence_candle(&l2)),
    });
    let logits = randn(&[32, 126_464])?.affine(3.0, 0.0)?;
    let l2 = logits.clone();
    let ids: Vec<u32> = (0..32).collect();
    out.push(Case {
        name: "gumbel 32x126464 (T=1, vs host ChaCha)",
        fused: Box::new(move || Ok(drop(gumbel_pick(&logits, &ids, GumbelNoise { key: 5, temperature: 1.0 }, Accumulate::F32)?))),
        baseline: Box::new(move || {
            // the path it replaced: rows to the host, then the sequential reference-order draw
            let rows = l2.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.to_vec2::<f32>()?;
            let mut noise = PortableRng::new(5);
            for row in &rows {
                let _ = (gumbel_argmax(row, 1.0, &mut noise), row_stats(row, Accumulate::F32));
            }
            Ok(())
        }),
    });

    // SD 1.5's 320-channel 64x64 activation (batch 2: one guided step)
    let x = randn(&[2, 320, 64, 64])?;
    let gamma = randn(&[320])?;
    let beta = randn(&[320])?;
    let (x2, g2, b2) = (x.clone(), gamma.clone(), beta.clone());
    out.push(Case {
        name: "group_norm+silu 2x320x64x64 (SD 1.5)",
        fused: Box::new(move || Ok(drop(group_norm::group_norm(&x, 32, &gamma, &beta, 1e-5, true)?))),
        baseline: Box::new(move || Ok(drop(group_norm::group_norm_unfused(&x2, 32, &g2, &b2, 1e-5, true)?))),
    });

    // LLaDA-8B's SwiGLU over a 320-token canvas, SD 1.5's GEGLU at 64x64
    for (name, shape, gate) in [
        ("swiglu 320x2x12288 (LLaDA-8B MLP)", [1, 320, 2 * 12_288], gated::Gate::SiluFirst),
        ("geglu 2x4096x2x1280 (SD 1.5 64x64)", [2, 4096, 2 * 1280], gated::Gate::GeluSecond),
    ] {
        let x = randn(&shape)?;
        let x2 = x.clone();
        out.push(Case {
            name,
            fused: Box::new(move || Ok(drop(gated::gated(&x, gate)?))),
            baseline: Box::new(move || Ok(drop(gated::gated_unfused(&x2, gate)?))),
        });
    }

    // attention: LLaDA-8B (32 heads of 128 over 320 tokens), SD 1.5 64x64 self-attention
    for (name, b, h, n, d) in [("attention 32x320x128 (LLaDA-8B)", 1, 32, 320, 128), ("attention 2x8x4096x40 (SD 1.5 64x64)", 2, 8, 4096, 40)] {
        let q = randn(&[b, h, n, d])?;
        let k = randn(&[b, h, n, d])?;
        let v = randn(&[b, h, n, d])?;
        let (q2, k2, v2) = (q.clone(), k.clone(), v.clone());
        let scale = 1.0 / (d as f32).sqrt();
        out.push(Case {
            name,
            fused: Box::new(move || Ok(drop(attention::attention(&q, &k, &v, None, scale)?))),
            baseline: Box::new(move || Ok(drop(attention::attention_unfused(&q2, &k2, &v2, None, scale)?))),
        });
    }

    // projections against weights packed at load vs candle's matmul on `W^T` (what the
    // text models did before): stipple-mini's q|k|v over an 80-token canvas, the 134M benchmark's q|k|v, o, gate|up and down over 256
    // positions, its tied head over a 32-token block, LLaDA-8B's q|k|v over 320
    if device.is_cpu() && dtype == DType::F32 {
        for (name, m, k, n) in [
            ("matmul 80x256x768 (stipple-mini q|k|v)", 80, 256, 768),
            ("matmul 256x768x2304 (134M q|k|v)", 256, 768, 2304),
            ("matmul 256x768x768 (134M o)", 256, 768, 768),
            ("matmul 256x768x4096 (134M gate|up)", 256, 768, 4096),
            ("matmul 256x2048x768 (134M down)", 256, 2048, 768),
            ("matmul 32x768x32000 (134M head)", 32, 768, 32000),
            ("matmul 320x4096x12288 (LLaDA-8B q|k|v)", 320, 4096, 12288),
        ] {
            let x = randn(&[m, k])?;
            let w = randn(&[n, k])?;
            let Some(packed) = stipple_kernels::packed_matmul::PackedMatrix::from_tensors(std::slice::from_ref(&w))? else {
                continue;
            };
            let wt = stipple_kernels::cpu::transpose(&w)?;
            let x2 = x.clone();
            out.push(Case {
                name,
                fused: Box::new(move || Ok(drop(packed.forward(&x, None)?))),
                baseline: Box::new(move || Ok(drop(x2.matmul(&wt)?))),
            });
        }
        // SD 1.5's attention projection and feed-forward at 64x64 (batch 2) against the
        // flat-gemm linear layer the image models use
        for (name, m, k, n) in [
            ("linear 8192x320x320 (SD 1.5 attn proj)", 8192, 320, 320),
            ("linear 8192x320x2560 (SD 1.5 GEGLU in)", 8192, 320, 2560),
            ("linear 8192x1280x320 (SD 1.5 FF out)", 8192, 1280, 320),
        ] {
            let x = randn(&[m, k])?;
            let w = randn(&[n, k])?;
            let b = randn(&[n])?;
            let Some(packed) = stipple_kernels::packed_matmul::PackedMatrix::from_tensors(std::slice::from_ref(&w))? else {
                continue;
            };
            let bias = b.to_vec1::<f32>()?;
            let linear = stipple_kernels::linear::Linear::new(&w, Some(b))?;
            let x2 = x.clone();
            out.push(Case {
                name,
                fused: Box::new(move || Ok(drop(packed.forward(&x, Some(&bias))?))),
                baseline: Box::new(move || Ok(drop(candle_core::Module::forward(&linear, &x2)?))),
            });
        }
    }
    Ok(out)
}

/// Run `stipple bench kernels`.
pub fn run(g: &Global, args: &KernelBench) -> Result<()> {
    if args.runs == 0 {
        bail!("--runs must be > 0");
    }
    let device = &g.device;
    if !g.json {
        println!("{:?}, {:?}, {}", device, g.dtype, stipple_kernels::cpu_features::describe());
    }
    let mut results = Vec::new();
    for mut case in cases(device, g.dtype)? {
        if args.only.as_deref().is_some_and(|o| !case.name.contains(o)) {
            continue;
        }
        let fused = timed(device, args.runs, &mut case.fused)?;
        let baseline = timed(device, args.runs, &mut case.baseline)?;
        let speedup = baseline / fused;
        if !g.json {
            println!("{:44} stipple {:9.3} ms   candle {:9.3} ms   x{:.2}", case.name, fused, baseline, speedup);
        }
        results.push(json!({ "case": case.name, "stipple_ms": fused, "candle_ms": baseline, "speedup": speedup }));
    }
    if g.json {
        println!("{}", json!({ "device": format!("{device:?}"), "dtype": format!("{:?}", g.dtype), "cpu_kernels": stipple_kernels::cpu_features::describe(), "runs": args.runs, "cases": results }));
    }
    Ok(())
}
