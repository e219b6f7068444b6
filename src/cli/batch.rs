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
    /// Run the remaining jobs after one fails, and run the good lines when others are
    /// malformed (the exit status still reports the failures).
    #[arg(long)]
    pub keep_going: bool,
}

/// `stipple batch`: each line parsed as a command line and run in this process, in order.
/// Jobs write inside `--out-dir` (default: the current folder): their output paths are
/// taken relative to it, and absolute paths, `..` and links out of it are refused.
/// The batch's global options (`--seed`, `--device`, `--dtype`, `--json`, `--max-memory`) apply to every job
/// unless its line gives its own. With `--json`, stdout is JSON Lines: each job's object,
/// then a summary.
pub fn run(cli: &Cli, args: &BatchArgs) -> Result<()> {
    let text = std::fs::read_to_string(&args.file).with_context(|| format!("reading the job file {}", args.file.display()))?;
    // every line is parsed first: without --keep-going a bad line stops the batch before
    // any work; with it, the bad line is reported as failed and the good ones run
    let mut jobs = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let job = parse_line(cli, line).map_err(|e| anyhow::anyhow!("{}:{}: {e:#}", args.file.display(), i + 1));
        if let (Err(e), false) = (&job, args.keep_going) {
            bail!("{e:#} (with --keep-going the other jobs run and this one is reported as failed)");
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
        let result = match job {
            Ok(job) => run_command(job),
            Err(e) => Err(anyhow::anyhow!("{e:#}")),
        };
        match result {
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

/// One job line as the command line it stands for, with the batch's global options.
fn parse_line(cli: &Cli, line: &str) -> Result<Cli> {
    let words = shlex::split(line).context("unbalanced quotes")?;
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
    if given("--out-dir") {
        bail!("--out-dir is the batch's own option (every job writes inside the batch's folder)");
    }
    // jobs write inside the batch's --out-dir (the current folder by default) and cannot
    // leave it, so a job file from elsewhere cannot write anywhere else
    let out_dir = cli.out_dir.clone().unwrap_or_else(|| ".".into());
    argv.extend(["--out-dir".into(), out_dir.display().to_string()]);
    argv.extend(words);
    let job = Cli::try_parse_from(&argv).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
    if matches!(job.command, Command::Batch(_) | Command::Studio(_)) {
        bail!("`batch` and `studio` cannot run inside a batch");
    }
    #[cfg(feature = "train")]
    if matches!(job.command, Command::Train(_)) {
        bail!("`train` writes model folders and data sets: run it directly, not inside a batch");
    }
    Ok(job)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Batch-file lines, as the fuzzer mutates them (`tools/fuzz.sh` runs it long).
    const BATCH_LINES: stipple_fuzz::Target = stipple_fuzz::Target {
        name: "batch_lines",
        seeds: &["examples/jobs.txt"],
        dictionary: &[b"'", b"\"", b"\\", b"#", b" --out ", b" --out-dir ", b" --seed ", b"batch ", b"studio", b"train ", b"image ", b"text ", b"--max-memory 1G", b"../", b"\0", b"\n"],
        run: |data| {
            let cli = Cli::try_parse_from(["stipple", "batch", "jobs.txt"]).map_err(|e| e.to_string())?;
            for line in String::from_utf8_lossy(data).lines() {
                parse_line(&cli, line).map_err(|e| format!("{e:#}"))?;
            }
            Ok(())
        },
    };

    #[test]
    fn fuzz_batch_lines() {
        let r = stipple_fuzz::fuzz(&BATCH_LINES);
        eprintln!("fuzz {}: {} inputs in {:.1} s, {} distinct errors, {} findings", r.target, r.execs, r.seconds, r.distinct_errors, r.findings.len());
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
    }
}
