//! The masked-diffusion language models stipple runs, behind one [`DiffusionLm`].
//!
//! * [`llada`]: LLaDA (OLMo-style names), bidirectional.
//! * [`dream`]: Dream (Qwen2 names), bidirectional, shifted logits.
//! * [`bert`]: BERT and ModernBERT `*ForMaskedLM` through candle-transformers.
//!
//! LLaDA and Dream share [`transformer::Transformer`], which supports span forwards over
//! a [`KvCache`]; the BERT family always runs the whole canvas.

pub mod bert;
pub mod dream;
pub mod llada;
pub mod transformer;

use std::path::Path;

use candle_core::quantized::GgmlDType;
use candle_core::{DType, Device, Tensor};

pub use transformer::{KvCache, Span, Transformer, TransformerConfig};

use crate::error::{Error, Result};
use crate::files::ModelFiles;

/// Model family, from `config.json`'s `model_type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// LLaDA.
    Llada,
    /// Dream.
    Dream,
    /// BERT `BertForMaskedLM`.
    Bert,
    /// ModernBERT `ModernBertForMaskedLM`.
    ModernBert,
}

impl Family {
    /// Detect the family from a parsed `config.json`.
    pub fn detect(config: &serde_json::Value) -> Result<Self> {
        let ty = config.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
        match ty.to_ascii_lowercase().as_str() {
            "llada" => Ok(Family::Llada),
            "dream" => Ok(Family::Dream),
            "bert" => Ok(Family::Bert),
            "modernbert" => Ok(Family::ModernBert),
            other => Err(Error::Model(format!(
                "config.json model_type {other:?} is not a supported diffusion language model (llada, Dream, bert, modernbert)"
            ))),
        }
    }
}

/// Token ids and behaviour the decoder needs to know about a model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelTraits {
    /// Family.
    pub family: Family,
    /// The `[MASK]` id.
    pub mask_id: u32,
    /// End-of-text ids (the first is written when padding).
    pub eos_ids: Vec<u32>,
    /// Padding id for left-padded batches.
    pub pad_id: u32,
    /// Logit rows of size `vocab` (may exceed the tokenizer's vocabulary).
    pub vocab: usize,
    /// Prediction for position `i` is at output row `i - 1` (Dream).
    pub shift_logits: bool,
    /// Whether span forwards over a KV cache are supported.
    pub supports_cache: bool,
    /// Longest canvas the model was trained for, when known.
    pub max_len: Option<usize>,
    /// The widths its activations take (for memory estimates).
    pub widths: Widths,
}

/// The widths a model's activations take, per position.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Widths {
    /// Hidden width.
    pub hidden: usize,
    /// MLP inner width.
    pub mlp: usize,
    /// Blocks.
    pub layers: usize,
    /// Key (and value) width, all heads.
    pub kv: usize,
}

impl Widths {
    /// A transformer's.
    pub fn of(cfg: &TransformerConfig) -> Self {
        Self { hidden: cfg.hidden, mlp: cfg.mlp_hidden, layers: cfg.layers, kv: cfg.kv_heads * cfg.hidden / cfg.heads.max(1) }
    }
}

enum Net {
    Transformer(Transformer),
    Bert(candle_transformers::models::bert::BertForMaskedLM),
    ModernBert(candle_transformers::models::modernbert::ModernBertForMaskedLM),
}

/// A loaded masked-diffusion language model.
pub struct DiffusionLm {
    net: Net,
    traits: ModelTraits,
    device: Device,
    dtype: DType,
}

fn parse<T: serde::de::DeserializeOwned>(config: &serde_json::Value, what: &str) -> Result<T> {
    serde_json::from_value(config.clone()).map_err(|e| Error::Model(format!("{what} config.json: {e}")))
}

impl DiffusionLm {
    /// Load from resolved files. `special` supplies ids the config lacks (BERT's `[MASK]`),
    /// looked up in the tokenizer by the caller.
    pub fn load(files: &ModelFiles, device: &Device, dtype: DType, special: &dyn Fn(&str) -> Option<u32>) -> Result<Self> {
        Self::load_quantized(files, device, dtype, None, special)
    }

