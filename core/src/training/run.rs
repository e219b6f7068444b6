//! The run driver every `stipple train` model run shares: refusing to overwrite a run,
//! resuming one from `OUT/checkpoint` with its own settings, periodic checkpoints with
//! the model and loss curve saved beside them, a wall-time limit, and `train.json`.
//! Progress goes to the caller as [`RunEvent`]s (the command line draws a bar from them).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::json;

use super::loss_curve::{self, LossPoint};
use super::optim::{Params, WarmupCosine};
use super::state::{Checkpoint, TrainState};
use super::step_loop::{LoopOptions, TrainStep};
use crate::params::{Param, Range};
use crate::{Error, Result};

/// The settings of every model run (the command line's run options), before a modality
/// fills in its own defaults.
#[derive(Clone, Debug)]
pub struct RunSettings {
    /// Continue the run saved in `OUT/checkpoint`, with its own settings.
    pub resume: bool,
    /// Optimiser steps.
    pub steps: usize,
    /// Peak learning rate (`None`: the modality's default).
    pub lr: Option<f64>,
    /// Warm-up steps.
    pub warmup: usize,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
    /// Global gradient-norm clip.
    pub clip: f64,
    /// EMA decay of the saved weights.
    pub ema: f64,
    /// Save a checkpoint (and the model, loss curve) every this many steps.
    pub checkpoint_every: usize,
    /// Stop (after saving) once this much wall time has passed.
    pub max_minutes: Option<f64>,
    /// Seed of the batches and noise.
    pub seed: u64,
}

/// `RunSettings`' ranges (`stipple train`'s run options), checked when a run starts.
pub static PARAMS: crate::params::Table<RunSettings> = crate::params::Table {
    commands: "train text / image / vae (RunSettings)",
    params: &[
        Param { name: "steps", flag: "--steps", range: Range::int(1, 100_000_000), help: "optimiser steps", get: |s| Some(s.steps as f64), set: |s, v| s.steps = v as usize },
        Param { name: "lr", flag: "--lr", range: Range::open_closed(0.0, 1.0), help: "peak learning rate", get: |s| s.lr, set: |s, v| s.lr = Some(v) },
        Param { name: "warmup", flag: "--warmup", range: Range::int(0, 100_000_000), help: "warm-up steps", get: |s| Some(s.warmup as f64), set: |s, v| s.warmup = v as usize },
        Param { name: "weight_decay", flag: "--weight-decay", range: Range::closed(0.0, 1.0), help: "AdamW's decoupled weight decay", get: |s| Some(s.weight_decay), set: |s, v| s.weight_decay = v },
        Param { name: "clip", flag: "--clip", range: Range::open_closed(0.0, 1e6), help: "global gradient-norm clip", get: |s| Some(s.clip), set: |s, v| s.clip = v },
        Param { name: "ema", flag: "--ema", range: Range { min: 0.0, min_open: false, max: 1.0, max_open: true, integer: false }, help: "EMA decay of the saved weights", get: |s| Some(s.ema), set: |s, v| s.ema = v },
        Param { name: "checkpoint_every", flag: "--checkpoint-every", range: Range::int(1, 100_000_000), help: "steps between checkpoints", get: |s| Some(s.checkpoint_every as f64), set: |s, v| s.checkpoint_every = v as usize },
        Param { name: "max_minutes", flag: "--max-minutes", range: Range::closed(0.0, 1e6), help: "wall-time limit (0: stop after the first step's save)", get: |s| s.max_minutes, set: |s, v| s.max_minutes = Some(v) },
    ],
    rules: &[],
};

impl Default for RunSettings {
    fn default() -> Self {
        Self { resume: false, steps: 2000, lr: None, warmup: 100, weight_decay: 0.1, clip: 1.0, ema: 0.995, checkpoint_every: 100, max_minutes: None, seed: 0 }
    }
}

impl RunSettings {
    /// Checks every setting against [`PARAMS`].
    pub fn validate(&self) -> Result<()> {
        PARAMS.validate(self)
    }

    /// The loop settings, with `default_lr` as the peak rate when none was given: warm-up,
    /// then a cosine decay to a tenth of the peak.
    pub fn loop_options(&self, default_lr: f64) -> LoopOptions {
        let lr = self.lr.unwrap_or(default_lr);
        LoopOptions {
            steps: self.steps,
            schedule: WarmupCosine { peak: lr, warmup: self.warmup, total: self.steps, floor: lr * 0.1 },
            clip: Some(self.clip),
            seed: self.seed,
        }
    }
}

