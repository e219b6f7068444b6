//! Training a small text-to-image latent diffusion model: a conditional UNet
//! (`UNet2DConditionModel`) with cross-attention to a small CLIP text encoder trained
//! with it, on latents of a frozen autoencoder. Each step draws one timestep per picture,
//! noises its latent with the scheduler's `alphas_cumprod`, drops the caption (empty
//! prompt) with a small probability so classifier-free guidance works, and regresses the
//! noise (epsilon) or the velocity (v).

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use stipple_core::noise::PortableRng;
use stipple_core::prediction::PredictionType;
use stipple_core::training::{LoopOptions, TrainStep, TrainState, noised_pair, train_loop};

use crate::error::{Error, Result};
use crate::models::clip::{ClipTextConfig, ClipTextModel};
use crate::models::unet::{UNet2DConditionModel, UNetConditioning, UNetConfig};

/// The `unet/config.json` of a small SD 1.x-style UNet: one cross-attention down block
/// (and its mirrored up block) per entry of `channels`, `heads` attention heads, for
/// `latent_size`-side latents with `latent_channels` channels.
pub fn unet_config(latent_size: usize, latent_channels: usize, channels: &[usize], cross_dim: usize, heads: usize, groups: usize) -> serde_json::Value {
    serde_json::json!({
        "_class_name": "UNet2DConditionModel",
        "_diffusers_version": "0.42.1",
        "act_fn": "silu",
        "attention_head_dim": heads,
        "block_out_channels": channels,
        "center_input_sample": false,
        "cross_attention_dim": cross_dim,
        "down_block_types": vec!["CrossAttnDownBlock2D"; channels.len()],
        "up_block_types": vec!["CrossAttnUpBlock2D"; channels.len()],
        "mid_block_type": "UNetMidBlock2DCrossAttn",
        "downsample_padding": 1,
        "flip_sin_to_cos": true,
        "freq_shift": 0,
        "in_channels": latent_channels,
        "out_channels": latent_channels,
        "layers_per_block": 1,
        "mid_block_scale_factor": 1,
        "norm_eps": 1e-5,
        "norm_num_groups": groups,
        "sample_size": latent_size,
        "use_linear_projection": false,
    })
}

/// The `text_encoder/config.json` of a small CLIP text model (transformers' layout).
pub fn text_encoder_config(vocab_size: usize, hidden: usize, layers: usize, heads: usize, max_len: usize) -> serde_json::Value {
    serde_json::json!({
        "architectures": ["CLIPTextModel"],
        "model_type": "clip_text_model",
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": 4 * hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "max_position_embeddings": max_len,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "bos_token_id": vocab_size - 2,
        "eos_token_id": vocab_size - 1,
        "pad_token_id": vocab_size - 1,
        "projection_dim": hidden,
        "torch_dtype": "float32",
    })
}

/// The trained pair, their parameters in one map under `unet.` and `text_encoder.`.
pub struct TextToImage {
    /// The denoiser.
    pub unet: UNet2DConditionModel,
    /// The caption encoder.
    pub text_encoder: ClipTextModel,
    /// All parameters.
    pub varmap: VarMap,
}

impl TextToImage {
    /// Fresh networks for the two configs, initialised from `seed`.
    pub fn new(unet_json: &serde_json::Value, text_json: &serde_json::Value, device: &Device, seed: u64) -> Result<Self> {
        let bad = |what: &str, e: serde_json::Error| Error::InvalidArgument(format!("{what} config: {e}"));
        let ucfg: UNetConfig = serde_json::from_value(unet_json.clone()).map_err(|e| bad("unet", e))?;
        ucfg.check()?;
        let tcfg = ClipTextConfig::from_value(text_json.clone()).map_err(|e| bad("text encoder", e))?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, device);
        let unet = UNet2DConditionModel::new(&ucfg, vb.pp("unet"))?;
        let text_encoder = ClipTextModel::new(&tcfg, vb.pp("text_encoder"))?;
        super::init::fan_in_normal(&varmap, seed)?;
        Ok(Self { unet, text_encoder, varmap })
    }

    /// Replaces every parameter with a trained pipeline's (`dir`'s `unet/` and
    /// `text_encoder/` weights), to go on training it: a second stage at a lower rate
    /// sharpens what the first learned.
    pub fn load_trained(&self, dir: &Path) -> Result<()> {
        let (unet, text) = (dir.join("unet/diffusion_pytorch_model.safetensors"), dir.join("text_encoder/model.safetensors"));
        super::init::load_trained(&self.varmap, &[("unet", &unet), ("text_encoder", &text)])
    }
}

