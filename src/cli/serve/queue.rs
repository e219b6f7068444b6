//! A model's bounded queue: requests wait here for the one thread that owns the model.
//! Full means HTTP 429 with a `Retry-After` estimated from how long recent jobs took.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::error::ApiError;

/// The submitting side, shared by the request handlers.
pub struct Queue<J> {
    tx: Mutex<Sender<J>>,
    shared: Arc<Shared>,
}

/// The worker's side: jobs in order of arrival.
pub struct Intake<J> {
    rx: Receiver<J>,
    shared: Arc<Shared>,
}

struct Shared {
    kind: &'static str,
    capacity: usize,
    /// Jobs submitted and not yet started.
    waiting: AtomicUsize,
    /// Jobs running now (a batch counts each of its jobs).
    running: AtomicUsize,
    /// Mean seconds of recent jobs (exponential average), for `Retry-After`.
    mean_seconds: Mutex<f64>,
}

/// A queue of `capacity` waiting jobs for the `kind` model, and its worker's end.
pub fn bounded<J>(kind: &'static str, capacity: usize) -> (Queue<J>, Intake<J>) {
    let (tx, rx) = channel();
    let shared = Arc::new(Shared { kind, capacity, waiting: AtomicUsize::new(0), running: AtomicUsize::new(0), mean_seconds: Mutex::new(1.0) });
    (Queue { tx: Mutex::new(tx), shared: shared.clone() }, Intake { rx, shared })
}

impl<J> Queue<J> {
    /// Queues `job`, or refuses it when `capacity` jobs already wait.
    pub fn submit(&self, job: J) -> Result<(), ApiError> {
        let s = &self.shared;
        if s.waiting.fetch_add(1, Ordering::SeqCst) >= s.capacity {
            s.waiting.fetch_sub(1, Ordering::SeqCst);
            let ahead = s.capacity + s.running.load(Ordering::SeqCst);
            let mean = *s.mean_seconds.lock().unwrap_or_else(|p| p.into_inner());
            return Err(ApiError::queue_full(s.kind, (ahead as f64 * mean).ceil().clamp(1.0, 600.0) as u64));
        }
        let sent = self.tx.lock().unwrap_or_else(|p| p.into_inner()).send(job);
        sent.map_err(|_| {
            s.waiting.fetch_sub(1, Ordering::SeqCst);
            ApiError::unavailable(format!("the {} model's worker has stopped", s.kind))
        })
    }

    /// Jobs waiting to start.
    pub fn waiting(&self) -> usize {
        self.shared.waiting.load(Ordering::SeqCst)
    }

    /// Jobs running now.
    pub fn running(&self) -> usize {
        self.shared.running.load(Ordering::SeqCst)
    }
}

impl<J> Intake<J> {
    /// The next job, waiting for one; `None` once every submitting side is gone.
    pub fn next(&self) -> Option<J> {
        self.rx.recv().ok()
    }

    /// The next job if one waits already.
    pub fn try_next(&self) -> Option<J> {
        match self.rx.try_recv() {
            Ok(j) => Some(j),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => None,
        }
    }

    /// Marks `n` jobs as started (they no longer count as waiting).
    pub fn started(&self, n: usize) {
        self.shared.waiting.fetch_sub(n, Ordering::SeqCst);
        self.shared.running.fetch_add(n, Ordering::SeqCst);
    }

    /// Marks `n` started jobs as done, `took` for all of them together.
    pub fn finished(&self, n: usize, took: Duration) {
        let s = &self.shared;
        s.running.fetch_sub(n, Ordering::SeqCst);
        let mut mean = s.mean_seconds.lock().unwrap_or_else(|p| p.into_inner());
        *mean = 0.8 * *mean + 0.2 * took.as_secs_f64() / n.max(1) as f64;
    }
}

/// Loads a model on a thread of its own (named `name`), which then owns it and runs
/// `serve` with it; returns what `describe` says of it once loaded, or the load's error.
pub fn spawn_owner<M: 'static, I: Send + 'static>(
    name: &str,
    load: impl FnOnce() -> anyhow::Result<M> + Send + 'static,
    describe: impl FnOnce(&M) -> I + Send + 'static,
    serve: impl FnOnce(M) + Send + 'static,
) -> anyhow::Result<I> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new().name(format!("stipple-{name}")).spawn(move || match load() {
        Ok(model) => {
            let _ = ready_tx.send(Ok(describe(&model)));
            serve(model);
        }
        Err(e) => {
            let _ = ready_tx.send(Err(e));
        }
    })?;
    ready_rx.recv().map_err(|_| anyhow::anyhow!("the {name} model's thread ended while loading"))?
}

impl<J> Intake<J> {
    /// Runs `run` on every job in turn until the queue closes. A job that panics (a bug)
    /// fails alone: its client gets a 500, and the model goes on serving.
    pub fn serve_each(self, mut run: impl FnMut(J)) {
        while let Some(job) = self.next() {
            self.started(1);
            let t = std::time::Instant::now();
            survive(self.shared.kind, || run(job));
            self.finished(1, t.elapsed());
        }
    }
}

/// Runs `f`; a panic in it is reported on stderr instead of ending the model's thread
/// (the job's reply is dropped with it, which its handler answers with a 500).
pub fn survive(kind: &str, f: impl FnOnce()) {
    if std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).is_err() {
        eprintln!("a {kind} job failed with a panic (a bug: please report it); the {kind} model goes on serving");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_capacity_and_counts_waiting_and_running() {
        let (q, intake) = bounded::<u32>("text", 2);
        q.submit(1).unwrap();
        q.submit(2).unwrap();
        let e = q.submit(3).unwrap_err();
        assert_eq!(e.status.as_u16(), 429);
        assert!(e.retry_after.unwrap() >= 1);
        assert_eq!(intake.next(), Some(1));
        intake.started(1);
        assert_eq!((q.waiting(), q.running()), (1, 1));
        q.submit(3).unwrap();
        assert_eq!(intake.try_next(), Some(2));
        assert_eq!(intake.try_next(), Some(3));
        assert_eq!(intake.try_next(), None);
        intake.started(2);
        intake.finished(3, Duration::from_secs(3));
        assert_eq!((q.waiting(), q.running()), (0, 0));
    }
}
