//! The CLIP text encoder (transformers' `CLIPTextModel` / `CLIPTextModelWithProjection`),
//! configured by `text_encoder[_2]/config.json`. It returns what the SD pipelines read:
//! the final hidden states, the penultimate layer's (SDXL), and the pooled (projected)
//! embedding at the end-of-text token.

use candle_core::{DType, Device, IndexOp, Module, Result, Tensor};
use candle_nn::{Embedding, Linear, VarBuilder};

use super::layer_norm::LayerNorm;
use serde::Deserialize;

/// The keys of a CLIP text `config.json` (also accepted nested under `text_config`).
#[derive(Clone, Debug, Deserialize)]
pub struct ClipTextConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Positions (77).
    #[serde(default = "positions")]
    pub max_position_embeddings: usize,
    /// `quick_gelu` (OpenAI CLIP) or `gelu` (OpenCLIP).
    #[serde(default = "quick_gelu")]
    pub hidden_act: String,
    /// LayerNorm epsilon.
    #[serde(default = "eps")]
    pub layer_norm_eps: f64,
    /// Width of the projected pooled output.
    #[serde(default)]
    pub projection_dim: Option<usize>,
    /// End-of-text id; 2 means "the largest id" in old configs (transformers' legacy rule).
    #[serde(default = "legacy_eos")]
    pub eos_token_id: u32,
}

fn positions() -> usize { 77 }
fn quick_gelu() -> String { "quick_gelu".into() }
fn eps() -> f64 { 1e-5 }
fn legacy_eos() -> u32 { 2 }

