//! Memory predicted before the work starts (`stipple_core::memory`), for every modality on
//! the embedded models: a request just under `--max-memory` runs, one just over or far over
//! is refused before anything large is allocated (the process stays small), and the
//! prediction is within 25% of the measured peak (`STIPPLE_MEMORY_REPORT`).

use std::path::PathBuf;
use std::process::{Command, Output};

struct Run {
    out: Output,
    predicted: u64,
    measured: u64,
}

impl Run {
    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.out.stderr).into_owned()
    }
}

fn folder(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stipple-memory-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs stipple in `dir` with the memory report on, and reads the report.
fn run(dir: &PathBuf, args: &[&str]) -> Run {
    // two worker threads, as where the estimates were measured: each thread's allocator
    // heap keeps its own freed pages, so the resident peak grows with the thread count
    let out = Command::new(env!("CARGO_BIN_EXE_stipple")).args(args).current_dir(dir).env("STIPPLE_MEMORY_REPORT", "1").env("RAYON_NUM_THREADS", "2").output().expect("run stipple");
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.starts_with("memory: ")).unwrap_or_else(|| panic!("no memory report: {err}"));
    let number = |after: &str| -> u64 { line.split(after).nth(1).and_then(|r| r.split_whitespace().next()).and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("{line}")) };
    Run { predicted: number("predicted peak "), measured: number("measured peak resident "), out }
}

/// The prediction for `args`, checked against the measured peak, then the same request
/// under a limit just above and just below it.
fn just_under_and_over(name: &str, args: &[&str], writes_files: bool) {
    let dir = folder(name);
    let free = run(&dir, args);
    assert!(free.out.status.success(), "{args:?}: {}", free.stderr());
    let ratio = free.predicted as f64 / free.measured as f64;
    assert!((0.75..=1.25).contains(&ratio), "{args:?}: predicted {} bytes, measured peak {} ({ratio:.2})", free.predicted, free.measured);
    let limit = |f: f64| format!("{}", (free.predicted as f64 * f) as u64);
    // the same outputs are written again
    fn with<'a>(limit: &'a str, args: &[&'a str], writes_files: bool) -> Vec<&'a str> {
        [&["--max-memory", limit][..], args, if writes_files { &["--overwrite"][..] } else { &[] }].concat()
    }
    let (above, below) = (limit(1.08), limit(0.8));
    let under = run(&dir, &with(&above, args, writes_files));
    assert!(under.out.status.success(), "{args:?} under a limit 8% above its prediction: {}", under.stderr());
    let over = run(&dir, &with(&below, args, writes_files));
    assert!(!over.out.status.success(), "{args:?} ran under a limit 20% below its prediction");
    assert!(over.stderr().contains("needs about") && over.stderr().contains("--max-memory is"), "{}", over.stderr());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A request far beyond the machine is refused before it allocates: the process stays small.
fn far_over(name: &str, args: &[&str], message: &str) {
    let dir = folder(name);
    let r = run(&dir, args);
    let err = r.stderr();
    assert!(!r.out.status.success(), "{args:?} was accepted");
    assert!(err.contains(message) && err.contains("needs about"), "{args:?}: {err}");
    assert!(r.measured < 400 << 20, "{args:?} grew to {} bytes before refusing", r.measured);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{args:?} wrote files");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn text_under_and_over_the_limit() {
    let mut args = vec!["text", "--gen-len", "64", "--steps", "8"];
    let prompts: Vec<String> = (0..96).map(|i| format!("prompt {i}")).collect();
    for p in &prompts {
        args.extend(["--prompt", p]);
    }
    just_under_and_over("text", &args, false);
    far_over("text-far", &[&["--max-memory", "100M"][..], &args].concat(), "--max-memory is 100.0 MiB");
}

#[test]
fn image_under_and_over_the_limit() {
    just_under_and_over("image", &["image", "a red heart", "--width", "128", "--height", "128", "--steps", "2", "--out", "x.png"], true);
    // 8192 x 8192, 64 at once: terabytes, far beyond any machine
    far_over("image-far", &["image", "x", "--width", "8192", "--height", "8192", "--batch", "64", "--steps", "1", "--out", "x.png"], "is available");
}

#[test]
fn audio_under_and_over_the_limit() {
    just_under_and_over("audio", &["audio", "a drum loop", "--seconds", "20", "--steps", "2", "--strength", "1", "--out", "x.wav"], true);
    far_over("audio-far", &["--max-memory", "100M", "audio", "x", "--seconds", "600", "--steps", "1", "--strength", "1", "--out", "x.wav"], "--max-memory is 100.0 MiB");
}
