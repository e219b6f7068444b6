//! Continuous-time samplers, one file per scheduler, each with the exact semantics of its
//! diffusers namesake, behind one [`Scheduler`] trait and one sampling loop ([`sample`]).
//!
//! A scheduler is built for a fixed number of steps from a [`SchedulerConfig`]. Its
//! [`Scheduler::timesteps`] are the model calls to make, in order; the loop calls
//! [`Scheduler::scale_model_input`], the denoiser, then [`Scheduler::step`].

pub mod analytic;
mod ddim;
mod ddpm;
mod dpm_solver_multistep;
mod euler;
mod euler_ancestral;
mod flow_match_euler;
mod heun;
mod lcm;
mod pndm;
mod sigma_schedule;
mod unipc;

use std::fmt;
use std::str::FromStr;

use candle_core::Tensor;

use crate::config::SchedulerConfig;
use crate::noise::NoiseSource;
use crate::progress::{CancelToken, Progress, StepReporter};
use crate::{Error, Result};
pub(crate) use crate::tensor_math::{div, lin2};

pub use ddim::Ddim;
pub use ddpm::Ddpm;
pub use dpm_solver_multistep::DpmSolverMultistep;
pub use euler::Euler;
pub use euler_ancestral::EulerAncestral;
pub use flow_match_euler::FlowMatchEuler;
pub use heun::Heun;
pub use lcm::Lcm;
pub use pndm::Pndm;
pub use unipc::UniPc;

/// One sampler ready to run a fixed number of steps.
pub trait Scheduler: Send {
    /// The user-facing name of the sampler (`euler`, `dpm++2m`, ...).
    fn name(&self) -> &'static str;
    /// The timesteps passed to the model, one per model call, in order.
    fn timesteps(&self) -> &[f64];
    /// The sigma schedule, for samplers that have one (one more entry than steps).
    fn sigmas(&self) -> Option<&[f32]> {
        None
    }
    /// The factor diffusers multiplies unit initial noise by.
    fn init_noise_sigma(&self) -> f64 {
        1.0
    }
    /// Model calls per step (2 for Heun): img2img skips `order` entries per skipped step.
    fn order(&self) -> usize {
        1
    }
    /// Scales the sample before the model sees it (1/sqrt(sigma^2+1) for sigma samplers).
    fn scale_model_input(&self, sample: &Tensor, _step_index: usize) -> Result<Tensor> {
        Ok(sample.clone())
    }
    /// Advances the sample by one entry of [`Scheduler::timesteps`].
    fn step(&mut self, model_output: &Tensor, step_index: usize, sample: &Tensor, noise: &mut dyn NoiseSource) -> Result<Tensor>;
    /// Noises a clean sample to the noise level of `step_index` (img2img, inpainting).
    fn add_noise(&self, original: &Tensor, noise: &Tensor, step_index: usize) -> Result<Tensor>;
}

/// The sampler families stipple implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SamplerKind {
    /// DDPM ancestral sampling.
    Ddpm,
    /// DDIM (eta from the config, 0 by default).
    Ddim,
    /// PNDM in its PLMS form (SD 1.x's default).
    Pndm,
    /// Euler (deterministic).
    Euler,
    /// Euler ancestral ("Euler a").
    EulerAncestral,
    /// Heun (two model calls per step).
    Heun,
    /// DPM-Solver++ 2M.
    DpmPp2M,
    /// DPM-Solver++ 2M SDE.
    DpmPp2MSde,
    /// UniPC (bh2, order 2).
    UniPc,
    /// Latent consistency model sampling.
    Lcm,
    /// Flow-matching Euler (SD3, FLUX).
    FlowEuler,
}

/// How the sigmas of a sigma-space sampler are spaced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SigmaSpacing {
    /// What the config says (`use_karras_sigmas` ...), or the model's own timesteps.
    #[default]
    Config,
    /// Karras sigmas.
    Karras,
    /// Exponential sigmas.
    Exponential,
}

impl FromStr for SigmaSpacing {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "karras" => Ok(Self::Karras),
            "exponential" => Ok(Self::Exponential),
            "default" | "config" => Ok(Self::Config),
            other => Err(Error::InvalidArgument(format!("unknown sigma spacing {other:?} (karras, exponential)"))),
        }
    }
}

/// A sampler choice as users write it: a kind plus an optional sigma spacing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SamplerSpec {
    /// The sampler family.
    pub kind: SamplerKind,
    /// Sigma spacing override.
    pub sigmas: SigmaSpacing,
}

/// Every name accepted by [`SamplerSpec::from_str`], for help texts.
pub const SAMPLER_NAMES: &[&str] =
    &["ddpm", "ddim", "pndm", "euler", "euler-a", "heun", "dpm++2m", "dpm++2m-karras", "dpm++2m-sde", "unipc", "lcm", "flow-euler"];

