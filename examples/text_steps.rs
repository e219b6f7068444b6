//! One prompt decoded with 8 to 128 denoising steps and with Fast-dLLM threshold decoding,
//! printing how likely the model finds each result and how fast it came, side by side:
//! fewer steps commit more tokens per model call, faster and usually less fluent.
//!
//! cargo run --release --example text_steps -- [MODEL] [PROMPT]
//! (defaults: the embedded stipple-mini text model, a Moby-Dick opening)

use std::time::Instant;

use anyhow::Result;
use stipple::core::progress::CancelToken;
use stipple::text::score::mean_log_prob;
use stipple::text::{CommitRule, GenerateConfig, TextModel};

/// One decoding of the sweep.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was varied ("64 steps", "threshold 0.9").
    pub setting: String,
    /// The config it ran with.
    pub config: GenerateConfig,
    /// Model calls made.
    pub nfe: usize,
    /// Mean log-probability per token of the text (to its first end-of-text), each token
    /// masked alone (`stipple::text::score`).
    pub log_prob: f64,
    /// Tokens scored.
    pub tokens: usize,
    /// Generated tokens per second of decoding.
    pub tokens_per_s: f64,
    /// The text.
    pub text: String,
}

/// Decodes `prompt` with each of `steps` (a schedule) and then with `threshold`, all greedy
/// in blocks of `block_len`.
pub fn sweep(model: &TextModel, prompt: &str, gen_len: usize, block_len: usize, steps: &[usize], threshold: f64) -> Result<Vec<Row>> {
    let base = GenerateConfig { gen_len, block_len, steps: gen_len, ..GenerateConfig::default() };
    let mut configs: Vec<(String, GenerateConfig)> = steps.iter().map(|&s| (format!("{s} steps"), GenerateConfig { steps: s, ..base.clone() })).collect();
    configs.push((format!("threshold {threshold}"), GenerateConfig { commit: CommitRule::Threshold(threshold), ..base.clone() }));
    let prompts = [prompt.to_string()];
    let mut rows = Vec::new();
    for (setting, config) in configs {
        config.validate()?;
        let t = Instant::now();
        let (outs, run) = model.generate(&prompts, true, &config, None, CancelToken::new())?;
        let seconds = t.elapsed().as_secs_f64();
        let out = &outs[0];
        // score up to the first end-of-text (the padding after it is easy to predict)
        let eos = &model.lm.traits().eos_ids;
        let end = out.generated_ids.iter().position(|t| eos.contains(t)).map_or(out.generated_ids.len(), |i| i + 1);
        let scored = &out.generated_ids[..end];
        let log_prob = mean_log_prob(&model.lm, &out.prompt_ids, scored)?;
        rows.push(Row { setting, config, nfe: run.nfe, log_prob, tokens: scored.len(), tokens_per_s: gen_len as f64 / seconds.max(1e-9), text: out.text.clone() });
    }
    Ok(rows)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let model_path = match args.next() {
        Some(m) => m,
        None => stipple::defaults::model("text")?.display().to_string(),
    };
    let prompt = args.next().unwrap_or_else(|| "Call me Ishmael. Some years ago, never mind how long precisely,".into());
    let model = TextModel::load(&model_path, &candle_core::Device::Cpu, candle_core::DType::F32)?;
    // 128 tokens, or what fits after the prompt in a model with a shorter context (the
    // embedded one has 128 positions), in blocks of 32
    let prompt_len = model.prompt_ids(&prompt, true)?.len();
    let room = model.lm.traits().max_len.map_or(usize::MAX, |m| m.saturating_sub(prompt_len));
    // (a power of two, so every step count of the sweep splits evenly over the blocks)
    let Some(gen_len) = [128, 64, 32].into_iter().find(|&n| n <= room) else {
        anyhow::bail!("the prompt leaves no room for 32 tokens in this model's context");
    };
    let steps: Vec<usize> = [8, 16, 32, 64, 128].into_iter().filter(|&s| s <= gen_len).collect();
    println!("{gen_len} tokens in blocks of 32, greedy");
    let rows = sweep(&model, &prompt, gen_len, 32, &steps, 0.9)?;
    println!("{:<14} {:>5} {:>14} {:>10}  text", "decoding", "calls", "log p / token", "tokens/s");
    for r in &rows {
        let text: String = r.text.replace('\n', " ").chars().take(60).collect();
        println!("{:<14} {:>5} {:>14.3} {:>10.1}  {text}", r.setting, r.nfe, r.log_prob, r.tokens_per_s);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sweep_decodes_with_each_setting() {
        let dir = stipple::defaults::model("text").unwrap();
        let model = TextModel::load(&dir.display().to_string(), &candle_core::Device::Cpu, candle_core::DType::F32).unwrap();
        let rows = sweep(&model, "Call me Ishmael.", 32, 16, &[8, 16, 32], 0.9).unwrap();
        assert_eq!(rows.len(), 4);
        for (r, steps) in rows.iter().zip([8, 16, 32]) {
            assert_eq!(r.nfe, steps, "{}", r.setting);
        }
        // threshold decoding commits at least one token per call, up to the whole block
        assert!((2..=32).contains(&rows[3].nfe), "{}", rows[3].nfe);
        for r in &rows {
            assert!(r.log_prob.is_finite() && r.log_prob < 0.0 && r.tokens > 0 && r.tokens_per_s > 0.0, "{r:?}");
        }
        // the sweep's 32-step row is what plain generation gives with that config
        let (outs, _) = model.generate(&["Call me Ishmael.".to_string()], true, &rows[2].config, None, CancelToken::new()).unwrap();
        assert_eq!(outs[0].text, rows[2].text);
        // and its score is the scorer's for that text
        let lp = mean_log_prob(&model.lm, &outs[0].prompt_ids, &outs[0].generated_ids[..rows[2].tokens]).unwrap();
        assert!((lp - rows[2].log_prob).abs() < 1e-9);
    }
}
