//! TAESD's decoder (madebyollin/taesd, diffusers' `AutoencoderTiny`): a ~1M-parameter
//! convolutional decoder distilled from the SD VAE, fast enough to turn the latents of
//! every step into a preview, and usable as a quick final decoder. It reads the *scaled*
//! latents the UNet works on and returns images in [-1, 1].
//!
//! Loads the diffusers layout (`config.json` + `diffusion_pytorch_model.safetensors`,
//! keys `decoder.layers.N`) or the original single file (`taesd_decoder.safetensors`,
//! keys `N` shifted by the clamp layer).

use std::path::Path;

use candle_core::{DType, Device, Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use super::resnet::{Conv2d, conv2d, conv2d_no_bias};

/// The decoder keys of an `AutoencoderTiny` config.
#[derive(Clone, Debug, Deserialize)]
pub struct TaesdConfig {
    /// Channels of each decoder level.
    #[serde(default = "channels")]
    pub decoder_block_out_channels: Vec<usize>,
    /// Residual blocks per level.
    #[serde(default = "blocks")]
    pub num_decoder_blocks: Vec<usize>,
    /// Latent channels.
    #[serde(default = "four")]
    pub latent_channels: usize,
    /// Image channels.
    #[serde(default = "three")]
    pub out_channels: usize,
    #[serde(default)]
    act_fn: Option<String>,
    #[serde(default)]
    upsample_fn: Option<String>,
    #[serde(default)]
    upsampling_scaling_factor: Option<usize>,
}

fn channels() -> Vec<usize> { vec![64; 4] }
fn blocks() -> Vec<usize> { vec![3, 3, 3, 1] }
fn four() -> usize { 4 }
fn three() -> usize { 3 }

impl Default for TaesdConfig {
    fn default() -> Self {
        serde_json::from_str("{}").expect("defaults")
    }
}

/// `AutoencoderTinyBlock`: three 3x3 convolutions with ReLUs, a skip, a final ReLU.
#[derive(Debug)]
struct Block {
    convs: [Conv2d; 3],
    skip: Option<Conv2d>,
}

impl Block {
    fn new(vb: VarBuilder, c_in: usize, c_out: usize) -> Result<Self> {
        let skip = if c_in != c_out {
            Some(conv2d_no_bias(vb.pp("skip"), c_in, c_out, 1, 0, 1)?)
        } else {
            None
        };
        Ok(Self {
            convs: [conv2d(vb.pp("conv.0"), c_in, c_out, 3, 1, 1)?, conv2d(vb.pp("conv.2"), c_out, c_out, 3, 1, 1)?, conv2d(vb.pp("conv.4"), c_out, c_out, 3, 1, 1)?],
            skip,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let h = self.convs[2].forward(&self.convs[1].forward(&self.convs[0].forward(xs)?.relu()?)?.relu()?)?;
        let s = match &self.skip {
            Some(c) => c.forward(xs)?,
            None => xs.clone(),
        };
        (h + s)?.relu()
    }
}

#[derive(Debug)]
enum Layer {
    Conv(Conv2d, bool),
    Block(Block),
    Upsample,
}

/// The TAESD decoder.
#[derive(Debug)]
pub struct TaesdDecoder {
    layers: Vec<Layer>,
}

impl TaesdDecoder {
    /// Builds the decoder from `vb`, whose layer `i` is named `prefix` + `(i + offset)`.
    pub fn new(cfg: &TaesdConfig, vb: VarBuilder, prefix: &str, offset: usize) -> Result<Self> {
        if cfg.act_fn.as_deref().is_some_and(|a| a != "relu") || cfg.upsample_fn.as_deref().is_some_and(|u| u != "nearest") || cfg.upsampling_scaling_factor.is_some_and(|f| f != 2) {
            candle_core::bail!("taesd: only relu activations and 2x nearest upsampling are supported");
        }
        let ch = &cfg.decoder_block_out_channels;
        if ch.is_empty() || ch.len() != cfg.num_decoder_blocks.len() {
            candle_core::bail!("taesd: decoder_block_out_channels and num_decoder_blocks must have the same length");
        }
        let name = |i: usize| format!("{prefix}{}", i + offset);
        let mut layers = vec![Layer::Conv(conv2d(vb.pp(name(0)), cfg.latent_channels, ch[0], 3, 1, 1)?, true)];
        let mut idx = 2; // 1 is the ReLU after the first convolution
        let n = ch.len();
        for (i, (&c, &nb)) in ch.iter().zip(&cfg.num_decoder_blocks).enumerate() {
            for _ in 0..nb {
                layers.push(Layer::Block(Block::new(vb.pp(name(idx)), c, c)?));
                idx += 1;
            }
            let last = i + 1 == n;
            if !last {
                layers.push(Layer::Upsample);
                idx += 1;
            }
            let out = if last { cfg.out_channels } else { c };
            let conv = if last {
                conv2d(vb.pp(name(idx)), c, out, 3, 1, 1)?
            } else {
                conv2d_no_bias(vb.pp(name(idx)), c, out, 3, 1, 1)?
            };
            layers.push(Layer::Conv(conv, false));
            idx += 1;
        }
        Ok(Self { layers })
    }

    /// Loads a diffusers `AutoencoderTiny` folder or an original `taesd_decoder.safetensors`.
    pub fn load(path: &Path, device: &Device, dtype: DType) -> crate::Result<Self> {
        let err = |e: candle_core::Error| crate::Error::Model(format!("{}: {e}", path.display()));
        let (cfg, file) = if path.is_dir() {
            let cfg_path = path.join("config.json");
            let cfg: TaesdConfig = if cfg_path.is_file() { crate::error::read_json(&cfg_path)? } else { TaesdConfig::default() };
            let file = ["diffusion_pytorch_model.safetensors", "taesd_decoder.safetensors", "taesdxl_decoder.safetensors"]
                .iter()
                .map(|f| path.join(f))
                .find(|p| p.is_file())
                .ok_or_else(|| crate::Error::Model(format!("{}: no TAESD .safetensors weights", path.display())))?;
            (cfg, file)
        } else if path.is_file() {
            (TaesdConfig::default(), path.to_path_buf())
        } else {
            return Err(crate::Error::Model(format!("{}: no such TAESD folder or file", path.display())));
        };
        let vb = stipple_core::weights::var_builder(&[&file], dtype, device)?;
        if vb.contains_tensor("decoder.layers.0.weight") {
            Self::new(&cfg, vb, "decoder.layers.", 0).map_err(err)
        } else if vb.contains_tensor("1.weight") {
            Self::new(&cfg, vb, "", 1).map_err(err)
        } else {
            Err(crate::Error::Model(format!("{}: neither a diffusers AutoencoderTiny nor a taesd_decoder file", file.display())))
        }
    }

    /// Scaled latents `[b, 4, h, w]` -> images `[b, 3, 8h, 8w]` in [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let mut x = ((latents / 3.0)?.tanh()? * 3.0)?;
        for layer in &self.layers {
            x = match layer {
                Layer::Conv(c, relu) => {
                    let y = c.forward(&x)?;
                    if *relu { y.relu()? } else { y }
                }
                Layer::Block(b) => b.forward(&x)?,
                Layer::Upsample => {
                    let (_, _, h, w) = x.dims4()?;
                    x.upsample_nearest2d(2 * h, 2 * w)?
                }
            };
        }
        x.affine(2.0, -1.0)
    }
}