impl FromStr for SamplerSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let (kind, sigmas) = match s.to_ascii_lowercase().as_str() {
            "ddpm" => (SamplerKind::Ddpm, SigmaSpacing::Config),
            "ddim" => (SamplerKind::Ddim, SigmaSpacing::Config),
            "pndm" | "plms" => (SamplerKind::Pndm, SigmaSpacing::Config),
            "euler" => (SamplerKind::Euler, SigmaSpacing::Config),
            "euler-a" | "euler_a" | "euler-ancestral" => (SamplerKind::EulerAncestral, SigmaSpacing::Config),
            "heun" => (SamplerKind::Heun, SigmaSpacing::Config),
            "dpm++2m" | "dpmpp2m" => (SamplerKind::DpmPp2M, SigmaSpacing::Config),
            "dpm++2m-karras" => (SamplerKind::DpmPp2M, SigmaSpacing::Karras),
            "dpm++2m-sde" => (SamplerKind::DpmPp2MSde, SigmaSpacing::Config),
            "dpm++2m-sde-karras" => (SamplerKind::DpmPp2MSde, SigmaSpacing::Karras),
            "unipc" => (SamplerKind::UniPc, SigmaSpacing::Config),
            "lcm" => (SamplerKind::Lcm, SigmaSpacing::Config),
            "flow-euler" | "flow-match-euler" => (SamplerKind::FlowEuler, SigmaSpacing::Config),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown sampler {other:?}; choose one of {}",
                    SAMPLER_NAMES.join(", ")
                )));
            }
        };
        Ok(Self { kind, sigmas })
    }
}

impl fmt::Display for SamplerSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let base = match self.kind {
            SamplerKind::Ddpm => "ddpm",
            SamplerKind::Ddim => "ddim",
            SamplerKind::Pndm => "pndm",
            SamplerKind::Euler => "euler",
            SamplerKind::EulerAncestral => "euler-a",
            SamplerKind::Heun => "heun",
            SamplerKind::DpmPp2M => "dpm++2m",
            SamplerKind::DpmPp2MSde => "dpm++2m-sde",
            SamplerKind::UniPc => "unipc",
            SamplerKind::Lcm => "lcm",
            SamplerKind::FlowEuler => "flow-euler",
        };
        match self.sigmas {
            SigmaSpacing::Config => write!(f, "{base}"),
            SigmaSpacing::Karras => write!(f, "{base}-karras"),
            SigmaSpacing::Exponential => write!(f, "{base}-exponential"),
        }
    }
}

impl SamplerSpec {
    /// The sampler diffusers would use for a config's `_class_name` (the model's own default).
    pub fn for_class(class_name: &str, cfg: &SchedulerConfig) -> Result<Self> {
        let kind = match class_name {
            "DDPMScheduler" => SamplerKind::Ddpm,
            "DDIMScheduler" => SamplerKind::Ddim,
            "PNDMScheduler" => SamplerKind::Pndm,
            "EulerDiscreteScheduler" => SamplerKind::Euler,
            "EulerAncestralDiscreteScheduler" => SamplerKind::EulerAncestral,
            "HeunDiscreteScheduler" => SamplerKind::Heun,
            "DPMSolverMultistepScheduler" => match cfg.algorithm_type.as_deref() {
                Some("sde-dpmsolver++") => SamplerKind::DpmPp2MSde,
                _ => SamplerKind::DpmPp2M,
            },
            "UniPCMultistepScheduler" => SamplerKind::UniPc,
            "LCMScheduler" => SamplerKind::Lcm,
            "FlowMatchEulerDiscreteScheduler" => SamplerKind::FlowEuler,
            other => return Err(Error::Config(format!("scheduler class {other} is not supported"))),
        };
        Ok(Self { kind, sigmas: SigmaSpacing::Config })
    }

