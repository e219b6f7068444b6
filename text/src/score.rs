//! How likely a model finds a text after a prompt, for comparing decodings of one prompt
//! (steps, thresholds, samplers): the pseudo-log-likelihood, each token masked alone and
//! its log-probability read given everything else. A masked-diffusion model has no
//! left-to-right likelihood; this is the usual stand-in for bidirectional models (Salazar
//! et al., 2020), and costs one forward pass per token, batched.

use candle_core::{D, DType, Tensor};

use crate::error::{Error, Result};
use crate::models::DiffusionLm;
use crate::models::transformer::Span;

/// Most logits held at once while scoring (bytes): rows are batched up to this.
const LOGITS_BUDGET: usize = 256 << 20;

/// The log-probability of every token of `text` after `prompt`, each with only itself masked.
pub fn token_log_probs(lm: &DiffusionLm, prompt: &[u32], text: &[u32]) -> Result<Vec<f32>> {
    if text.is_empty() {
        return Ok(Vec::new());
    }
    let traits = lm.traits();
    // for shifted models (Dream) row i predicts position i + 1
    let shift = usize::from(traits.shift_logits);
    if prompt.len() < shift {
        return Err(Error::InvalidArgument("a model with shifted logits needs at least one prompt token to score a text".into()));
    }
    let canvas: Vec<u32> = prompt.iter().chain(text).copied().collect();
    let (p, n) = (prompt.len(), canvas.len());
    let vocab = traits.vocab.max(1);
    let per_row = text.len() * vocab * 4;
    let batch = (LOGITS_BUDGET / per_row.max(1)).clamp(1, text.len());
    let mut out = Vec::with_capacity(text.len());
    for first in (0..text.len()).step_by(batch) {
        let rows: Vec<usize> = (first..(first + batch).min(text.len())).collect();
        let mut ids = Vec::with_capacity(rows.len() * n);
        for &j in &rows {
            let mut row = canvas.clone();
            row[p + j] = traits.mask_id;
            ids.extend(row);
        }
        let ids = Tensor::from_vec(ids, (rows.len(), n), lm.device())?;
        let span = Span { ids: &ids, start: 0, positions: None, key_mask: None, logits_rows: Some(p - shift..n - shift) };
        let log_probs = candle_nn::ops::log_softmax(&lm.forward(&span, None, false)?.to_dtype(DType::F32)?, D::Minus1)?;
        for (b, &j) in rows.iter().enumerate() {
            let lp = log_probs.get(b)?.get(j)?.get(text[j] as usize)?.to_scalar::<f32>()?;
            out.push(lp);
        }
    }
    Ok(out)
}

/// The mean log-probability per token of `text` after `prompt` ([`token_log_probs`]).
pub fn mean_log_prob(lm: &DiffusionLm, prompt: &[u32], text: &[u32]) -> Result<f64> {
    let lps = token_log_probs(lm, prompt, text)?;
    Ok(if lps.is_empty() { 0.0 } else { lps.iter().map(|&x| x as f64).sum::<f64>() / lps.len() as f64 })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::TextModel;
    use candle_core::Device;

    /// Batched rows give what one row at a time gives, and that is the log-softmax of the
    /// forward pass with the one position masked (for a shifted model too).
    #[test]
    fn scores_are_the_masked_log_probabilities() {
        for fixture in ["llada-tiny", "dream-tiny"] {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(fixture);
            let model = TextModel::load(&dir.display().to_string(), &Device::Cpu, DType::F32).unwrap();
            let lm = &model.lm;
            let (prompt, text) = ([5u32, 9, 13], [21u32, 8, 30, 2]);
            let batched = token_log_probs(lm, &prompt, &text).unwrap();
            assert_eq!(batched.len(), text.len());
            let shift = usize::from(lm.traits().shift_logits);
            for (j, &lp) in batched.iter().enumerate() {
                let mut row: Vec<u32> = prompt.iter().chain(&text).copied().collect();
                row[prompt.len() + j] = lm.traits().mask_id;
                let ids = Tensor::new(row.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
                let logits = lm.forward(&Span { ids: &ids, start: 0, positions: None, key_mask: None, logits_rows: None }, None, false).unwrap();
                let logits: Vec<f32> = logits.get(0).unwrap().get(prompt.len() + j - shift).unwrap().to_vec1().unwrap();
                let max = logits.iter().cloned().fold(f32::MIN, f32::max);
                let lse = max + logits.iter().map(|l| (l - max).exp()).sum::<f32>().ln();
                let want = logits[text[j] as usize] - lse;
                assert!((lp - want).abs() < 1e-4, "{fixture} token {j}: {lp} vs {want}");
                assert!(lp <= 0.0);
            }
            let mean = mean_log_prob(lm, &prompt, &text).unwrap();
            assert!((mean - batched.iter().map(|&x| x as f64).sum::<f64>() / 4.0).abs() < 1e-9);
        }
    }
}
