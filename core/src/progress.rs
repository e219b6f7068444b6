//! Progress events and cooperative cancellation, shared by every pipeline, the CLI and the studio.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// A cheap, clonable flag that asks a running job to stop at its next step.
#[derive(Clone, Debug, Default)]
pub struct CancelToken(Arc<AtomicBool>);

impl CancelToken {
    /// A fresh token that is not cancelled.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks every holder of this token to stop.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether cancellation was asked for.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    /// `Err(Error::Cancelled)` once cancelled: call it between steps.
    pub fn check(&self) -> Result<()> {
        if self.is_cancelled() { Err(Error::Cancelled) } else { Ok(()) }
    }
}

/// One step of a running job, as reported to a [`Progress`] sink.
#[derive(Debug)]
pub struct StepEvent<'a, P> {
    /// 1-based index of the step just finished.
    pub step: usize,
    /// Total number of steps.
    pub total: usize,
    /// Time since the job started.
    pub elapsed: Duration,
    /// A modality-specific preview of the current state (latents, a token canvas...).
    pub preview: Option<&'a P>,
}

/// Receives step events; implemented by the CLI's progress bars, the studio, and closures.
pub trait Progress<P> {
    /// Called after each step.
    fn on_step(&mut self, event: &StepEvent<'_, P>);
}

impl<P, F: FnMut(&StepEvent<'_, P>)> Progress<P> for F {
    fn on_step(&mut self, event: &StepEvent<'_, P>) {
        self(event)
    }
}

/// A sink that ignores every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoProgress;

impl<P> Progress<P> for NoProgress {
    fn on_step(&mut self, _: &StepEvent<'_, P>) {}
}

/// Tracks elapsed time and forwards numbered events to a sink.
pub struct StepReporter<'s, P> {
    sink: &'s mut dyn Progress<P>,
    cancel: CancelToken,
    start: Instant,
    total: usize,
}

impl<'s, P> StepReporter<'s, P> {
    /// Starts the clock for a job of `total` steps.
    pub fn new(sink: &'s mut dyn Progress<P>, cancel: CancelToken, total: usize) -> Self {
        Self { sink, cancel, start: Instant::now(), total }
    }

    /// Reports step `step` (1-based) and returns `Err(Cancelled)` if the job should stop.
    pub fn step(&mut self, step: usize, preview: Option<&P>) -> Result<()> {
        let event = StepEvent { step, total: self.total, elapsed: self.start.elapsed(), preview };
        self.sink.on_step(&event);
        self.cancel.check()
    }

    /// Checks the cancellation token without reporting a step.
    pub fn check(&self) -> Result<()> {
        self.cancel.check()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reporter_counts_steps_and_stops_when_cancelled() {
        let cancel = CancelToken::new();
        let mut seen = Vec::new();
        let mut sink = |e: &StepEvent<'_, u32>| seen.push((e.step, e.total, e.preview.copied()));
        let mut reporter = StepReporter::new(&mut sink, cancel.clone(), 3);
        reporter.step(1, Some(&7)).unwrap();
        cancel.cancel();
        assert!(matches!(reporter.step(2, None), Err(Error::Cancelled)));
        drop(reporter);
        assert_eq!(seen, vec![(1, 3, Some(7)), (2, 3, None)]);
    }
}
