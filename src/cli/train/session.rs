//! What every `stipple train` model run shares: refusing to overwrite a run, resuming one
//! from `OUT/checkpoint` with its own settings, the progress bar (loss, throughput,
//! learning rate), periodic checkpoints with the model and loss curve saved beside them,
//! a wall-time limit, and `train.json`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use stipple_core::training::{Checkpoint, StepReport, TrainState};

use super::super::Global;
use super::super::loss_curve::{self, LossPoint};

/// What a run records in its checkpoint to resume with the same settings.
#[derive(serde::Serialize, serde::Deserialize)]
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

/// Options of the loop itself.
pub struct Schedule {
    /// Steps in the whole run.
    pub steps: usize,
    /// Items (tokens, pictures) per step, for the throughput.
    pub per_step: usize,
    /// What the items are called.
    pub unit: &'static str,
    /// Checkpoint every this many steps.
    pub every: usize,
    /// Stop after this much wall time.
    pub max_minutes: Option<f64>,
}

/// A run about to start or resume in `out`.
pub struct Session {
    out: PathBuf,
    checkpoint: Option<Checkpoint>,
    /// The resumed run's record (settings to reuse), when resuming.
    pub record: Option<RunRecord>,
}

impl Session {
    /// Opens `out`: with `resume`, the run saved in `out/checkpoint`; without, a new run
    /// (refused when a checkpoint is already there).
    pub fn open(out: &Path, resume: bool) -> Result<Self> {
        let dir = out.join("checkpoint");
        if !resume {
            if dir.join(Checkpoint::META).exists() {
                bail!("{} holds a run already: pass --resume to continue it, or remove it to start over", dir.display());
            }
            return Ok(Self { out: out.to_path_buf(), checkpoint: None, record: None });
        }
        let ckpt = Checkpoint::load(&dir).with_context(|| format!("--resume: no checkpoint in {}", dir.display()))?;
        let record = serde_json::from_value(ckpt.meta.clone()).context("reading the checkpoint's run record")?;
        Ok(Self { out: out.to_path_buf(), checkpoint: Some(ckpt), record: Some(record) })
    }

    /// Runs `train` from the state (restored when resuming); `save_model` writes the
    /// model files from a state at each checkpoint. Returns the summary also written to
    /// `out/train.json`.
    pub fn run(
        self,
        g: &Global,
        state: &mut TrainState,
        config: serde_json::Value,
        options: serde_json::Value,
        sched: &Schedule,
        train: impl FnOnce(&mut TrainState, &mut dyn FnMut(&StepReport, &TrainState) -> bool) -> Result<()>,
        save_model: impl Fn(&TrainState) -> Result<()>,
    ) -> Result<serde_json::Value> {
        let (mut losses, seconds_before) = match (&self.checkpoint, self.record) {
            (Some(c), Some(r)) => {
                state.restore(c)?;
                eprintln!("resuming at step {} of {}", c.step, sched.steps);
                (r.losses, r.seconds)
            }
            _ => (Vec::new(), 0.0),
        };
        let ckpt_dir = self.out.join("checkpoint");
        let parameters: usize = state.params.values().map(|v| v.elem_count()).sum();
        let bar = ProgressBar::with_draw_target(Some(sched.steps as u64), if g.json { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() });
        bar.set_style(ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps {elapsed_precise} (eta {eta})")?.progress_chars("=> "));
        bar.set_position(state.opt.step as u64);
        // the bar draws only on a terminal; logs of unattended runs get a line per checkpoint
        let quiet_bar = !g.json && !std::io::IsTerminal::is_terminal(&std::io::stderr());
        let start = Instant::now();
        let first_step = state.opt.step;
        let save = |st: &TrainState, losses: &[LossPoint], seconds: f64| -> Result<()> {
            let record = RunRecord { config: config.clone(), options: options.clone(), losses: losses.to_vec(), seconds };
            st.checkpoint(serde_json::to_value(&record)?).save(&ckpt_dir)?;
            save_model(st)?;
            loss_curve::write(&self.out, losses)
        };
        let mut failure = None;
        train(state, &mut |r, st| {
            losses.push(LossPoint { step: r.step, loss: r.loss });
            let secs = start.elapsed().as_secs_f64();
            let rate = (r.step - first_step) as f64 * sched.per_step as f64 / secs.max(1e-9);
            let recent = &losses[losses.len().saturating_sub(20)..];
            let avg = recent.iter().map(|p| p.loss).sum::<f64>() / recent.len() as f64;
            bar.set_message(format!("loss {avg:.4} | {rate:.0} {}/s | lr {:.1e}", sched.unit, r.lr));
            bar.set_position(r.step as u64);
            let out_of_time = sched.max_minutes.is_some_and(|m| secs > m * 60.0);
            if r.step % sched.every.max(1) == 0 || r.step == sched.steps || out_of_time {
                if quiet_bar {
                    eprintln!("step {}/{}: loss {avg:.4}, {rate:.0} {}/s, lr {:.2e}, {:.1} min", r.step, sched.steps, sched.unit, r.lr, secs / 60.0);
                }
                if let Err(e) = save(st, &losses, seconds_before + secs) {
                    failure = Some(e);
                    return false;
                }
            }
            !out_of_time
        })?;
        bar.finish();
        if let Some(e) = failure {
            return Err(e.context("saving a checkpoint"));
        }
        let done = state.opt.step;
        let summary = json!({
            "steps": done,
            "of_steps": sched.steps,
            format!("{}_seen", sched.unit): done * sched.per_step,
            "parameters": parameters,
            "seconds": seconds_before + start.elapsed().as_secs_f64(),
            "final_loss_avg20": losses.iter().rev().take(20).map(|p| p.loss).sum::<f64>() / losses.len().clamp(1, 20) as f64,
            "options": options,
            "threads": candle_core::utils::get_num_threads(),
        });
        let text = serde_json::to_string_pretty(&summary)?;
        stipple_core::output::write_file(&self.out.join("train.json"), true, |tmp| Ok::<_, anyhow::Error>(std::fs::write(tmp, &text)?))?;
        Ok(summary)
    }
}