/// What a run records in its checkpoint to resume with the same settings.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct RunRecord {
    /// The model's configuration (as written to its config files).
    pub config: serde_json::Value,
    /// The training options.
    pub options: serde_json::Value,
    /// Every step's loss so far.
    pub losses: Vec<LossPoint>,
    /// Wall time so far.
    pub seconds: f64,
}

/// How a run is paced and reported.
#[derive(Clone, Debug)]
pub struct RunPlan {
    /// Steps in the whole run.
    pub steps: usize,
    /// Items (tokens, pictures) per step, for the throughput.
    pub per_step: usize,
    /// What the items are called.
    pub unit: &'static str,
    /// Checkpoint every this many steps.
    pub checkpoint_every: usize,
    /// Stop after this much wall time.
    pub max_minutes: Option<f64>,
}

impl RunPlan {
    /// The plan of a loop of `looped.steps` steps of `per_step` `unit`, checkpointed and
    /// limited as `settings` say.
    pub fn new(looped: &LoopOptions, per_step: usize, unit: &'static str, settings: &RunSettings) -> Self {
        Self { steps: looped.steps, per_step, unit, checkpoint_every: settings.checkpoint_every, max_minutes: settings.max_minutes }
    }
}

/// Where a run stands, for a progress display.
#[derive(Clone, Debug)]
pub struct RunStatus {
    /// Steps done.
    pub step: usize,
    /// Steps in the whole run.
    pub of: usize,
    /// Mean loss of the last 20 steps.
    pub loss_avg: f64,
    /// Items per second in this session.
    pub rate: f64,
    /// What the items are called.
    pub unit: &'static str,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Minutes in this session.
    pub minutes: f64,
}

/// What a run reports to its caller.
#[derive(Clone, Debug)]
pub enum RunEvent {
    /// The run starts (or resumes) at `step` of `of`.
    Started {
        /// Steps already done (a resumed run's).
        step: usize,
        /// Steps in the whole run.
        of: usize,
        /// Whether a saved run is continued.
        resumed: bool,
    },
    /// A line about the run's data or model, for the log.
    Note(String),
    /// A step finished.
    Step(RunStatus),
    /// A checkpoint, the model and the loss curve were saved.
    Saved(RunStatus),
}

/// A run about to start or resume in a model folder.
pub struct TrainingRun {
    out: PathBuf,
    checkpoint: Option<Checkpoint>,
    /// The resumed run's record (settings to reuse), when resuming.
    pub record: Option<RunRecord>,
}

impl TrainingRun {
    /// Opens `out`: with `resume`, the run saved in `out/checkpoint`; without, a new run
    /// (refused when a checkpoint is already there).
    pub fn open(out: &Path, resume: bool) -> Result<Self> {
        let dir = out.join("checkpoint");
        if !resume {
            if dir.join(Checkpoint::META).exists() {
                return Err(Error::Training(format!("{} holds a run already: pass --resume to continue it, or remove it to start over", dir.display())));
            }
            return Ok(Self { out: out.to_path_buf(), checkpoint: None, record: None });
        }
        let ckpt = Checkpoint::load(&dir).map_err(|e| Error::Training(format!("--resume: no checkpoint in {}: {e}", dir.display())))?;
        let record = serde_json::from_value(ckpt.meta.clone()).map_err(|e| Error::Training(format!("reading the checkpoint's run record: {e}")))?;
        Ok(Self { out: out.to_path_buf(), checkpoint: Some(ckpt), record: Some(record) })
    }

    /// A fresh state over `params` with AdamW's weight decay and the EMA's decay: a
    /// resumed run's own (runs saved before they were recorded: the given ones), else the
    /// given ones.
    pub fn new_state(&self, params: Params, settings: &RunSettings) -> Result<TrainState> {
        settings.validate()?;
        let saved = self.record.as_ref().map(|r| &r.options["optimiser"]);
        let get = |key: &str, given: f64| saved.and_then(|o| o[key].as_f64()).unwrap_or(given);
        TrainState::new(params, get("weight_decay", settings.weight_decay), get("ema", settings.ema))
    }

    /// The options a recipe records in its checkpoint: its objective's under `key`, the
    /// loop's, the model it started from and the optimiser's.
    pub fn record_options(key: &str, objective: &impl serde::Serialize, looped: &LoopOptions, init: Option<&Path>, state: &TrainState) -> Result<serde_json::Value> {
        let objective = serde_json::to_value(objective).map_err(|e| Error::Training(format!("recording the {key} options: {e}")))?;
        let looped = serde_json::to_value(looped).map_err(|e| Error::Training(format!("recording the loop options: {e}")))?;
        Ok(json!({ key: objective, "loop": looped, "init": init, "optimiser": { "weight_decay": state.opt.weight_decay, "ema": state.ema.decay } }))
    }