/// Settings of a text-to-image run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct DiffusionOptions {
    /// Pictures per step.
    pub batch: usize,
    /// Probability of training a picture with the empty caption (for guidance).
    pub caption_dropout: f64,
    /// What the UNet learns to predict.
    pub prediction: PredictionType,
}

/// The training set in latent form: per picture the autoencoder's latent mean and
/// standard deviation (already multiplied by the scaling factor), and caption ids.
pub struct LatentSet {
    /// `[N, c, h, w]`.
    pub mean: Tensor,
    /// `[N, c, h, w]`.
    pub std: Tensor,
    /// Token rows (fixed length).
    pub captions: Vec<Vec<u32>>,
    /// The empty caption's row.
    pub empty: Vec<u32>,
}

/// One batch's objective: mean squared error of the UNet's output against the target.
pub fn loss(model: &TextToImage, data: &LatentSet, alphas_cumprod: &[f32], opts: &DiffusionOptions, rng: &mut PortableRng) -> Result<Tensor> {
    let n = data.mean.dim(0)?;
    let rows: Vec<u32> = (0..opts.batch).map(|_| (rng.next_uniform() * n as f64) as u32).collect();
    let idx = Tensor::from_vec(rows.clone(), opts.batch, data.mean.device())?;
    let (mean, std) = (data.mean.index_select(&idx, 0)?, data.std.index_select(&idx, 0)?);
    let z = (&mean + (&std * rng.randn(mean.shape().clone(), DType::F32, mean.device())?)?)?;
    let steps: Vec<usize> = rows.iter().map(|_| ((rng.next_uniform() * alphas_cumprod.len() as f64) as usize).min(alphas_cumprod.len() - 1)).collect();
    let ids: Vec<Vec<u32>> = rows.iter().map(|&r| if rng.next_uniform() < opts.caption_dropout { data.empty.clone() } else { data.captions[r as usize].clone() }).collect();
    let noise = rng.randn(z.shape().clone(), DType::F32, z.device())?;
    let abar: Vec<f32> = steps.iter().map(|&t| alphas_cumprod[t]).collect();
    let (noisy, target) = noised_pair(&z, &noise, &abar, opts.prediction)?;
    let context = model.text_encoder.forward(&ids, z.device())?.last_hidden;
    let cond = UNetConditioning { context: &context, text_embeds: None, time_ids: None, timestep_cond: None };
    let out = model.unet.forward_timesteps(&noisy, &steps.iter().map(|&t| t as f64).collect::<Vec<_>>(), &cond)?;
    Ok((out - target)?.sqr()?.mean_all()?)
}

/// Trains `model` on `data` from `state`'s step.
pub fn train(
    model: &TextToImage,
    data: &LatentSet,
    alphas_cumprod: &[f32],
    opts: &DiffusionOptions,
    looped: &LoopOptions,
    state: &mut TrainState,
    on_step: &mut dyn FnMut(&TrainStep, &TrainState) -> bool,
) -> Result<()> {
    if data.captions.len() != data.mean.dim(0)? || data.captions.is_empty() {
        return Err(Error::InvalidArgument(format!("{} captions for {} latents", data.captions.len(), data.mean.dim(0)?)));
    }
    let mut objective = |rng: &mut PortableRng| loss(model, data, alphas_cumprod, opts, rng);
    train_loop(state, looped, &mut objective, on_step)
}
