//! Counters for `GET /metrics`, in Prometheus' text format (a handful of counters and
//! gauges: the exposition format is a few lines, so no metrics crate is pulled in).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// What the server has done since it started.
#[derive(Default)]
pub struct Metrics {
    /// Requests answered, by (route, status).
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    /// Seconds spent answering, by route (sum, for the mean with the count).
    seconds: Mutex<BTreeMap<String, f64>>,
    /// Tokens generated.
    pub tokens: AtomicU64,
    /// Microseconds spent generating text (so tokens/s = tokens / seconds).
    pub text_micros: AtomicU64,
    /// Denoising steps run by the image and music models.
    pub steps: AtomicU64,
    /// Microseconds spent in those steps.
    pub step_micros: AtomicU64,
    /// Text model runs, and the requests they carried (batching: requests > runs).
    pub text_runs: AtomicU64,
    /// See `text_runs`.
    pub text_rows: AtomicU64,
    /// Generations cancelled because their client left.
    pub cancelled: AtomicU64,
}

/// A queue's state for the gauges.
pub struct QueueGauge {
    /// The model kind (text, image, music).
    pub kind: &'static str,
    /// Jobs waiting.
    pub waiting: usize,
    /// Jobs running.
    pub running: usize,
}

impl Metrics {
    /// Counts one answered request.
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        *self.requests.lock().unwrap_or_else(|p| p.into_inner()).entry((route.to_string(), status)).or_default() += 1;
        *self.seconds.lock().unwrap_or_else(|p| p.into_inner()).entry(route.to_string()).or_default() += seconds;
    }

    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    /// The exposition text.
    pub fn render(&self, queues: &[QueueGauge]) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let requests = self.requests.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let _ = writeln!(out, "# HELP stipple_requests_total HTTP requests answered, by route and status code.\n# TYPE stipple_requests_total counter");
        for ((route, code), n) in &requests {
            let _ = writeln!(out, "stipple_requests_total{{route=\"{route}\",code=\"{code}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP stipple_errors_total Requests answered with a 4xx or 5xx status, by status code.\n# TYPE stipple_errors_total counter");
        let mut errors: BTreeMap<u16, u64> = BTreeMap::new();
        for ((_, code), n) in &requests {
            if *code >= 400 {
                *errors.entry(*code).or_default() += n;
            }
        }
        for (code, n) in errors {
            let _ = writeln!(out, "stipple_errors_total{{code=\"{code}\"}} {n}");
        }
        let _ = writeln!(out, "# HELP stipple_request_seconds_total Seconds spent answering, by route.\n# TYPE stipple_request_seconds_total counter");
        for (route, s) in self.seconds.lock().unwrap_or_else(|p| p.into_inner()).iter() {
            let _ = writeln!(out, "stipple_request_seconds_total{{route=\"{route}\"}} {s:.6}");
        }
        let _ = writeln!(out, "# HELP stipple_queue_waiting Jobs waiting in a model's queue.\n# TYPE stipple_queue_waiting gauge");
        for q in queues {
            let _ = writeln!(out, "stipple_queue_waiting{{model=\"{}\"}} {}", q.kind, q.waiting);
        }
        let _ = writeln!(out, "# HELP stipple_queue_running Jobs a model is running now.\n# TYPE stipple_queue_running gauge");
        for q in queues {
            let _ = writeln!(out, "stipple_queue_running{{model=\"{}\"}} {}", q.kind, q.running);
        }
        let (tokens, text_s) = (get(&self.tokens), get(&self.text_micros) as f64 / 1e6);
        let (steps, step_s) = (get(&self.steps), get(&self.step_micros) as f64 / 1e6);
        let rate = |n: u64, s: f64| if s > 0.0 { n as f64 / s } else { 0.0 };
        let _ = writeln!(out, "# HELP stipple_generated_tokens_total Tokens generated.\n# TYPE stipple_generated_tokens_total counter\nstipple_generated_tokens_total {tokens}");
        let _ = writeln!(out, "# HELP stipple_text_seconds_total Seconds the text model spent generating.\n# TYPE stipple_text_seconds_total counter\nstipple_text_seconds_total {text_s:.6}");
        let _ = writeln!(out, "# HELP stipple_tokens_per_second Tokens per second of text generation since start.\n# TYPE stipple_tokens_per_second gauge\nstipple_tokens_per_second {:.3}", rate(tokens, text_s));
        let _ = writeln!(out, "# HELP stipple_denoise_steps_total Denoising steps of the image and music models.\n# TYPE stipple_denoise_steps_total counter\nstipple_denoise_steps_total {steps}");
        let _ = writeln!(out, "# HELP stipple_steps_per_second Denoising steps per second since start.\n# TYPE stipple_steps_per_second gauge\nstipple_steps_per_second {:.3}", rate(steps, step_s));
        let _ = writeln!(out, "# HELP stipple_text_runs_total Text model runs; stipple_text_batched_requests_total / this is the mean batch.\n# TYPE stipple_text_runs_total counter\nstipple_text_runs_total {}", get(&self.text_runs));
        let _ = writeln!(out, "# HELP stipple_text_batched_requests_total Text requests those runs carried.\n# TYPE stipple_text_batched_requests_total counter\nstipple_text_batched_requests_total {}", get(&self.text_rows));
        let _ = writeln!(out, "# HELP stipple_cancelled_total Generations cancelled (client gone, interrupt, shutdown).\n# TYPE stipple_cancelled_total counter\nstipple_cancelled_total {}", get(&self.cancelled));
        out
    }
}