impl ClipTextConfig {
    /// Reads a transformers config, flat or with a `text_config` section.
    pub fn from_value(v: serde_json::Value) -> std::result::Result<Self, serde_json::Error> {
        match v.get("text_config") {
            Some(t) if v.get("hidden_size").is_none() => serde_json::from_value(t.clone()),
            _ => serde_json::from_value(v),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Act {
    QuickGelu,
    Gelu,
}

impl Act {
    fn apply(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Act::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Act::Gelu => xs.gelu_erf(),
        }
    }
}

#[derive(Debug)]
struct Layer {
    ln1: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    ln2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
}

/// What one text-encoder call returns.
#[derive(Debug)]
pub struct ClipOutput {
    /// Final hidden states after the last LayerNorm `[b, n, d]` (SD 1.x / 2.x context).
    pub last_hidden: Tensor,
    /// The penultimate layer's hidden states, without the final LayerNorm (SDXL context).
    pub penultimate: Tensor,
    /// The final hidden state at the end-of-text token, projected when the model has a
    /// `text_projection` `[b, projection_dim]` (SDXL's pooled embedding).
    pub pooled: Tensor,
}

/// The CLIP text transformer.
#[derive(Debug)]
pub struct ClipTextModel {
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<Layer>,
    final_layer_norm: LayerNorm,
    text_projection: Option<Linear>,
    heads: usize,
    act: Act,
    eos: u32,
}

impl ClipTextModel {
    /// Loads `text_model.*` or the unprefixed names (and `text_projection` when present) under `vb`.
    pub fn new(cfg: &ClipTextConfig, vb: VarBuilder) -> Result<Self> {
        let act = match cfg.hidden_act.as_str() {
            "quick_gelu" => Act::QuickGelu,
            "gelu" => Act::Gelu,
            other => candle_core::bail!("text encoder: hidden_act {other} is not supported"),
        };
        let d = cfg.hidden_size;
        if cfg.num_attention_heads == 0 || d % cfg.num_attention_heads != 0 {
            candle_core::bail!("text encoder: {d} is not divisible by {} heads", cfg.num_attention_heads);
        }
        // transformers 4 writes `text_model.*`; transformers 5 writes the same names unprefixed.
        let tm = if vb.contains_tensor("text_model.embeddings.token_embedding.weight") { vb.pp("text_model") } else { vb.clone() };
        let ln = |vb: VarBuilder| LayerNorm::new(d, cfg.layer_norm_eps, vb);
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| {
                let l = tm.pp(format!("encoder.layers.{i}"));
                Ok(Layer {
                    ln1: ln(l.pp("layer_norm1"))?,
                    q: candle_nn::linear(d, d, l.pp("self_attn.q_proj"))?,
                    k: candle_nn::linear(d, d, l.pp("self_attn.k_proj"))?,
                    v: candle_nn::linear(d, d, l.pp("self_attn.v_proj"))?,
                    o: candle_nn::linear(d, d, l.pp("self_attn.out_proj"))?,
                    ln2: ln(l.pp("layer_norm2"))?,
                    fc1: candle_nn::linear(d, cfg.intermediate_size, l.pp("mlp.fc1"))?,
                    fc2: candle_nn::linear(cfg.intermediate_size, d, l.pp("mlp.fc2"))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let text_projection = if vb.contains_tensor("text_projection.weight") {
            Some(candle_nn::linear_no_bias(d, cfg.projection_dim.unwrap_or(d), vb.pp("text_projection"))?)
        } else {
            None
        };
        Ok(Self {
            token_embedding: candle_nn::embedding(cfg.vocab_size, d, tm.pp("embeddings.token_embedding"))?,
            position_embedding: candle_nn::embedding(cfg.max_position_embeddings, d, tm.pp("embeddings.position_embedding"))?,
            layers,
            final_layer_norm: ln(tm.pp("final_layer_norm"))?,
            text_projection,
            heads: cfg.num_attention_heads,
            act,
            eos: cfg.eos_token_id,
        })
    }

    /// Encodes rows of token ids (`[b][n]`, all the same length).
    pub fn forward(&self, ids: &[Vec<u32>], device: &Device) -> Result<ClipOutput> {
        let b = ids.len();
        let n = ids.first().map_or(0, Vec::len);
        let flat: Vec<u32> = ids.iter().flatten().copied().collect();
        let tokens = Tensor::from_vec(flat, (b, n), device)?;
        let positions = Tensor::arange(0u32, n as u32, device)?;
        let mut h = self.token_embedding.forward(&tokens)?.broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let dtype = h.dtype();
        let causal: Vec<f32> = (0..n).flat_map(|i| (0..n).map(move |j| if j > i { f32::NEG_INFINITY } else { 0.0 })).collect();
        let mask = Tensor::from_vec(causal, (n, n), device)?.to_dtype(dtype)?;
        let mut penultimate = h.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = self.layer_forward(layer, &h, &mask)?;
            if i + 2 == self.layers.len() {
                penultimate = h.clone();
            }
        }
        let last_hidden = self.final_layer_norm.forward(&h)?;
        let mut rows = Vec::with_capacity(b);
        for (r, row) in ids.iter().enumerate() {
            let pos = if self.eos == 2 {
                row.iter().enumerate().max_by_key(|(i, id)| (**id, std::cmp::Reverse(*i))).map_or(0, |(i, _)| i)
            } else {
                row.iter().position(|&id| id == self.eos).unwrap_or(n - 1)
            };
            rows.push(last_hidden.i((r, pos))?);
        }
        let pooled = Tensor::stack(&rows, 0)?;
        let pooled = match &self.text_projection {
            Some(p) => p.forward(&pooled)?,
            None => pooled,
        };
        Ok(ClipOutput { last_hidden, penultimate, pooled })
    }

    fn layer_forward(&self, l: &Layer, xs: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (b, n, d) = xs.dims3()?;
        let hd = d / self.heads;
        let h = l.ln1.forward(xs)?;
        let split = |t: Tensor| t.reshape((b, n, self.heads, hd))?.transpose(1, 2)?.contiguous();
        let q = split((l.q.forward(&h)? * (1.0 / (hd as f64).sqrt()))?)?;
        let k = split(l.k.forward(&h)?)?;
        let v = split(l.v.forward(&h)?)?;
        let scores = q.matmul(&k.t()?)?.broadcast_add(mask)?;
        // the fused softmax has no backward pass: the generic one when training
        let probs = if stipple_kernels::tracks_grad(&[&scores]) { candle_nn::ops::softmax(&scores, candle_core::D::Minus1)? } else { candle_nn::ops::softmax_last_dim(&scores)? };
        let attn = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, n, d))?;
        let xs = (l.o.forward(&attn)? + xs)?;
        let h = l.fc2.forward(&self.act.apply(&l.fc1.forward(&l.ln2.forward(&xs)?)?)?)?;
        h + xs
    }

    /// The embedding dtype.
    pub fn dtype(&self) -> DType {
        self.token_embedding.embeddings().dtype()
    }
}

