//! Dream (Dream-v0-Base/Instruct-7B; `model_type: "Dream"`): Qwen2 weights and names,
//! q/k/v biases, run without a causal mask. Its logits are *shifted*: the prediction for
//! position `i` is read from output row `i - 1` (row 0 for position 0), as Dream's
//! generation code does.

use candle_nn::VarBuilder;
use serde::Deserialize;

use super::transformer::{Transformer, TransformerConfig, WeightNames};
use crate::error::{Error, Result};

/// Dream's `config.json` (Qwen2 fields plus the diffusion token ids).
#[derive(Clone, Debug, Deserialize)]
pub struct Config {
    /// Vocabulary.
    pub vocab_size: usize,
    /// Hidden width.
    pub hidden_size: usize,
    /// MLP inner width.
    pub intermediate_size: usize,
    /// Blocks.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Key/value heads.
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    /// `silu` (others are refused).
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// RMSNorm epsilon.
    #[serde(default = "default_eps")]
    pub rms_norm_eps: f64,
    /// Rotary base.
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    /// Rotary scaling (unsupported unless null).
    #[serde(default)]
    pub rope_scaling: Option<serde_json::Value>,
    /// Output head tied to the embedding.
    #[serde(default)]
    pub tie_word_embeddings: bool,
    /// Longest sequence.
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
    /// The `[MASK]` id.
    #[serde(default = "default_mask")]
    pub mask_token_id: u32,
    /// Padding.
    #[serde(default = "default_pad")]
    pub pad_token_id: u32,
    /// End of text.
    #[serde(default)]
    pub eos_token_id: Option<u32>,
}

fn default_act() -> String {
    "silu".into()
}
fn default_eps() -> f64 {
    1e-6
}
fn default_theta() -> f64 {
    10_000.0
}
fn default_mask() -> u32 {
    151_666
}
fn default_pad() -> u32 {
    151_643
}

/// Qwen2 tensor names.
pub const NAMES: WeightNames = WeightNames {
    embed: "model.embed_tokens",
    block: "model.layers.{i}",
    attn_norm: "input_layernorm",
    q: "self_attn.q_proj",
    k: "self_attn.k_proj",
    v: "self_attn.v_proj",
    o: "self_attn.o_proj",
    mlp_norm: "post_attention_layernorm",
    gate: "mlp.gate_proj",
    up: "mlp.up_proj",
    down: "mlp.down_proj",
    final_norm: "model.norm",
    head: "lm_head",
};

impl Config {
    /// The shared transformer's configuration.
    pub fn transformer(&self) -> Result<TransformerConfig> {
        if self.hidden_act != "silu" {
            return Err(Error::Model(format!("Dream config: hidden_act {:?} is not supported", self.hidden_act)));
        }
        if self.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(Error::Model("Dream config: rope_scaling is not supported".into()));
        }
        Ok(TransformerConfig {
            hidden: self.hidden_size,
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            mlp_hidden: self.intermediate_size,
            vocab: self.vocab_size,
            norm_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            qkv_bias: true,
            other_bias: false,
            tied_head: self.tie_word_embeddings,
            scale_embeddings: false,
            scale_logits: false,
        })
    }
}

/// Build the network.
pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Transformer> {
    Transformer::new(&cfg.transformer()?, &NAMES, vb)
}
