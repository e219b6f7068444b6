//! Phase 2 of a step: a token and a confidence for every active position, drawing noise
//! in the references' order (LLaDA's Gumbel-max over the whole canvas, Dream's filtered
//! categorical per position); the deterministic paths use the fused kernel.

use candle_core::{DType, Device, Tensor};
use stipple_kernels::confidence::{GumbelNoise, RowStats, confidence_stats, gumbel_pick, row_stats};

use super::confidence::from_stats;
use super::policy::{Committed, NoiseScope, Policy};
use super::sampling::{dream_logits, gumbel_argmax_with, sample_categorical};
use crate::Result;
use crate::noise::NoiseSource;

/// Token + confidence for every active position (phase 2).
pub(super) fn propose<N: NoiseSource + ?Sized>(
    logits: &Tensor,
    active: &[Vec<usize>],
    (b, l, v): (usize, usize, usize),
    policy: &Policy,
    noise: &mut N,
) -> Result<Vec<Vec<Committed>>> {
    let scope = policy.noise_scope;
    let tc = policy.token;
    let acc = policy.accumulate;
    let flat: Vec<u32> = active
        .iter()
        .enumerate()
        .flat_map(|(bi, ps)| ps.iter().map(move |&p| (bi * l + p) as u32))
        .collect();
    let mut out: Vec<Vec<Committed>> = active
        .iter()
        .map(|ps| Vec::with_capacity(ps.len()))
        .collect();
    // gumbel with Canvas scope draws V uniforms for every position, even without
    // candidates; the counter stream draws one key per step, candidates or not
    let gumbel_noise = tc.gumbel && tc.temperature > 0.0;
    let counter_gumbel = gumbel_noise && scope == NoiseScope::Counter;
    let counter_key = counter_gumbel.then(|| (noise.uniform() * (1u64 << 53) as f64) as u64);
    if flat.is_empty() && !(gumbel_noise && scope == NoiseScope::Canvas) {
        return Ok(out);
    }
    let rows = if flat.is_empty() {
        None
    } else {
        let idx = Tensor::from_vec(flat.clone(), flat.len(), logits.device())?;
        let picked = logits.reshape((b * l, v))?.index_select(&idx, 0)?;
        // the fused kernel runs where the logits are (its CUDA twin with the `cuda`
        // feature); the sampled paths read host memory
        let on_device = cfg!(feature = "cuda") && !logits.device().is_cpu() && (tc.deterministic_raw() || counter_gumbel);
        Some(if on_device { picked } else { picked.to_device(&Device::Cpu)? })
    };

    if tc.deterministic_raw() {
        // T = 0: the fused kernel gives argmax and every confidence in one pass
        let stats = match &rows {
            Some(r) => confidence_stats(r, acc)?,
            None => Vec::new(),
        };
        let mut it = stats.iter();
        for (bi, ps) in active.iter().enumerate() {
            for &p in ps {
                let st = it.next().expect("one stats row per active position");
                let conf = from_stats(policy.remasking, st, st.argmax, f32::NAN, acc);
                out[bi].push(Committed {
                    position: p,
                    token: st.argmax,
                    confidence: conf,
                });
            }
        }
        return Ok(out);
    }

    if let (Some(key), Some(r)) = (counter_key, &rows) {
        // counter-based Gumbel-max: one fused pass per row, on the logits' device
        let picks = gumbel_pick(r, &flat, GumbelNoise { key, temperature: tc.temperature }, acc)?;
        let mut it = picks.iter();
        for (bi, ps) in active.iter().enumerate() {
            for &p in ps {
                let pick = it.next().expect("one pick per active position");
                let conf = from_stats(policy.remasking, &pick.stats, pick.token, pick.logit, acc);
                out[bi].push(Committed { position: p, token: pick.token, confidence: conf });
            }
        }
        return Ok(out);
    }

    let values: Vec<Vec<f32>> = match &rows {
        Some(r) => r.to_dtype(DType::F32)?.to_vec2::<f32>()?,
        None => Vec::new(),
    };
    let mut vals = values.into_iter();
    if tc.gumbel {
        // LLaDA: V uniforms per position over the whole [B, L, V] (Canvas scope)
        for (bi, ps) in active.iter().enumerate() {
            let mut next = ps.iter().peekable();
            for pos in 0..l {
                if next.peek() == Some(&&pos) {
                    next.next();
                    let row = vals.next().expect("row per active position");
                    let tok = gumbel_argmax_with(&row, tc.temperature, || noise.uniform());
                    let st: RowStats = row_stats(&row, acc);
                    let conf = from_stats(policy.remasking, &st, tok, row[tok as usize], acc);
                    out[bi].push(Committed {
                        position: pos,
                        token: tok,
                        confidence: conf,
                    });
                } else if scope == NoiseScope::Canvas {
                    for _ in 0..v {
                        noise.uniform();
                    }
                }
            }
        }
    } else {
        // Dream: filtered, tempered softmax; a categorical draw per active position
        for (bi, ps) in active.iter().enumerate() {
            for &pos in ps {
                let row = vals.next().expect("row per active position");
                let proc = dream_logits(&row, tc.temperature, tc.top_p, tc.top_k)?;
                let st = row_stats(&proc, acc);
                let tok = if tc.temperature > 0.0 {
                    let w: Vec<f64> = proc
                        .iter()
                        .map(|&x| (x as f64 - st.max_logit).exp())
                        .collect();
                    sample_categorical(&w, noise.uniform()) as u32
                } else {
                    st.argmax
                };
                let conf = from_stats(policy.remasking, &st, tok, proc[tok as usize], acc);
                out[bi].push(Committed {
                    position: pos,
                    token: tok,
                    confidence: conf,
                });
            }
        }
    }
    Ok(out)
}
