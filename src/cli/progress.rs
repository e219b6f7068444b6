//! indicatif progress bars fed by the core's progress events (drawn on stderr, so `--json`
//! output on stdout stays one clean object).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use stipple_core::progress::{Progress, StepEvent};

/// A progress bar that follows a job's steps.
pub struct BarProgress {
    bar: ProgressBar,
}

impl BarProgress {
    /// A bar labelled `label`, drawn on stderr (hidden when `quiet`).
    pub fn new(label: &str, quiet: bool) -> Self {
        let target = if quiet { ProgressDrawTarget::hidden() } else { ProgressDrawTarget::stderr() };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} steps {elapsed_precise} ({per_sec}, eta {eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_message(label.to_string());
        Self { bar }
    }

    /// Steps seen so far.
    #[cfg(test)]
    pub fn position(&self) -> u64 {
        self.bar.position()
    }

    /// Ends the bar, leaving its last state on screen.
    pub fn finish(&self) {
        self.bar.finish();
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
