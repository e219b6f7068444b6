//! `stipple batch`: a file of command lines run in this process, in order.

use anyhow::{Context, Result, bail};
use clap::{Args, Parser};
use serde_json::json;

use super::{Cli, Command, run as run_command};

#[derive(Args, Debug)]
pub struct BatchArgs {
    /// The job file: one command per line, as typed after `stipple` (e.g.
    /// `text "Call me Ishmael" --gen-len 32` or `image "red heart" --out heart.png`);
    /// blank lines and lines starting with # are skipped.
    pub file: std::path::PathBuf,
    /// Run the remaining jobs after one fails (the exit status still reports the failure).
    #[arg(long)]
    pub keep_going: bool,
}

/// `stipple batch`: each line parsed as a command line and run in this process, in order.
/// The batch's global options (`--seed`, `--device`, `--dtype`, `--json`, `--max-memory`) apply to every job
/// unless its line gives its own. With `--json`, stdout is JSON Lines: each job's object,
/// then a summary.
pub fn run(cli: &Cli, args: &BatchArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading the job file {}", args.file.display()))?;
    let mut jobs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words = shlex::split(line).with_context(|| format!("{}:{}: unbalanced quotes", args.file.display(), i + 1))?;
        let mut argv = vec!["stipple".to_string()];
        let given = |flag: &str| words.iter().any(|w| w == flag || w.starts_with(&format!("{flag}=")));
        if !given("--device") {
            argv.extend(["--device".into(), cli.device.to_string()]);
        }
        if !given("--dtype") {
            argv.extend(["--dtype".into(), cli.dtype.to_string()]);
        }
        if let (Some(seed), false) = (cli.seed, given("--seed")) {
            argv.extend(["--seed".into(), seed.to_string()]);
        }
        if let (Some(stipple_core::memory::MemoryLimit::Bytes(b)), false) = (cli.max_memory, given("--max-memory")) {
            argv.extend(["--max-memory".into(), b.to_string()]);
        }
        if cli.json && !given("--json") {
            argv.push("--json".into());
        }
        argv.extend(words);
        let job = Cli::try_parse_from(&argv).map_err(|e| anyhow::anyhow!("{}:{}: {}", args.file.display(), i + 1, e.to_string().trim_end()))?;
        if matches!(job.command, Command::Batch(_) | Command::Studio(_)) {
            bail!("{}:{}: `batch` and `studio` cannot run inside a batch", args.file.display(), i + 1);
        }
        jobs.push((i + 1, line.to_string(), job));
    }
    if jobs.is_empty() {
        bail!("{} holds no jobs", args.file.display());
    }
    let (total, mut failed) = (jobs.len(), Vec::new());
    let start = std::time::Instant::now();
    for (k, (line_no, line, job)) in jobs.iter().enumerate() {
        eprintln!("[{}/{total}] line {line_no}: {line}", k + 1);
        let t = std::time::Instant::now();
        match run_command(job) {
            Ok(()) => eprintln!("[{}/{total}] done in {:.1} s", k + 1, t.elapsed().as_secs_f64()),
            Err(e) => {
                if cli.json {
                    println!("{}", json!({ "line": line_no, "error": format!("{e:#}") }));
                }
                eprintln!("[{}/{total}] line {line_no} failed: {e:#}", k + 1);
                failed.push(*line_no);
                if !args.keep_going {
                    break;
                }
            }
        }
    }
    let secs = start.elapsed().as_secs_f64();
    if cli.json {
        println!("{}", json!({ "batch": args.file.display().to_string(), "jobs": total, "failed_lines": failed, "seconds": secs }));
    }
    eprintln!("{} of {total} jobs succeeded in {secs:.1} s", total - failed.len());
    if !failed.is_empty() {
        bail!("{} job(s) failed (lines {:?})", failed.len(), failed);
    }
    Ok(())
}

