//! The step loop every trainer shares: a batch's objective from the step's own random
//! stream, backprop, the optimiser and EMA, and a report per step.

use candle_core::Tensor;

use super::optim::WarmupCosine;
use super::state::TrainState;

/// The step loop's settings (recorded in checkpoints, so a resumed run keeps them).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct LoopOptions {
    /// Optimiser steps in the whole run.
    pub steps: usize,
    /// Learning-rate schedule.
    pub schedule: WarmupCosine,
    /// Global gradient-norm clip (`None`: off).
    pub clip: Option<f64>,
    /// Seed: step `s` draws its batch and noise from stream `s` of this seed, so a resumed
    /// run repeats the uninterrupted one exactly.
    pub seed: u64,
}

/// What one step reports.
#[derive(Clone, Copy, Debug)]
pub struct TrainStep {
    /// 1-based step.
    pub step: usize,
    /// The objective on this batch.
    pub loss: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Learning rate used.
    pub lr: f64,
}

/// Runs steps `state.opt.step .. opts.steps`: `loss` computes one batch's objective from
/// the step's random stream, then comes backprop, the optimiser and EMA; `on_step` sees
/// every step (progress, curves, checkpoints) and stops the run by returning `false`.
/// Errors of the caller's own type pass through unchanged.
pub fn train_loop<E: From<crate::Error> + From<candle_core::Error>>(
    state: &mut TrainState,
    opts: &LoopOptions,
    loss: &mut dyn FnMut(&mut crate::noise::PortableRng) -> std::result::Result<Tensor, E>,
    on_step: &mut dyn FnMut(&TrainStep, &TrainState) -> bool,
) -> std::result::Result<(), E> {
    for step in state.opt.step..opts.steps {
        let mut rng = crate::noise::PortableRng::stream(opts.seed, step as u64);
        let value = loss(&mut rng)?;
        let grads = value.backward()?;
        let lr = opts.schedule.lr(step);
        let grad_norm = state.step(&grads, lr, opts.clip)?;
        let report = TrainStep { step: step + 1, loss: value.to_dtype(candle_core::DType::F64)?.to_scalar::<f64>()?, grad_norm, lr };
        if !on_step(&report, state) {
            break;
        }
    }
    Ok(())
}