    /// [`DiffusionLm::load`], quantizing the matrices to `quantize` as they are read (see
    /// [`crate::quantize`]; activations then run in f32 and `dtype` is not used).
    pub fn load_quantized(files: &ModelFiles, device: &Device, dtype: DType, quantize: Option<GgmlDType>, special: &dyn Fn(&str) -> Option<u32>) -> Result<Self> {
        let config = files.config_json()?;
        let family = Family::detect(&config)?;
        if device.is_cpu() && dtype == DType::BF16 && matches!(family, Family::Bert | Family::ModernBert) {
            return Err(Error::InvalidArgument("bf16 BERT models are not supported on the CPU; use f32 or f16".into()));
        }
        if quantize.is_some() && matches!(family, Family::Bert | Family::ModernBert) {
            return Err(Error::InvalidArgument("--quantize is for LLaDA and Dream models; BERT-family models run plain".into()));
        }
        let dtype = if quantize.is_some() { DType::F32 } else { dtype };
        // each tensor read straight into its own buffer (no mapped copy held alongside),
        // once the memory for them is known to be there
        let weights = stipple_core::weights::SafetensorsFiles::open(&files.weights)?;
        if device.is_cpu() {
            let bytes = match quantize {
                // matrices shrink to the quantized type's bytes per value
                Some(ty) => (weights.bytes_as(DType::F32) as f64 / 4.0 * ty.type_size() as f64 / ty.block_size() as f64) as u64,
                None => weights.bytes_as(dtype),
            };
            let what = files.weights.first().map(|p| p.display().to_string()).unwrap_or_default();
            stipple_core::memory::check(&stipple_core::memory::Estimate::new(format!("loading {what}")).kept("weights", bytes))?;
        }
        let vb = weights.into_var_builder(dtype, device);
        let build = |cfg: TransformerConfig, names: &transformer::WeightNames, vb: candle_nn::VarBuilder| -> Result<Transformer> {
            match quantize {
                Some(ty) => Transformer::from_source(&cfg, names, &crate::quantize::Quantizing::new(&vb, ty)),
                None => Transformer::new(&cfg, names, vb),
            }
        };
        let (net, traits) = match family {
            Family::Llada => {
                let cfg: llada::Config = parse(&config, "LLaDA")?;
                let net = build(cfg.transformer()?, &llada::NAMES, vb)?;
                let traits = ModelTraits {
                    family,
                    mask_id: cfg.mask_token_id,
                    eos_ids: eos_list(&config, cfg.eos_token_id, special),
                    pad_id: cfg.pad_token_id.unwrap_or(cfg.eos_token_id),
                    vocab: net.config().vocab,
                    shift_logits: false,
                    supports_cache: true,
                    max_len: cfg.max_sequence_length,
                    widths: Widths::of(net.config()),
                };
                (Net::Transformer(net), traits)
            }
            Family::Dream => {
                let cfg: dream::Config = parse(&config, "Dream")?;
                let net = build(cfg.transformer()?, &dream::NAMES, vb)?;
                let eos = cfg.eos_token_id.or_else(|| special("<|endoftext|>")).unwrap_or(cfg.pad_token_id);
                let traits = ModelTraits {
                    family,
                    mask_id: cfg.mask_token_id,
                    eos_ids: eos_list(&config, eos, special),
                    pad_id: cfg.pad_token_id,
                    vocab: net.config().vocab,
                    shift_logits: true,
                    supports_cache: true,
                    max_len: cfg.max_position_embeddings,
                    widths: Widths::of(net.config()),
                };
                (Net::Transformer(net), traits)
            }
            Family::Bert | Family::ModernBert => bert::load(family, &config, vb, special)?,
        };
        Ok(Self {
            net,
            traits,
            device: device.clone(),
            dtype,
        })
    }

