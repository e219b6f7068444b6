//! indicatif progress bars fed by the core's progress events (drawn on stderr, so `--json`
//! output on stdout stays one clean object).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stipple_core::progress::{Progress, StepEvent};

/// A progress bar that follows a job's steps.
pub struct BarProgress {
    bar: ProgressBar,
    /// Drawn under a batch's bar: cleared when the job ends, the batch's bar says how it went.
    nested: bool,
}

/// The step bar's look: label, bar, steps, time, speed and ETA.
fn step_style() -> ProgressStyle {
    ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps {elapsed_precise} ({per_sec}, eta {eta})")
        .expect("valid template")
        .progress_chars("=> ")
}

impl BarProgress {
    /// A bar labelled `label`, drawn on stderr (hidden when `quiet`).
    pub fn new(label: &str, quiet: bool) -> Self {
        let target = if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(step_style());
        bar.set_message(label.to_string());
        Self { bar, nested: false }
    }

    /// A bar drawn under the others of `bars` (a batch's), removed when the job ends.
    pub fn under(bars: &indicatif::MultiProgress, label: &str) -> Self {
        let bar = bars.add(ProgressBar::new(0));
        bar.set_style(step_style());
        bar.set_message(format!("  {label}"));
        Self { bar, nested: true }
    }

    /// Steps seen so far.
    #[cfg(test)]
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Ends the bar, leaving its last state on screen (a nested bar is removed).
    pub fn finish(&self) {
        if self.nested {
            self.bar.finish_and_clear();
        } else {
            self.bar.finish();
        }
    }
}

impl<P> Progress<P> for BarProgress {
    fn on_step(&mut self, event: &StepEvent<'_, P>) {
        self.bar.set_length(event.total as u64);
        self.bar.set_position(event.step as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn follows_step_events() {
        let mut bar = BarProgress::new("test", true);
        let event = StepEvent::<()> { step: 3, total: 8, elapsed: Duration::from_millis(5), preview: None };
        Progress::<()>::on_step(&mut bar, &event);
        assert_eq!(bar.position(), 3);
    }
}
