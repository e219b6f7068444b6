//! Decoding defaults a model folder recommends in `generation_config.json` (LLaDA's
//! `gen_length` / `block_length`, or transformers' `max_new_tokens`, plus `temperature`,
//! `top_p`, `top_k`). The CLI and the studio start from these; the user overrides each.

use std::path::Path;

use crate::error::{Error, Result, invalid};
use crate::pipeline::TextModel;

/// Length used when neither the user nor the model says.
pub const FALLBACK_GEN_LEN: usize = 128;

/// What the user asked for (`None`: not given), to merge with a model's recommendations.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Requested {
    /// Tokens to generate.
    pub gen_len: Option<usize>,
    /// Semi-autoregressive block length.
    pub block_len: Option<usize>,
    /// Denoising steps.
    pub steps: Option<usize>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus filter.
    pub top_p: Option<f64>,
    /// Top-k filter.
    pub top_k: Option<usize>,
}

/// The decoding settings a request ends up with.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Settled {
    /// Tokens to generate.
    pub gen_len: usize,
    /// Semi-autoregressive block length (at most `gen_len`).
    pub block_len: usize,
    /// Denoising steps.
    pub steps: usize,
    /// Sampling temperature.
    pub temperature: f64,
    /// Nucleus filter.
    pub top_p: Option<f64>,
    /// Top-k filter.
    pub top_k: Option<usize>,
}

/// What a model folder recommends (every field optional).
#[derive(Clone, Default, Debug, PartialEq)]
pub struct GenerationDefaults {
    /// Tokens to generate.
    pub gen_len: Option<usize>,
    /// Semi-autoregressive block length.
    pub block_len: Option<usize>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus filter.
    pub top_p: Option<f64>,
    /// Top-k filter.
    pub top_k: Option<usize>,
}

impl GenerationDefaults {
    /// Reads `path` (a `generation_config.json`).
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| Error::Model(format!("{}: {e}", path.display())))?;
        let int = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).map(|n| n as usize);
        let float = |k: &str| v.get(k).and_then(serde_json::Value::as_f64);
        Ok(Self {
            gen_len: int("gen_length").or_else(|| int("max_new_tokens")),
            block_len: int("block_length"),
            temperature: float("temperature"),
            top_p: float("top_p"),
            top_k: int("top_k"),
        })
    }

    /// The defaults of a model folder or hub id (none when it has no `generation_config.json`).
    pub fn of_model(source: &str) -> Result<Self> {
        let resolved;
        let mut path = std::path::Path::new(source);
        if let Some((id, spec)) = crate::gguf::hub_source(source) {
            resolved = crate::gguf::resolve_hub(id, spec)?;
            path = &resolved;
        }
        if crate::gguf::is_gguf(path) {
            // a GGUF file carries none; a generation_config.json beside it is used
            let beside = path.parent().unwrap_or(std::path::Path::new(".")).join("generation_config.json");
            return if beside.is_file() { Self::from_file(&beside) } else { Ok(Self::default()) };
        }
        match crate::files::ModelFiles::resolve(source)?.generation_config {
            Some(path) => Self::from_file(&path),
            None => Ok(Self::default()),
        }
    }

    /// The settings for a request, each the user's, else the model's, else stipple's
    /// (one block of the whole length, a step per token, greedy): the one merge the CLI,
    /// the studio and the API share. The model's sampling filters apply only when the user
    /// set no temperature (they belong to its recommended temperature).
    pub fn settle(&self, model: &TextModel, prompts: &[String], raw: bool, asked: &Requested) -> Result<Settled> {
        let longest = match asked.gen_len {
            Some(_) => 0,
            None => prompts.iter().map(|p| model.prompt_ids(p, raw).map(|ids| ids.len())).collect::<Result<Vec<_>>>()?.into_iter().max().unwrap_or(0),
        };
        self.settle_for_prompt_len(model, longest, asked)
    }

    /// [`Self::settle`] for prompts already tokenized, the longest `longest` tokens long.
    pub fn settle_for_prompt_len(&self, model: &TextModel, longest: usize, asked: &Requested) -> Result<Settled> {
        let block_len = asked.block_len.or(self.block_len);
        let gen_len = match asked.gen_len {
            Some(n) => n,
            None => self.fitted_gen_len(model, longest, block_len)?,
        };
        let (temperature, top_p, top_k) = match asked.temperature {
            Some(t) => (t, asked.top_p, asked.top_k),
            None => (self.temperature.unwrap_or(0.0), asked.top_p.or(self.top_p), asked.top_k.or(self.top_k)),
        };
        Ok(Settled { gen_len, block_len: block_len.unwrap_or(gen_len).min(gen_len), steps: asked.steps.unwrap_or(gen_len), temperature, top_p, top_k })
    }

    /// The length to generate when the user gave none: the recommended one, cut to what
    /// fits in the model's context after the longest prompt (`longest` tokens), in whole
    /// blocks of `block_len`.
    pub fn fitted_gen_len(&self, model: &TextModel, longest: usize, block_len: Option<usize>) -> Result<usize> {
        let mut n = self.gen_len.unwrap_or(FALLBACK_GEN_LEN);
        if let Some(max) = model.lm.traits().max_len {
            if longest >= max {
                return Err(invalid(format!("the prompt has {longest} tokens; the model reads at most {max}")));
            }
            n = n.min(max - longest);
            if let Some(b) = block_len.filter(|&b| b > 0 && n >= b) {
                n = n / b * b;
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_llada_and_transformers_keys() {
        let dir = std::env::temp_dir().join(format!("stipple-gen-defaults-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join("generation_config.json");
        std::fs::write(&p, r#"{"gen_length": 48, "block_length": 8, "temperature": 0.8, "top_p": 0.9}"#).unwrap();
        let d = GenerationDefaults::from_file(&p).unwrap();
        assert_eq!(d, GenerationDefaults { gen_len: Some(48), block_len: Some(8), temperature: Some(0.8), top_p: Some(0.9), top_k: None });
        std::fs::write(&p, r#"{"max_new_tokens": 64, "top_k": 20}"#).unwrap();
        let d = GenerationDefaults::from_file(&p).unwrap();
        assert_eq!((d.gen_len, d.top_k, d.block_len), (Some(64), Some(20), None));
        std::fs::write(&p, "{not json").unwrap();
        assert!(GenerationDefaults::from_file(&p).unwrap_err().to_string().contains("generation_config.json"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
