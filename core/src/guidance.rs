//! Classifier-free guidance, written once for every modality (image latents, spectrograms,
//! text logits): out = uncond + scale (cond - uncond), with optional guidance rescale.

use candle_core::{D, Tensor};

use crate::Result;

/// Guidance settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guidance {
    /// The guidance scale g (diffusers' convention: 1 means no guidance).
    pub scale: f64,
    /// Guidance rescale phi in [0, 1] (Lin et al. 2023): 0 turns it off.
    pub rescale: f64,
}

impl Guidance {
    /// Guidance with scale `scale` and no rescale.
    pub fn new(scale: f64) -> Self {
        Self { scale, rescale: 0.0 }
    }

    /// Whether an unconditional pass is needed at all (diffusers: only when scale > 1).
    pub fn is_active(&self) -> bool {
        self.scale > 1.0
    }

    /// Combines the conditional and unconditional outputs.
    ///
    /// Rescale follows diffusers' `rescale_noise_cfg`: per batch item, the guided output is
    /// scaled to the standard deviation of the conditional one (over all non-batch dims),
    /// then mixed with the plain guided output by phi.
    pub fn combine(&self, cond: &Tensor, uncond: &Tensor) -> Result<Tensor> {
        let guided = (uncond + (cond - uncond)?.affine(self.scale, 0.0)?)?;
        if self.rescale <= 0.0 {
            return Ok(guided);
        }
        let std_cond = std_per_item(cond)?;
        let std_guided = std_per_item(&guided)?;
        let rescaled = guided.broadcast_mul(&(std_cond / std_guided)?)?;
        Ok((rescaled.affine(self.rescale, 0.0)? + guided.affine(1.0 - self.rescale, 0.0)?)?)
    }

    /// LLaDA's unsupervised CFG for text logits: un + (w + 1)(cond - un), i.e. scale = w + 1.
    pub fn from_llada_cfg(w: f64) -> Self {
        Self::new(w + 1.0)
    }
}

/// Unbiased standard deviation over every dimension but the first, kept as [B, 1, ..., 1].
fn std_per_item(x: &Tensor) -> Result<Tensor> {
    let b = x.dim(0)?;
    let flat = x.flatten_from(1)?;
    let n = flat.dim(1)? as f64;
    let mean = flat.mean_keepdim(D::Minus1)?;
    let var = (flat.broadcast_sub(&mean)?.sqr()?.sum_keepdim(D::Minus1)? / (n - 1.0))?;
    let mut shape = vec![b];
    shape.extend(std::iter::repeat_n(1, x.rank() - 1));
    Ok(var.sqrt()?.reshape(shape)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn guidance_and_rescale_by_hand() {
        let dev = Device::Cpu;
        let cond = Tensor::new(&[[1f32, 3.0]], &dev).unwrap();
        let uncond = Tensor::new(&[[0f32, 1.0]], &dev).unwrap();
        let g = Guidance::new(2.0).combine(&cond, &uncond).unwrap();
        assert_eq!(g.to_vec2::<f32>().unwrap(), vec![vec![2.0, 5.0]]);
        // std(cond) = sqrt(2), std(guided) = sqrt(4.5): rescaled = guided * 2/3.
        let r = Guidance { scale: 2.0, rescale: 1.0 }.combine(&cond, &uncond).unwrap().to_vec2::<f32>().unwrap();
        assert!((r[0][0] - 4.0 / 3.0).abs() < 1e-5 && (r[0][1] - 10.0 / 3.0).abs() < 1e-5, "{r:?}");
        let half = Guidance { scale: 2.0, rescale: 0.5 }.combine(&cond, &uncond).unwrap().to_vec2::<f32>().unwrap();
        assert!((half[0][0] - (0.5 * 4.0 / 3.0 + 0.5 * 2.0)).abs() < 1e-5);
        assert!(!Guidance::new(1.0).is_active());
        assert_eq!(Guidance::from_llada_cfg(0.5).scale, 1.5);
    }
}
