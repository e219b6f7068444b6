//! The studio's one job queue, shared by every tab: one job runs at a time (they share the
//! machine's cores or GPU), Generate while something runs adds to the queue, and the
//! user can reorder or remove waiting jobs and cancel the running one without touching
//! the others.

use std::collections::VecDeque;
use std::time::Duration;

use stipple_core::progress::CancelToken;

use crate::job::{Job, Outcome, Reporter, Status, Waker};

/// A job's work: runs on a worker thread, reports steps and previews, stops when cancelled.
pub type Work<O, P> = Box<dyn FnOnce(&Reporter<P>, &CancelToken) -> anyhow::Result<O> + Send>;

/// A job waiting its turn.
pub struct Waiting<O, P, M> {
    /// Its number (shown to the user, stable while it waits and runs).
    pub id: u64,
    /// What it is (tab, parameters).
    pub meta: M,
    work: Work<O, P>,
}

/// The job that runs.
pub struct Running<O, P, M> {
    /// Its number.
    pub id: u64,
    /// What it is.
    pub meta: M,
    job: Job<O, P>,
}

impl<O: Send + 'static, P: Clone + Send + 'static, M> Running<O, P, M> {
    /// What it last reported.
    pub fn status(&self) -> Status<P> {
        self.job.status()
    }

    /// Steps done and in all (no copy of the preview).
    pub fn steps(&self) -> (usize, usize) {
        self.job.steps()
    }

    /// Time since it started.
    pub fn elapsed(&self) -> Duration {
        self.job.elapsed()
    }

    /// Whether cancel was asked.
    pub fn is_cancelling(&self) -> bool {
        self.job.is_cancelling()
    }
}

/// A job that ended: done, failed or cancelled ("cancelled" error).
pub struct Finished<O, M> {
    /// Its number.
    pub id: u64,
    /// What it was.
    pub meta: M,
    /// The result or why there is none.
    pub result: anyhow::Result<O>,
    /// Wall time from its start.
    pub took: Duration,
}

/// Jobs producing `O` with previews `P`, described by `M`.
pub struct Queue<O, P, M> {
    waiting: VecDeque<Waiting<O, P, M>>,
    running: Option<Running<O, P, M>>,
    next_id: u64,
    wake: Waker,
}

impl<O: Send + 'static, P: Clone + Send + 'static, M> Queue<O, P, M> {
    /// An empty queue; `wake` repaints the UI when a job has news.
    pub fn new(wake: Waker) -> Self {
        Self { waiting: VecDeque::new(), running: None, next_id: 1, wake }
    }

    /// Adds a job (it starts at once when nothing runs) and returns its number.
    pub fn submit(&mut self, meta: M, work: impl FnOnce(&Reporter<P>, &CancelToken) -> anyhow::Result<O> + Send + 'static) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.waiting.push_back(Waiting { id, meta, work: Box::new(work) });
        self.start_next();
        id
    }

    fn start_next(&mut self) {
        if self.running.is_some() {
            return;
        }
        if let Some(w) = self.waiting.pop_front() {
            let job = Job::spawn(self.wake.clone(), w.work);
            self.running = Some(Running { id: w.id, meta: w.meta, job });
        }
    }

    /// Collects the running job when it has ended and starts the next; call once per frame.
    pub fn poll(&mut self) -> Option<Finished<O, M>> {
        let running = self.running.as_mut()?;
        let Outcome::Done(result, took) = running.job.poll() else { return None };
        let Running { id, meta, .. } = self.running.take()?;
        self.start_next();
        Some(Finished { id, meta, result, took })
    }

    /// The running job.
    pub fn running(&self) -> Option<&Running<O, P, M>> {
        self.running.as_ref()
    }

    /// The jobs waiting, in the order they will run.
    pub fn waiting(&self) -> impl Iterator<Item = &Waiting<O, P, M>> {
        self.waiting.iter()
    }

    /// Whether nothing runs or waits.
    pub fn is_idle(&self) -> bool {
        self.running.is_none() && self.waiting.is_empty()
    }

    /// Cancels job `id`: a waiting job is removed, the running one is asked to stop at its
    /// next step (it then ends as cancelled). False when there is no such job.
    pub fn cancel(&mut self, id: u64) -> bool {
        if let Some(r) = &self.running
            && r.id == id
        {
            r.job.cancel();
            return true;
        }
        let before = self.waiting.len();
        self.waiting.retain(|w| w.id != id);
        self.waiting.len() != before
    }

    /// Moves a waiting job one place earlier (`up`) or later.
    pub fn shift(&mut self, id: u64, up: bool) {
        let Some(i) = self.waiting.iter().position(|w| w.id == id) else { return };
        let j = if up { i.checked_sub(1) } else { (i + 1 < self.waiting.len()).then_some(i + 1) };
        if let Some(j) = j {
            self.waiting.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Instant;

    use super::*;

    fn finish(q: &mut Queue<u32, (), &'static str>) -> Finished<u32, &'static str> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(f) = q.poll() {
                return f;
            }
            assert!(Instant::now() < deadline, "no job finished");
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    #[test]
    fn jobs_run_one_at_a_time_in_order_and_can_be_reordered_and_cancelled() {
        let mut q: Queue<u32, (), &'static str> = Queue::new(Arc::new(|| {}));
        let release = Arc::new(AtomicBool::new(false));
        let r = release.clone();
        // the first job runs until released (or cancelled)
        let first = q.submit("first", move |_, cancel| {
            while !r.load(Ordering::SeqCst) {
                cancel.check()?;
                std::thread::sleep(Duration::from_millis(1));
            }
            Ok(1)
        });
        let second = q.submit("second", |_, _| Ok(2));
        let third = q.submit("third", |_, _| Ok(3));
        let fourth = q.submit("fourth", |_, _| Ok(4));
        assert_eq!(q.running().map(|r| r.id), Some(first));
        assert_eq!(q.waiting().map(|w| w.id).collect::<Vec<_>>(), vec![second, third, fourth]);
        q.shift(fourth, true);
        q.shift(second, false);
        assert_eq!(q.waiting().map(|w| w.meta).collect::<Vec<_>>(), vec!["fourth", "second", "third"]);
        assert!(q.cancel(third));
        assert!(!q.cancel(99));
        release.store(true, Ordering::SeqCst);
        let order: Vec<(&str, u32)> = (0..3).map(|_| finish(&mut q)).map(|f| (f.meta, f.result.unwrap())).collect();
        assert_eq!(order, vec![("first", 1), ("fourth", 4), ("second", 2)]);
        assert!(q.is_idle());
    }

    #[test]
    fn cancelling_the_running_job_leaves_the_waiting_ones() {
        let mut q: Queue<u32, (), &'static str> = Queue::new(Arc::new(|| {}));
        let running = q.submit("long", |_, cancel| loop {
            cancel.check()?;
            std::thread::sleep(Duration::from_millis(1));
        });
        q.submit("next", |_, _| Ok(5));
        assert!(q.cancel(running));
        let f = finish(&mut q);
        assert_eq!(f.meta, "long");
        assert!(f.result.unwrap_err().to_string().contains("cancelled"));
        assert_eq!(finish(&mut q).result.unwrap(), 5);
    }
}