    /// The trained model a run started from: `init` for a new run, a resumed run's own.
    pub fn init_dir(&self, init: Option<&Path>) -> Option<PathBuf> {
        match &self.record {
            Some(r) => r.options["init"].as_str().map(PathBuf::from),
            None => init.map(Path::to_path_buf),
        }
    }

    /// A resumed run's own option `key` (`None` for a new run).
    pub fn saved_option<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>> {
        let Some(r) = &self.record else { return Ok(None) };
        serde_json::from_value(r.options[key].clone()).map(Some).map_err(|e| Error::Training(format!("reading the checkpoint's {key} options: {e}")))
    }

    /// Runs `train` from `state` (restored when resuming), reporting to `events`;
    /// `save_model` writes the model files from a state at each checkpoint. Returns the
    /// summary also written to `out/train.json`.
    #[allow(clippy::too_many_arguments)]
    pub fn run<E: From<Error>>(
        self,
        state: &mut TrainState,
        config: serde_json::Value,
        options: serde_json::Value,
        plan: &RunPlan,
        events: &mut dyn FnMut(&RunEvent),
        train: impl FnOnce(&mut TrainState, &mut dyn FnMut(&TrainStep, &TrainState) -> bool) -> std::result::Result<(), E>,
        save_model: impl Fn(&TrainState) -> std::result::Result<(), E>,
    ) -> std::result::Result<serde_json::Value, E> {
        let (mut losses, seconds_before) = match (&self.checkpoint, self.record) {
            (Some(c), Some(r)) => {
                state.restore(c)?;
                (r.losses, r.seconds)
            }
            _ => (Vec::new(), 0.0),
        };
        events(&RunEvent::Started { step: state.opt.step, of: plan.steps, resumed: self.checkpoint.is_some() });
        let ckpt_dir = self.out.join("checkpoint");
        let parameters: usize = state.params.values().map(|v| v.elem_count()).sum();
        let start = Instant::now();
        let first_step = state.opt.step;
        let save = |st: &TrainState, losses: &[LossPoint], seconds: f64| -> std::result::Result<(), E> {
            let record = RunRecord { config: config.clone(), options: options.clone(), losses: losses.to_vec(), seconds };
            let meta = serde_json::to_value(&record).map_err(|e| Error::Training(format!("recording the run: {e}")))?;
            st.checkpoint(meta).save(&ckpt_dir)?;
            save_model(st)?;
            Ok(loss_curve::write(&self.out, losses)?)
        };
        let mut failure = None;
        train(state, &mut |r, st| {
            losses.push(LossPoint { step: r.step, loss: r.loss });
            let secs = start.elapsed().as_secs_f64();
            let recent = &losses[losses.len().saturating_sub(20)..];
            let status = RunStatus {
                step: r.step,
                of: plan.steps,
                loss_avg: recent.iter().map(|p| p.loss).sum::<f64>() / recent.len() as f64,
                rate: (r.step - first_step) as f64 * plan.per_step as f64 / secs.max(1e-9),
                unit: plan.unit,
                lr: r.lr,
                minutes: secs / 60.0,
            };
            events(&RunEvent::Step(status.clone()));
            let out_of_time = plan.max_minutes.is_some_and(|m| secs > m * 60.0);
            if r.step % plan.checkpoint_every.max(1) == 0 || r.step == plan.steps || out_of_time {
                if let Err(e) = save(st, &losses, seconds_before + secs) {
                    failure = Some(e);
                    return false;
                }
                events(&RunEvent::Saved(status));
            }
            !out_of_time
        })?;
        if let Some(e) = failure {
            return Err(e);
        }
        let done = state.opt.step;
        let summary = json!({
            "steps": done,
            "of_steps": plan.steps,
            format!("{}_seen", plan.unit): done * plan.per_step,
            "parameters": parameters,
            "seconds": seconds_before + start.elapsed().as_secs_f64(),
            "final_loss_avg20": losses.iter().rev().take(20).map(|p| p.loss).sum::<f64>() / losses.len().clamp(1, 20) as f64,
            "options": options,
            "threads": candle_core::utils::get_num_threads(),
        });
        write_json(&self.out.join("train.json"), &summary)?;
        Ok(summary)
    }
}

/// Writes `value` as pretty JSON to `path`, replacing it atomically.
pub fn write_json(path: &Path, value: &serde_json::Value) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|e| Error::Json { path: path.display().to_string(), source: e })?;
    crate::output::write_file(path, true, |tmp| std::fs::write(tmp, &text).map_err(|e| Error::Io { path: tmp.display().to_string(), source: e }))
}
