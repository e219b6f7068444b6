//! What a generation will hold in memory at its peak, predicted from the UNet's and the
//! VAE's configs before anything is allocated ([`stipple_core::memory`] checks it).
//!
//! Each network is walked level by level the way its forward pass runs on the CPU, counting
//! the f32 tensors alive at once: the UNet's skip connections plus the widest block
//! (a transformer holds its input, the normed copy, q|k|v, the attention output, and GEGLU's
//! 8x-wide projection with its 4x-wide output); the VAE decoder's first residual block at
//! each resolution (input, normed copy, convolution output); and the Winograd convolution's
//! transformed tiles (at most 2048 tiles per pass). Attention scores are computed in blocks
//! that stay in cache, so they do not grow with the image.

use stipple_core::memory::Estimate;

use crate::models::unet::UNetConfig;
use crate::models::vae::VaeConfig;

/// Tiles per Winograd pass (`kernels/src/winograd.rs`).
const WINOGRAD_TILES: usize = 2048;

/// f32 values of a 3x3 convolution's transformed input and product buffers.
fn winograd(c_in: usize, c_out: usize, tiles: usize) -> usize {
    16 * tiles.min(WINOGRAD_TILES) * (c_in + c_out)
}

/// f32 values alive at the peak of one UNet call on `batch` latents of `h x w`.
pub fn unet_peak(cfg: &UNetConfig, batch: usize, h: usize, w: usize) -> usize {
    let levels = cfg.block_out_channels.len();
    let layers = cfg.layers_per_block.expand(levels, "layers_per_block").unwrap_or_else(|_| vec![2; levels]);
    let res = |i: usize| (h >> i).max(1) * (w >> i).max(1);
    let attention = |i: usize| cfg.down_block_types.get(i).is_some_and(|t| t.contains("Attn"));
    let mut skips = cfg.block_out_channels[0] * res(0);
    let mut widest = 0usize;
    let mut prev = cfg.block_out_channels[0];
    for (i, &c) in cfg.block_out_channels.iter().enumerate() {
        let r = res(i);
        skips += layers[i] * c * r;
        if i + 1 < levels {
            skips += c * res(i + 1);
        }
        // down: a resnet reads `prev` channels; up: it reads its input and a skip (~2c)
        let resnet = (2 * prev.max(2 * c) + 2 * c) * r + winograd(2 * c, c, r / 4);
        let transformer = if attention(i) { 14 * c * r } else { 0 };
        widest = widest.max(resnet).max(transformer);
        prev = c;
    }
    batch * (skips + widest)
}

/// f32 values alive at the peak of decoding `batch` latents of `h x w` (the image is
/// `factor` times larger each way).
pub fn vae_decode_peak(cfg: &VaeConfig, batch: usize, h: usize, w: usize) -> usize {
    let ch: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
    let mut widest = 0usize;
    // the mid block at the latents' size: its attention holds q, k, v and the output
    let latent = h * w;
    widest = widest.max(6 * ch[0] * latent);
    let mut c_in = ch[0];
    for (j, &c) in ch.iter().enumerate() {
        let r = latent << (2 * j);
        // the first residual block at this size: input, normed copy, convolution output
        widest = widest.max((2 * c_in + c) * r + winograd(c_in, c, r / 4));
        if j + 1 < ch.len() {
            // the upsampler: the nearest-neighbour copy and its convolution, at 4x the size
            widest = widest.max(2 * c * 4 * r + winograd(c, c, r));
        }
        c_in = c;
    }
    // the output's 3 channels, then the images as f32 and bytes
    widest = widest.max(2 * ch[ch.len() - 1] * (latent << (2 * (ch.len() - 1))));
    batch * widest
}

/// f32 values alive at the peak of encoding one `height x width` image (img2img).
pub fn vae_encode_peak(cfg: &VaeConfig, height: usize, width: usize) -> usize {
    let mut widest = 0usize;
    let mut c_in = cfg.block_out_channels[0];
    for (j, &c) in cfg.block_out_channels.iter().enumerate() {
        let r = (height >> j) * (width >> j);
        widest = widest.max((2 * c_in + c) * r + winograd(c_in, c, r / 4));
        c_in = c;
    }
    widest
}

/// The estimate of one generation: `batch` images of `width x height`, the UNet run on
/// `unet_batch` latents (twice the images under classifier-free guidance), an init image
/// encoded when `img2img`.
pub fn generation(unet: &UNetConfig, vae: &VaeConfig, factor: usize, batch: usize, unet_batch: usize, (width, height): (usize, usize), img2img: bool) -> Estimate {
    let (h, w) = (height / factor.max(1), width / factor.max(1));
    let unet = unet_peak(unet, unet_batch, h, w);
    let decode = vae_decode_peak(vae, batch, h, w);
    let encode = if img2img { vae_encode_peak(vae, height, width) } else { 0 };
    // the phases run one after another: the largest is the peak
    let (name, floats) = [("UNet activations", unet), ("VAE decoder", decode), ("VAE encoder", encode)].into_iter().max_by_key(|p| p.1).expect("three phases");
    Estimate::new(format!("{batch} image(s) of {width}x{height}")).floats(name, &[floats]).floats("latents and images", &[batch, 8, height, width])
}
