//! LLaDA (LLaDA-8B-Base/Instruct, LLaDA-1.5; `model_type: "llada"`): an OLMo-style
//! Llama block stack run without a causal mask. Tensor names follow the hub checkpoints
//! (`model.transformer.blocks.{i}.q_proj`, ...).

use candle_nn::VarBuilder;
use serde::Deserialize;

use super::transformer::{Transformer, TransformerConfig, WeightNames};
use crate::error::{Error, Result};

/// LLaDA's `config.json` (the fields the forward pass uses; the rest are ignored).
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// Hidden width.
    pub d_model: usize,
    /// Attention heads.
    pub n_heads: usize,
    /// Key/value heads (`null`: as many as `n_heads`).
    #[serde(default)]
    pub n_kv_heads: Option<usize>,
    /// One key/value head (overrides `n_kv_heads`).
    #[serde(default)]
    pub multi_query_attention: Option<bool>,
    /// Blocks.
    pub n_layers: usize,
    /// MLP inner width (`null`: `mlp_ratio * d_model`).
    #[serde(default)]
    pub mlp_hidden_size: Option<usize>,
    /// MLP ratio used when `mlp_hidden_size` is null.
    #[serde(default = "default_mlp_ratio")]
    pub mlp_ratio: usize,
    /// Vocabulary.
    pub vocab_size: usize,
    /// Embedding rows (padded vocabulary), when different.
    #[serde(default)]
    pub embedding_size: Option<usize>,
    /// Rotary base.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// RoPE on (LLaDA always uses it).
    #[serde(default = "yes")]
    pub rope: bool,
    /// ALiBi (unsupported).
    #[serde(default)]
    pub alibi: bool,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Biases everywhere.
    #[serde(default)]
    pub include_bias: bool,
    /// Biases on q/k/v.
    #[serde(default)]
    pub include_qkv_bias: bool,
    /// Output head tied to the embedding.
    #[serde(default)]
    pub weight_tying: bool,
    /// Divide logits by sqrt(d_model).
    #[serde(default)]
    pub scale_logits: bool,
    /// Multiply embeddings by sqrt(d_model).
    #[serde(default)]
    pub input_emb_norm: bool,
    /// `rms` (others are refused).
    #[serde(default = "default_norm")]
    pub layer_norm_type: String,
    /// `llama` (others are refused).
    #[serde(default = "default_block")]
    pub block_type: String,
    /// `silu` (others are refused).
    #[serde(default = "default_act")]
    pub activation_type: String,
    /// Layer norms on q and k (unsupported).
    #[serde(default)]
    pub attention_layer_norm: bool,
    /// Bias on layer norms (unsupported when true).
    #[serde(default)]
    pub bias_for_layer_norm: Option<bool>,
    /// Blocks per group (1 in released checkpoints).
    #[serde(default = "one")]
    pub block_group_size: usize,
    /// The `[MASK]` id.
    #[serde(default = "default_mask")]
    pub mask_token_id: u32,
    /// End of text.
    #[serde(default = "default_eos")]
    pub eos_token_id: u32,
    /// Padding.
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    /// Longest sequence trained on.
    #[serde(default)]
    pub max_sequence_length: Option<usize>,
}

fn default_mlp_ratio() -> usize {
    4
}
fn default_theta() -> f64 {
    10_000.0
}
fn yes() -> bool {
    true
}
fn one() -> usize {
    1
}
fn default_eps() -> f64 {
    1e-5
}
fn default_norm() -> String {
    "rms".into()
}
fn default_block() -> String {
    "llama".into()
}
fn default_act() -> String {
    "silu".into()
}
fn default_mask() -> u32 {
    126_336
}
fn default_eos() -> u32 {
    126_081
}

/// Tensor names of the hub checkpoints.
pub const NAMES: WeightNames = WeightNames {
    embed: "model.transformer.wte",
    block: "model.transformer.blocks.{i}",
    attn_norm: "attn_norm",
    q: "q_proj",
    k: "k_proj",
    v: "v_proj",
    o: "attn_out",
    mlp_norm: "ff_norm",
    gate: "ff_proj",
    up: "up_proj",
    down: "ff_out",
    final_norm: "model.transformer.ln_f",
    head: "model.transformer.ff_out",
};

impl Config {
    /// The shared transformer's configuration; refuses options LLaDA checkpoints don't use.
    pub fn transformer(&self) -> Result<TransformerConfig> {
        let unsupported = |what: String| Err(Error::Model(format!("LLaDA config: {what} is not supported")));
        if self.layer_norm_type != "rms" {
            return unsupported(format!("layer_norm_type {:?}", self.layer_norm_type));
        }
        if self.block_type != "llama" {
            return unsupported(format!("block_type {:?}", self.block_type));
        }
        if self.activation_type != "silu" {
            return unsupported(format!("activation_type {:?}", self.activation_type));
        }
        if !self.rope || self.alibi {
            return unsupported("a model without rotary embeddings".into());
        }
        if self.attention_layer_norm {
            return unsupported("attention_layer_norm".into());
        }
        if self.bias_for_layer_norm == Some(true) || (self.bias_for_layer_norm.is_none() && self.include_bias) {
            return unsupported("biases on the RMS norms".into());
        }
        if self.block_group_size != 1 {
            return unsupported(format!("block_group_size {}", self.block_group_size));
        }
        let kv_heads = if self.multi_query_attention == Some(true) {
            1
        } else {
            self.n_kv_heads.unwrap_or(self.n_heads)
        };
        Ok(TransformerConfig {
            hidden: self.d_model,
            layers: self.n_layers,
            heads: self.n_heads,
            kv_heads,
            mlp_hidden: self.mlp_hidden_size.unwrap_or(self.mlp_ratio * self.d_model),
            vocab: self.embedding_size.unwrap_or(self.vocab_size).max(self.vocab_size),
            norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            qkv_bias: self.include_qkv_bias,
            other_bias: self.include_bias,
            tied_head: self.weight_tying,
            scale_embeddings: self.input_emb_norm,
            scale_logits: self.scale_logits,
        })
    }
}

/// Build the network.
pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Transformer> {
    Transformer::new(&cfg.transformer()?, &NAMES, vb)
}
