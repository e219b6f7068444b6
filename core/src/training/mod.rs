//! Training, the parts every modality shares:
//! * [`optim`]: AdamW with resumable state, warm-up + cosine schedule, clipping, EMA;
//! * [`state`]: what a run updates ([`TrainState`]) and saves ([`Checkpoint`]);
//! * [`step_loop`]: the step loop (a batch's objective from the step's own random stream);
//! * [`forward_process`]: noising clean samples for the continuous objectives;
//! * with the `train` feature, [`run`]: the run driver (new or resumed runs, checkpoints,
//!   loss curve, `train.json`, progress events) and [`loss_curve`].
//!
//! Each modality keeps its recipe (model configuration, objective, saving in the hub
//! layout, evaluation) in its own crate's `train` module.

pub mod forward_process;
#[cfg(feature = "train")]
pub mod loss_curve;
pub mod optim;
#[cfg(feature = "train")]
pub mod run;
pub mod state;
pub mod step_loop;

pub use forward_process::noised_pair;
pub use optim::{AdamW, Ema, Params, WarmupCosine, grad_norm};
#[cfg(feature = "train")]
pub use run::{RunEvent, RunPlan, RunRecord, RunSettings, RunStatus, TrainingRun};
pub use state::{Checkpoint, TrainState};
pub use step_loop::{LoopOptions, TrainStep, train_loop};
