//! Work off the UI thread: a job runs on its own thread, reports its steps (and a preview)
//! through shared state the UI reads each frame, and stops early when cancelled. The UI
//! never blocks, and tests can step frames while a job runs.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use stipple_core::progress::CancelToken;

/// Wakes the UI when a job has news (the egui context in the app; nothing in tests that poll).
pub type Waker = Arc<dyn Fn() + Send + Sync>;

/// What a running job last said.
#[derive(Clone, Debug)]
pub struct Status<P> {
    /// Steps finished.
    pub step: usize,
    /// Steps in all (0: not known yet, e.g. while loading).
    pub total: usize,
    /// What it is doing, for the status line.
    pub stage: String,
    /// The newest preview (a partly decoded text, a picture).
    pub preview: Option<P>,
}

/// The job's handle on its shared status.
pub struct Reporter<P> {
    status: Arc<Mutex<Status<P>>>,
    wake: Waker,
}

impl<P> Reporter<P> {
    /// Records progress and wakes the UI.
    pub fn step(&self, step: usize, total: usize, preview: Option<P>) {
        if let Ok(mut s) = self.status.lock() {
            s.step = step;
            s.total = total;
            if preview.is_some() {
                s.preview = preview;
            }
        }
        (self.wake)();
    }

    /// Names the current stage.
    pub fn stage(&self, stage: impl Into<String>) {
        if let Ok(mut s) = self.status.lock() {
            s.stage = stage.into();
        }
        (self.wake)();
    }
}

/// A background job producing a `T`, with previews of type `P`.
pub struct Job<T, P = ()> {
    status: Arc<Mutex<Status<P>>>,
    cancel: CancelToken,
    handle: Option<JoinHandle<anyhow::Result<T>>>,
    started: Instant,
}

/// How a job ended.
pub enum Outcome<T> {
    /// Still running.
    Running,
    /// Done, with its result (an error says why it failed; a cancelled job fails with
    /// "cancelled").
    Done(anyhow::Result<T>, Duration),
}

impl<T: Send + 'static, P: Send + 'static> Job<T, P> {
    /// Starts `work` on a new thread.
    pub fn spawn(wake: Waker, work: impl FnOnce(&Reporter<P>, &CancelToken) -> anyhow::Result<T> + Send + 'static) -> Self {
        let status = Arc::new(Mutex::new(Status { step: 0, total: 0, stage: String::new(), preview: None }));
        let cancel = CancelToken::new();
        let reporter = Reporter { status: status.clone(), wake: wake.clone() };
        let token = cancel.clone();
        let handle = std::thread::spawn(move || {
            let result = work(&reporter, &token);
            (reporter.wake)();
            result
        });
        Self { status, cancel, handle: Some(handle), started: Instant::now() }
    }

    /// Asks the job to stop at its next step.
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// Whether cancel was asked.
    pub fn is_cancelling(&self) -> bool {
        self.cancel.is_cancelled()
    }

    /// Time since the start.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// A copy of the last status (previews included).
    pub fn status(&self) -> Status<P>
    where
        P: Clone,
    {
        match self.status.lock() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Steps done and in all, without copying the preview.
    pub fn steps(&self) -> (usize, usize) {
        match self.status.lock() {
            Ok(s) => (s.step, s.total),
            Err(poisoned) => {
                let s = poisoned.into_inner();
                (s.step, s.total)
            }
        }
    }

    /// Takes the result once the thread has finished (a panic in the job becomes an error).
    pub fn poll(&mut self) -> Outcome<T> {
        match &self.handle {
            Some(h) if h.is_finished() => {
                let result = match self.handle.take().map(JoinHandle::join) {
                    Some(Ok(r)) => r,
                    _ => Err(anyhow::anyhow!("the job stopped unexpectedly (a bug: please report it)")),
                };
                Outcome::Done(result, self.started.elapsed())
            }
            Some(_) => Outcome::Running,
            None => Outcome::Done(Err(anyhow::anyhow!("the job's result was already taken")), self.started.elapsed()),
        }
    }
}

impl<T, P> Drop for Job<T, P> {
    /// A job left behind (the window closed) is cancelled, not waited for.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait<T: Send + 'static, P: Send + 'static>(job: &mut Job<T, P>) -> anyhow::Result<T> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Outcome::Done(r, _) = job.poll() {
                return r;
            }
            assert!(Instant::now() < deadline, "job did not finish");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    #[test]
    fn reports_steps_and_returns_the_result() {
        let woken = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let w = woken.clone();
        let mut job: Job<u32, String> = Job::spawn(Arc::new(move || { w.fetch_add(1, std::sync::atomic::Ordering::SeqCst); }), |r, _| {
            r.step(1, 2, Some("half".into()));
            r.step(2, 2, None);
            Ok(7)
        });
        assert_eq!(wait(&mut job).unwrap(), 7);
        let s = job.status();
        assert_eq!((s.step, s.total, s.preview.as_deref()), (2, 2, Some("half")));
        assert!(woken.load(std::sync::atomic::Ordering::SeqCst) >= 3);
    }

    #[test]
    fn cancel_stops_a_job_at_its_next_check() {
        let mut job: Job<(), ()> = Job::spawn(Arc::new(|| {}), |_, cancel| loop {
            cancel.check()?;
            std::thread::sleep(Duration::from_millis(1));
        });
        job.cancel();
        assert!(wait(&mut job).unwrap_err().to_string().contains("cancelled"));
    }

    #[test]
    fn a_panicking_job_is_an_error_not_a_crash() {
        let mut job: Job<(), ()> = Job::spawn(Arc::new(|| {}), |_, _| panic!("boom"));
        assert!(wait(&mut job).unwrap_err().to_string().contains("stopped unexpectedly"));
    }
}