    /// Builds the scheduler for `steps` inference steps. `mu` is the dynamic flow shift
    /// (required when the config sets `use_dynamic_shifting`).
    pub fn build(&self, cfg: &SchedulerConfig, steps: usize, mu: Option<f64>) -> Result<Box<dyn Scheduler>> {
        if steps == 0 {
            return Err(Error::InvalidArgument("the number of steps must be at least 1".into()));
        }
        cfg.reject_unsupported()?;
        match (cfg.is_flow(), self.kind == SamplerKind::FlowEuler) {
            (true, false) => {
                return Err(Error::InvalidArgument(format!(
                    "this is a flow-matching scheduler config (SD3/FLUX): use flow-euler, not {self}"
                )));
            }
            (false, true) => {
                return Err(Error::InvalidArgument(
                    "flow-euler needs a flow-matching config (FlowMatchEulerDiscreteScheduler)".into(),
                ));
            }
            _ => {}
        }
        let mut cfg = cfg.clone();
        match self.sigmas {
            SigmaSpacing::Config => {}
            SigmaSpacing::Karras => {
                cfg.use_karras_sigmas = Some(true);
                cfg.use_exponential_sigmas = Some(false);
            }
            SigmaSpacing::Exponential => {
                cfg.use_exponential_sigmas = Some(true);
                cfg.use_karras_sigmas = Some(false);
            }
        }
        if cfg.use_karras_sigmas == Some(true) && cfg.use_exponential_sigmas == Some(true) {
            return Err(Error::Config("use_karras_sigmas and use_exponential_sigmas are exclusive".into()));
        }
        let spaced = cfg.use_karras_sigmas == Some(true) || cfg.use_exponential_sigmas == Some(true);
        let no_sigma_spacing = matches!(
            self.kind,
            SamplerKind::Ddpm | SamplerKind::Ddim | SamplerKind::Pndm | SamplerKind::EulerAncestral | SamplerKind::Lcm | SamplerKind::FlowEuler
        );
        if spaced && no_sigma_spacing {
            return Err(Error::InvalidArgument(format!(
                "{} does not take Karras or exponential sigmas (diffusers does not allow it either)",
                SamplerSpec { kind: self.kind, sigmas: SigmaSpacing::Config }
            )));
        }
        Ok(match self.kind {
            SamplerKind::Ddpm => Box::new(Ddpm::new(&cfg, steps)?),
            SamplerKind::Ddim => Box::new(Ddim::new(&cfg, steps)?),
            SamplerKind::Pndm => Box::new(Pndm::new(&cfg, steps)?),
            SamplerKind::Euler => Box::new(Euler::new(&cfg, steps)?),
            SamplerKind::EulerAncestral => Box::new(EulerAncestral::new(&cfg, steps)?),
            SamplerKind::Heun => Box::new(Heun::new(&cfg, steps)?),
            SamplerKind::DpmPp2M => Box::new(DpmSolverMultistep::new(&cfg, steps, false)?),
            SamplerKind::DpmPp2MSde => Box::new(DpmSolverMultistep::new(&cfg, steps, true)?),
            SamplerKind::UniPc => Box::new(UniPc::new(&cfg, steps)?),
            SamplerKind::Lcm => Box::new(Lcm::new(&cfg, steps)?),
            SamplerKind::FlowEuler => Box::new(FlowMatchEuler::new(&cfg, steps, mu)?),
        })
    }
}

/// A denoising model as the samplers see it: given the (scaled) sample and the model
/// timestep, return the model output in the config's prediction type. Pipelines put
/// classifier-free guidance inside their denoiser.
pub trait Denoiser {
    /// One model evaluation.
    fn denoise(&mut self, sample: &Tensor, timestep: f64) -> Result<Tensor>;

    /// Called with the sample after each step (at `step_index`), returning the sample to
    /// continue from: 4-channel inpainting re-imposes the known region here ([`inpaint_blend`]).
    fn after_step(&mut self, _scheduler: &dyn Scheduler, _step_index: usize, sample: Tensor) -> Result<Tensor> {
        Ok(sample)
    }
}

impl<F: FnMut(&Tensor, f64) -> Result<Tensor>> Denoiser for F {
    fn denoise(&mut self, sample: &Tensor, timestep: f64) -> Result<Tensor> {
        self(sample, timestep)
    }
}

/// Runs a scheduler from `start_index` (0, or the img2img start) to the end: the loop of
/// every diffusers pipeline. Reports each step (with the current latents as preview) and
/// stops with [`Error::Cancelled`] when `cancel` fires.
pub fn sample(
    scheduler: &mut dyn Scheduler,
    mut x: Tensor,
    start_index: usize,
    denoiser: &mut dyn Denoiser,
    noise: &mut dyn NoiseSource,
    progress: &mut dyn Progress<Tensor>,
    cancel: &CancelToken,
) -> Result<Tensor> {
    let timesteps = scheduler.timesteps().to_vec();
    let total = timesteps.len().saturating_sub(start_index);
    let mut reporter = StepReporter::new(progress, cancel.clone(), total);
    for (i, &t) in timesteps.iter().enumerate().skip(start_index) {
        reporter.check()?;
        let input = scheduler.scale_model_input(&x, i)?;
        let output = denoiser.denoise(&input, t)?;
        x = scheduler.step(&output, i, &x, noise)?;
        x = denoiser.after_step(scheduler, i, x)?;
        reporter.step(i + 1 - start_index, Some(&x))?;
    }
    Ok(x)
}

/// The 4-channel inpainting blend diffusers applies after each step: keep the model's
/// latents where `mask` is 1 and the re-noised original (at the next step's noise level) where it is 0.
pub fn inpaint_blend(
    scheduler: &dyn Scheduler,
    latents: &Tensor,
    original: &Tensor,
    noise: &Tensor,
    mask: &Tensor,
    step_index: usize,
) -> Result<Tensor> {
    let next = step_index + 1;
    let known = if next < scheduler.timesteps().len() {
        scheduler.add_noise(original, noise, next)?
    } else {
        original.clone()
    };
    let keep = mask.broadcast_as(latents.shape())?;
    let inv = keep.affine(-1.0, 1.0)?;
    Ok(((known * inv)? + (latents * keep)?)?)
}

/// Checks a step index against a schedule's length with a clear error.
pub(crate) fn check_index(index: usize, len: usize, name: &str) -> Result<()> {
    if index >= len {
        return Err(Error::InvalidArgument(format!("{name}: step index {index} is past the last of {len} steps")));
    }
    Ok(())
}
