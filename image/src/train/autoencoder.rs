//! Training a small KL autoencoder (diffusers' `AutoencoderKL`): reconstruction error of
//! a sampled latent plus a small KL term towards the unit Gaussian, as in the latent
//! diffusion paper (without its adversarial and perceptual terms, which a 32-pixel model
//! does not need). The latent scaling factor is measured on the data afterwards, as
//! Stable Diffusion's 0.18215 was.

use candle_core::{D, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use stipple_core::noise::PortableRng;
use stipple_core::training::{LoopOptions, TrainStep, TrainState, train_loop};

use crate::error::{Error, Result};
use crate::models::vae::{AutoencoderKL, VaeConfig};

/// The `vae/config.json` of a small autoencoder for `size`-pixel pictures: one
/// `DownEncoderBlock2D` per entry of `channels` (each but the last halves the side).
pub fn config(size: usize, channels: &[usize], latent_channels: usize, groups: usize) -> serde_json::Value {
    serde_json::json!({
        "_class_name": "AutoencoderKL",
        "_diffusers_version": "0.42.1",
        "act_fn": "silu",
        "block_out_channels": channels,
        "down_block_types": vec!["DownEncoderBlock2D"; channels.len()],
        "up_block_types": vec!["UpDecoderBlock2D"; channels.len()],
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": latent_channels,
        "layers_per_block": 1,
        "mid_block_add_attention": true,
        "norm_num_groups": groups,
        "sample_size": size,
        "scaling_factor": 1.0,
        "force_upcast": false,
        "use_quant_conv": true,
        "use_post_quant_conv": true,
    })
}

/// A freshly initialised autoencoder for `cfg`, its parameters in a [`VarMap`]: convolution
/// and linear weights normal with std `1/sqrt(fan_in)`, norms at unit gain, biases zero,
/// drawn from the portable generator seeded with `seed`.
pub fn new(cfg_json: &serde_json::Value, device: &Device, seed: u64) -> Result<(AutoencoderKL, VarMap)> {
    let cfg: VaeConfig = serde_json::from_value(cfg_json.clone()).map_err(|e| Error::InvalidArgument(format!("vae config: {e}")))?;
    let varmap = VarMap::new();
    let vae = AutoencoderKL::new(&cfg, VarBuilder::from_varmap(&varmap, candle_core::DType::F32, device))?;
    super::init::fan_in_normal(&varmap, seed)?;
    Ok((vae, varmap))
}

/// Settings of an autoencoder run.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct AutoencoderOptions {
    /// Pictures per step.
    pub batch: usize,
    /// Weight of the KL term (per latent element, against the per-pixel squared error).
    pub kl_weight: f64,
    /// Train only the decoder (the encoder frozen, so the latents, and a UNet trained
    /// on them, stay valid): how Stable Diffusion's ft-MSE autoencoder was sharpened.
    #[serde(default)]
    pub decoder_only: bool,
}

/// Whether parameter `name` belongs to the decoder side (what `decoder_only` trains).
pub fn is_decoder_param(name: &str) -> bool {
    name.starts_with("decoder.") || name.starts_with("post_quant_conv.")
}

/// One batch's objective: `mean |x - x'|^2 + kl_weight * mean KL(q(z|x) || N(0, 1))`;
/// with `decoder_only`, the reconstruction error of the frozen encoder's latents alone.
pub fn loss(vae: &AutoencoderKL, images: &Tensor, opts: &AutoencoderOptions, rng: &mut PortableRng) -> Result<Tensor> {
    let mut dist = vae.encode(images)?;
    if opts.decoder_only {
        (dist.mean, dist.std) = (dist.mean.detach(), dist.std.detach());
    }
    let noise = rng.randn(dist.mean.shape().clone(), candle_core::DType::F32, images.device())?;
    let rec = vae.decode(&dist.sample(&noise)?)?;
    let mse = (rec - images)?.sqr()?.mean_all()?;
    if opts.decoder_only {
        return Ok(mse);
    }
    let kl_weight = opts.kl_weight;
    let var = dist.std.sqr()?;
    let kl = ((dist.mean.sqr()? + &var)? - 1.0)?.sub(&var.log()?)?.mean_all()?.affine(0.5, 0.0)?;
    Ok((mse + (kl * kl_weight)?)?)
}

/// Random rows of `images` for one batch.
pub fn batch(images: &Tensor, n: usize, rng: &mut PortableRng) -> Result<Tensor> {
    let total = images.dim(0)?;
    let rows: Vec<u32> = (0..n).map(|_| (rng.next_uniform() * total as f64) as u32).collect();
    Ok(images.index_select(&Tensor::from_vec(rows, n, images.device())?, 0)?)
}

/// Trains `vae` on `images` (`[N, 3, H, W]` in [-1, 1]) from `state`'s step.
pub fn train(
    vae: &AutoencoderKL,
    images: &Tensor,
    opts: &AutoencoderOptions,
    looped: &LoopOptions,
    state: &mut TrainState,
    on_step: &mut dyn FnMut(&TrainStep, &TrainState) -> bool,
) -> Result<()> {
    let mut objective = |rng: &mut PortableRng| -> Result<Tensor> {
        let x = batch(images, opts.batch, rng)?;
        loss(vae, &x, opts, rng)
    };
    train_loop(state, looped, &mut objective, on_step)
}

/// The scaling factor that gives the latent means of `images` unit variance
/// (`1 / std`), measured in batches of `batch`.
pub fn scaling_factor(vae: &AutoencoderKL, images: &Tensor, batch: usize) -> Result<f64> {
    let n = images.dim(0)?;
    let (mut sum, mut sq, mut count) = (0f64, 0f64, 0usize);
    for start in (0..n).step_by(batch.max(1)) {
        let x = images.narrow(0, start, batch.min(n - start))?;
        let m = vae.encode(&x)?.mean.detach().flatten_all()?.to_dtype(candle_core::DType::F64)?;
        sum += m.sum_all()?.to_scalar::<f64>()?;
        sq += m.sqr()?.sum_all()?.to_scalar::<f64>()?;
        count += m.dim(D::Minus1)?;
    }
    let mean = sum / count as f64;
    let std = (sq / count as f64 - mean * mean).max(1e-12).sqrt();
    Ok(1.0 / std)
}
