//! One tab's generation runs: the job in flight, the last result or error, and how long it
//! took. Every tab drives its runs through this, so starting, cancelling and collecting
//! results behave the same everywhere.

use std::time::Duration;

use crate::job::{Job, Outcome, Status};
use crate::widgets::{self, RunAction};

/// A tab's runs, producing `T` with previews `P`.
pub struct Runs<T, P = ()> {
    job: Option<Job<T, P>>,
    /// The last result.
    pub result: Option<T>,
    /// Why the last run failed ("cancelled" when it was), or why it could not start.
    pub error: Option<String>,
    /// Wall time of the last run.
    pub last_time: Option<Duration>,
    /// Results so far (tells the UI when to redraw a picture).
    pub finished: usize,
}

impl<T: Send + 'static, P: Clone + Send + 'static> Default for Runs<T, P> {
    fn default() -> Self {
        Self { job: None, result: None, error: None, last_time: None, finished: 0 }
    }
}

impl<T: Send + 'static, P: Clone + Send + 'static> Runs<T, P> {
    /// Tracks a started job.
    pub fn start(&mut self, job: Job<T, P>) {
        self.error = None;
        self.job = Some(job);
    }

    /// Records why a run could not start.
    pub fn refuse(&mut self, why: impl std::fmt::Display) {
        self.error = Some(why.to_string());
    }

    /// Collects a finished job's result; called once per frame.
    pub fn poll(&mut self) {
        let Some(job) = &mut self.job else { return };
        if let Outcome::Done(result, took) = job.poll() {
            self.job = None;
            self.last_time = Some(took);
            match result {
                Ok(r) => {
                    self.result = Some(r);
                    self.finished += 1;
                    self.error = None;
                }
                Err(e) => self.error = Some(format!("{e:#}")),
            }
        }
    }

    /// Whether a run is in flight.
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// Asks the run in flight to stop at its next step.
    pub fn cancel(&self) {
        if let Some(j) = &self.job {
            j.cancel();
        }
    }

    /// What the run in flight last reported.
    pub fn status(&self) -> Option<Status<P>> {
        self.job.as_ref().map(Job::status)
    }

    /// Generate / Cancel and the progress bar (cancelling is handled here).
    pub fn bar(&self, ui: &mut egui::Ui, ready: bool) -> bool {
        let progress = self.status().map(|s| (s.step, s.total));
        match widgets::run_bar(ui, self.is_running(), ready, progress) {
            RunAction::Start => true,
            RunAction::Cancel => {
                self.cancel();
                false
            }
            RunAction::None => false,
        }
    }

    /// The error line, when there is one.
    pub fn error_ui(&self, ui: &mut egui::Ui) {
        if let Some(e) = &self.error {
            widgets::error(ui, e);
        }
    }
}
