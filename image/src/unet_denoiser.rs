//! The UNet as the core's samplers see it ([`stipple_core::samplers::Denoiser`]):
//! classifier-free guidance, SDXL / LCM conditioning, and inpainting's extra channels or
//! known-region blend.

use candle_core::{DType, Tensor};
use stipple_core::guidance::Guidance;
use stipple_core::samplers::{self, Denoiser, Scheduler};

use crate::models::unet::{UNet2DConditionModel, UNetConditioning};

/// The known region of a 4-channel inpainting run, blended back after every step.
pub(crate) struct KnownRegion {
    pub(crate) original: Tensor,
    pub(crate) noise: Tensor,
    pub(crate) mask: Tensor,
}

/// The UNet's conditioning inputs, `[uncond; cond]` rows when guided.
pub(crate) struct Conditioning {
    pub(crate) context: Tensor,
    pub(crate) text_embeds: Option<Tensor>,
    pub(crate) time_ids: Vec<[f64; 6]>,
    pub(crate) timestep_cond: Option<Tensor>,
}

/// Where the loop starts: the latents, the step index, and what inpainting adds.
pub(crate) struct StartLatents {
    pub(crate) latents: Tensor,
    pub(crate) start: usize,
    /// A 9-channel inpainting UNet's extra input: the mask and the masked image's latents.
    pub(crate) mask_channels: Option<Tensor>,
    pub(crate) known_region: Option<KnownRegion>,
}

/// The UNet as the core's samplers see it: CFG, SDXL / LCM conditioning and the
/// inpainting channels inside.
pub(crate) struct UNetDenoiser<'a> {
    pub(crate) unet: &'a UNet2DConditionModel,
    pub(crate) conditioning: Conditioning,
    pub(crate) guidance: Guidance,
    pub(crate) guided: bool,
    pub(crate) mask_channels: Option<Tensor>,
    pub(crate) known_region: Option<KnownRegion>,
}

impl Denoiser for UNetDenoiser<'_> {
    fn denoise(&mut self, sample: &Tensor, timestep: f64) -> stipple_core::Result<Tensor> {
        let input = if self.guided { Tensor::cat(&[sample, sample], 0)? } else { sample.clone() };
        let input = match &self.mask_channels {
            Some(e) => Tensor::cat(&[&input, e], 1)?,
            None => input,
        };
        let c = &self.conditioning;
        let cond = UNetConditioning {
            context: &c.context,
            text_embeds: c.text_embeds.as_ref(),
            time_ids: c.text_embeds.as_ref().map(|_| c.time_ids.as_slice()),
            timestep_cond: c.timestep_cond.as_ref(),
        };
        let out = self.unet.forward(&input.to_dtype(self.unet.dtype())?, timestep, &cond)?.to_dtype(DType::F32)?;
        if !self.guided {
            return Ok(out);
        }
        let b = sample.dim(0)?;
        self.guidance.combine(&out.narrow(0, b, b)?, &out.narrow(0, 0, b)?)
    }

    fn after_step(&mut self, scheduler: &dyn Scheduler, step_index: usize, sample: Tensor) -> stipple_core::Result<Tensor> {
        match &self.known_region {
            Some(bl) => samplers::inpaint_blend(scheduler, &sample, &bl.original, &bl.noise, &bl.mask, step_index),
            None => Ok(sample),
        }
    }
}