    /// Load a GGUF file (LLaDA or Dream, as llama.cpp's converter writes them). Quantized
    /// matrices stay quantized and activations run in f32 (`dtype` then only applies to
    /// files of plain f32/f16/bf16 tensors); `quantize` quantizes the plain ones.
    pub fn load_gguf(file: &crate::gguf::GgufFile, device: &Device, dtype: DType, quantize: Option<GgmlDType>) -> Result<Self> {
        let family = file.family()?;
        let dtype = if crate::gguf::has_quantized_matrices(file) || quantize.is_some() { DType::F32 } else { dtype };
        let cfg = file.transformer_config()?;
        if device.is_cpu() {
            // quantized blocks load as they are stored: the file's size is the weights'
            let bytes = std::fs::metadata(file.path()).map(|m| m.len()).unwrap_or(0);
            stipple_core::memory::check(&stipple_core::memory::Estimate::new(format!("loading {}", file.path().display())).kept("weights", bytes))?;
        }
        let weights = file.weights(dtype, device)?;
        let net = match quantize {
            Some(ty) => Transformer::from_source(&cfg, &crate::gguf::NAMES, &crate::quantize::Quantizing::new(&weights, ty))?,
            None => Transformer::from_source(&cfg, &crate::gguf::NAMES, &weights)?,
        };
        let meta_id = |key: &str| file.meta_usize(key).and_then(|i| u32::try_from(i).ok());
        let token = |t: &str| file.token_id(t);
        let mask_id = meta_id("tokenizer.ggml.mask_token_id")
            .or_else(|| token("<|mdm_mask|>"))
            .or_else(|| token("<|mask|>"))
            .ok_or_else(|| Error::Model(format!("{}: no tokenizer.ggml.mask_token_id in the metadata and no <|mdm_mask|> token", file.path().display())))?;
        let eos = meta_id("tokenizer.ggml.eos_token_id").or_else(|| token("<|endoftext|>")).unwrap_or(0);
        let mut eos_ids = eos_list(&serde_json::Value::Null, eos, &token);
        if let Some(eot) = meta_id("tokenizer.ggml.eot_token_id") {
            if !eos_ids.contains(&eot) {
                eos_ids.push(eot);
            }
        }
        let shift_logits = match file.meta("diffusion.shift_logits").and_then(|v| v.to_bool().ok()) {
            Some(s) => s,
            None => family == Family::Dream,
        };
        let arch = file.architecture()?.to_string();
        let traits = ModelTraits {
            family,
            mask_id,
            eos_ids,
            pad_id: meta_id("tokenizer.ggml.padding_token_id").unwrap_or(eos),
            vocab: cfg.vocab,
            shift_logits,
            supports_cache: true,
            max_len: file.meta_usize(&format!("{arch}.context_length")),
            widths: Widths::of(&cfg),
        };
        Ok(Self { net: Net::Transformer(net), traits, device: device.clone(), dtype })
    }

    /// Load a folder or hub id (see [`ModelFiles::resolve`]) without tokenizer lookups.
    pub fn load_path(path: &Path, device: &Device, dtype: DType) -> Result<Self> {
        Self::load(&ModelFiles::from_dir(path)?, device, dtype, &|_| None)
    }

    /// The decoder-facing facts.
    pub fn traits(&self) -> &ModelTraits {
        &self.traits
    }

    /// Device of the weights.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Weight dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Raw logits `[B, rows, V]` in f32 for a span (rows are output rows: for Dream,
    /// row `i` predicts position `i + 1`). See [`Transformer::forward`] for caching.
    pub fn forward(&self, span: &Span, cache: Option<&mut KvCache>, store: bool) -> Result<Tensor> {
        match &self.net {
            Net::Transformer(t) => t.forward(span, cache, store),
            Net::Bert(_) | Net::ModernBert(_) => {
                if span.start != 0 || cache.is_some() {
                    return Err(Error::InvalidArgument(
                        "BERT-family models have no KV cache; use --cache none".into(),
                    ));
                }
                let logits = self.forward_bert(span.ids, span.key_mask)?;
                Ok(match &span.logits_rows {
                    Some(r) => logits.narrow(1, r.start, r.len())?,
                    None => logits,
                })
            }
        }
    }

    fn forward_bert(&self, ids: &Tensor, key_mask: Option<&Tensor>) -> Result<Tensor> {
        let mask = match key_mask {
            Some(m) => m.clone(),
            None => ids.ones_like()?,
        };
        let logits = match &self.net {
            Net::Bert(m) => m.forward(ids, &ids.zeros_like()?, Some(&mask))?,
            Net::ModernBert(m) => m.forward(ids, &mask)?,
            Net::Transformer(_) => unreachable!("forward_bert on a transformer"),
        };
        Ok(logits.to_dtype(DType::F32)?)
    }
}

fn eos_list(config: &serde_json::Value, first: u32, special: &dyn Fn(&str) -> Option<u32>) -> Vec<u32> {
    let mut ids = vec![first];
    if let Some(serde_json::Value::Array(a)) = config.get("eos_token_id") {
        ids.extend(a.iter().filter_map(|v| v.as_u64()).map(|v| v as u32));
    }
    // chat models end turns with these
    for name in ["<|eot_id|>", "<|im_end|>"] {
        if let Some(id) = special(name) {
            ids.push(id);
        }
    }
    ids.dedup();
    let mut seen = std::collections::HashSet::new();
    ids.retain(|i| seen.insert(*i));
    ids
}
