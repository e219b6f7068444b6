//! `stipple batch`: many jobs in one process, resumably. A job file (JSON Lines, or one
//! command line per line) is read whole; each job gets a stable id and a seed derived from
//! it; models load once and are reused; results go to `--out DIR` through temporary files,
//! and every job's outcome is appended to `DIR/manifest.jsonl` as it finishes, so a rerun
//! of the same command skips what is done and a kill loses at most the job in flight.
//! Shards (`--shard I/N`, or a SLURM array / Kubernetes Indexed Job) run a share each, and
//! `batch merge` joins their manifests.

mod jobs;
mod manifest;
mod merge;
mod shard;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use super::{Cli, Command, Context as RunContext, execute, models::ModelCache};
use jobs::{Defaults, Inherited, Job};
use manifest::{Manifest, Status};
pub use shard::Shard;

/// `stipple batch` arguments: a job file to run, or `merge`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct BatchArgs {
    #[command(subcommand)]
    pub merge: Option<BatchCommand>,
    #[command(flatten)]
    pub run: RunArgs,
}

/// `stipple batch` subcommands.
#[derive(Subcommand, Debug)]
pub enum BatchCommand {
    /// Join the manifests of a sharded batch (one folder per shard, or one shared folder)
    /// and check that every job was done exactly once with its outputs.
    Merge(merge::MergeArgs),
}

/// Running a job file.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The job file. JSON Lines (`.jsonl`): one job object per line, `{"kind": "text" |
    /// "infill" | "image" | "audio", "id": ..., "prompt": ..., "steps": ..., "seed": ...}`
    /// with the command's flags as snake_case fields. Otherwise one command per line as
    /// typed after `stipple` (e.g. `image "red heart" --steps 20`). Blank lines and lines
    /// starting with # are skipped.
    #[arg(required = true, value_name = "JOBS")]
    pub file: Option<PathBuf>,
    /// Folder for the outputs and the manifest (created if missing; `--out-dir` says the
    /// same). A job's outputs default to ID.txt / ID.png / ID.wav and cannot leave it.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Defaults for every job, TOML or JSON: top-level fields for every kind that has them,
    /// tables per kind (`[image] steps = 20`). A job's own fields win.
    #[arg(long, value_name = "FILE")]
    pub defaults: Option<PathBuf>,
    /// Run again the jobs an earlier run recorded as failed (they are skipped otherwise).
    #[arg(long)]
    pub retry_failed: bool,
    /// Run shard I of N (1-based): the I-th of N equal runs of consecutive jobs, with its
    /// own manifest (manifest-I-of-N.jsonl). Default: from SLURM_ARRAY_TASK_ID /
    /// SLURM_ARRAY_TASK_COUNT or JOB_COMPLETION_INDEX / STIPPLE_SHARD_COUNT when set.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Stop at the first failed job (by default the batch goes on and reports failures at the end).
    #[arg(long)]
    pub fail_fast: bool,
    /// Accepted for old scripts: going on after a failure is the default now.
    #[arg(long, hide = true)]
    pub keep_going: bool,
}

/// Runs `stipple batch` or `stipple batch merge`.
pub fn run(cli: &Cli, args: &BatchArgs) -> Result<()> {
    match &args.merge {
        Some(BatchCommand::Merge(m)) => merge::run(m, cli.json),
        None => run_jobs(cli, &args.run),
    }
}

/// How the jobs of this run went.
#[derive(Default)]
struct Tally {
    done_earlier: usize,
    done: usize,
    failed: Vec<String>,
    failed_earlier: Vec<String>,
}

fn run_jobs(cli: &Cli, args: &RunArgs) -> Result<()> {
    let file = args.file.as_deref().context("give a job file: stipple batch JOBS.jsonl --out DIR")?;
    let out_dir = match (&args.out, &cli.out_dir) {
        (Some(a), Some(b)) if a != b => bail!("--out {} and --out-dir {} name different folders: give one", a.display(), b.display()),
        (Some(d), _) | (None, Some(d)) => d.clone(),
        // a manifest decides what a rerun skips: it goes where the user said, not wherever
        // the shell happens to be
        (None, None) => bail!("give --out DIR: the folder for the batch's outputs and its manifest (created if missing; `--out .` for the current folder)"),
    };
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let defaults = match &args.defaults {
        Some(p) => Defaults::read(p)?,
        None => Defaults::default(),
    };
    let mut all = jobs::read(file, &Inherited { cli, out_dir: &out_dir, defaults: &defaults })?;
    let shard = match args.shard {
        Some(s) => Some(s),
        None => Shard::from_env(|k| std::env::var(k).ok())?,
    };
    let fingerprint = manifest::fingerprint(all.iter().map(|j| (j.id.as_str(), &j.params, j.seed)));
    let total = all.len();
    let mine = &mut all[shard.map_or(0..total, |s| s.range(total))];
    let mut manifest = Manifest::open(&out_dir.join(manifest::file_name(shard)))?;
    // a job recorded as done must still be the same job: same parameters, same seed
    let changed: Vec<String> = mine
        .iter()
        .filter(|j| manifest.earlier.get(&j.id).is_some_and(|s| s.status == Status::Done && !same_job(&s.record, j)))
        .map(|j| format!("{} (line {})", j.id, j.line))
        .collect();
    if !changed.is_empty() {
        bail!(
            "{} records job(s) {} as done with other parameters or seeds than {} gives them now: give changed jobs new ids, or use another --out",
            out_dir.join(manifest::file_name(shard)).display(),
            changed.join(", "),
            file.display()
        );
    }
    let ids: Vec<&str> = mine.iter().map(|j| j.id.as_str()).collect();
    manifest.append(&manifest::batch_record(file, &fingerprint, shard, total, &ids))?;

    let bars = MultiProgress::new();
    let tty = std::io::stderr().is_terminal();
    let overall = bars.add(ProgressBar::new(mine.len() as u64));
    overall.set_style(ProgressStyle::with_template("batch [{bar:30}] {pos}/{len} jobs, {msg} {elapsed_precise} (eta {eta})").expect("valid template").progress_chars("=> "));
    overall.set_message("0 failed,");
    let models = ModelCache::default();
    let context = RunContext { models: &models, bars: Some(&bars) };
    let mut tally = Tally::default();
    let started = Instant::now();
    let count = mine.len();
    for (k, job) in mine.iter_mut().enumerate() {
        let earlier = manifest.earlier.get(&job.id).cloned();
        match earlier.as_ref().map(|s| s.status) {
            Some(Status::Done) => {
                tally.done_earlier += 1;
                overall.inc(1);
                continue;
            }
            Some(Status::Failed) if !args.retry_failed && same_job(&earlier.as_ref().expect("state").record, job) => {
                tally.failed_earlier.push(job.id.clone());
                overall.inc(1);
                continue;
            }
            _ => {}
        }
        // killed while it ran: its outputs, if any got written, are this job's own
        let interrupted = earlier.is_some_and(|s| s.status == Status::Started);
        manifest.append(&json!({ "record": "job", "id": job.id, "status": "started", "line": job.line, "time": manifest::now() }))?;
        let t = Instant::now();
        let result = match &mut job.command {
            Err(e) => Err(anyhow::anyhow!("line {}: {e}", job.line)),
            Ok(command) => {
                let out = own_outputs(command, &job.id, interrupted);
                if let Some(out) = out {
                    remove_temporary_files(&out_dir.join(out));
                }
                execute(command, &context).with_context(|| format!("line {}", job.line))
            }
        };
        let seconds = t.elapsed().as_secs_f64();
        let record = match result {
            Ok(summary) => {
                tally.done += 1;
                let summary = summary.unwrap_or(Value::Null);
                json!({
                    "record": "job", "id": job.id, "status": "done", "line": job.line,
                    "params": job.params, "seed": job.seed,
                    "outputs": relative_outputs(&summary, &out_dir),
                    "seconds": seconds, "result": summary, "time": manifest::now(),
                })
            }
            Err(e) => {
                tally.failed.push(job.id.clone());
                json!({
                    "record": "job", "id": job.id, "status": "failed", "line": job.line,
                    "params": job.params, "seed": job.seed,
                    "error": format!("{e:#}"), "seconds": seconds, "time": manifest::now(),
                })
            }
        };
        manifest.append(&record)?;
        let failed = record["status"] == "failed";
        if cli.json {
            bars.suspend(|| println!("{record}"));
        }
        if failed || !tty {
            let what = if failed { format!("failed: {}", record["error"].as_str().unwrap_or_default()) } else { format!("done in {seconds:.1} s") };
            bars.suspend(|| eprintln!("[{}/{count}] job {} {what}", k + 1, job.id));
        }
        overall.set_message(format!("{} failed,", tally.failed.len() + tally.failed_earlier.len()));
        overall.inc(1);
        if failed && args.fail_fast {
            break;
        }
    }
    overall.finish();
    let seconds = started.elapsed().as_secs_f64();
    let summary = json!({
        "batch": file,
        "out": out_dir,
        "shard": shard.map(|s| s.to_string()),
        "jobs": count,
        "done": tally.done,
        "done_earlier": tally.done_earlier,
        "failed": tally.failed,
        "failed_earlier": tally.failed_earlier,
        "models_loaded": models.loads(),
        "seconds": seconds,
        "jobs_per_s": if seconds > 0.0 { tally.done as f64 / seconds } else { 0.0 },
    });
    if cli.json {
        println!("{summary}");
    }
    let skipped = count - tally.done - tally.failed.len() - tally.done_earlier - tally.failed_earlier.len();
    eprintln!(
        "{} job(s) done in {seconds:.1} s ({} earlier), {} failed ({} earlier){}; manifest: {}",
        tally.done,
        tally.done_earlier,
        tally.failed.len() + tally.failed_earlier.len(),
        tally.failed_earlier.len(),
        if skipped > 0 { format!(", {skipped} not run (--fail-fast)") } else { String::new() },
        out_dir.join(manifest::file_name(shard)).display()
    );
    let failed: Vec<&String> = tally.failed_earlier.iter().chain(&tally.failed).collect();
    if !failed.is_empty() {
        let shown: Vec<&str> = failed.iter().take(20).map(|s| s.as_str()).collect();
        bail!(
            "{} of {count} job(s) failed (ids {}{}); the errors are in the manifest{}",
            failed.len(),
            shown.join(", "),
            if failed.len() > 20 { ", ..." } else { "" },
            if tally.failed_earlier.is_empty() { "" } else { "; --retry-failed runs the earlier failures again" }
        );
    }
    if skipped > 0 {
        bail!("{skipped} job(s) did not run (--fail-fast)");
    }
    Ok(())
}

/// Whether a manifest record is of this job: same parameters, same seed.
fn same_job(record: &Value, job: &Job) -> bool {
    record["params"] == job.params && record["seed"] == json!(job.seed)
}

/// Gives a generating job its default output, named by its id (`ID.txt`, `ID.png`,
/// `ID.wav`), and lets a job that was killed while it ran replace what it had written.
/// Returns the output's name inside the batch's folder.
fn own_outputs(cli: &mut Cli, id: &str, interrupted: bool) -> Option<PathBuf> {
    let named = |out: &mut Option<PathBuf>, ext: &str| out.get_or_insert_with(|| PathBuf::from(format!("{id}.{ext}"))).clone();
    match &mut cli.command {
        Command::Text(a) => {
            a.overwrite |= interrupted;
            Some(named(&mut a.out, "txt"))
        }
        Command::Infill(a) => {
            a.overwrite |= interrupted;
            Some(named(&mut a.out, "txt"))
        }
        Command::Image(a) => {
            a.overwrite |= interrupted;
            Some(named(&mut a.out, "png"))
        }
        Command::Audio(a) => match &mut a.convert {
            None => {
                a.generate.overwrite |= interrupted;
                Some(named(&mut a.generate.out, "wav"))
            }
            Some(super::audio::Convert::Spectrogram(c)) => {
                c.overwrite |= interrupted;
                Some(c.output.clone())
            }
            Some(super::audio::Convert::Render(c)) => {
                c.overwrite |= interrupted;
                Some(c.output.clone())
            }
        },
        _ => None,
    }
}

/// Removes what a killed write to `out` (or its numbered siblings `NAME-2.png`, its
/// spectrogram `NAME.png`) left: the writers' temporary files `.NAME[-K].EXT.PID.tmp`.
fn remove_temporary_files(out: &Path) {
    let (Some(dir), Some(stem)) = (out.parent(), out.file_stem().and_then(|s| s.to_str())) else { return };
    let Ok(entries) = std::fs::read_dir(if dir.as_os_str().is_empty() { Path::new(".") } else { dir }) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if is_temporary_of(name, stem) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Whether `name` is `.STEM[-K].EXT.PID.tmp`.
fn is_temporary_of(name: &str, stem: &str) -> bool {
    let Some(rest) = name.strip_prefix('.').and_then(|n| n.strip_prefix(stem)).and_then(|n| n.strip_suffix(".tmp")) else { return false };
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let Some((rest, pid)) = rest.rsplit_once('.') else { return false };
    let Some((number, ext)) = rest.rsplit_once('.') else { return false };
    let numbered = number.is_empty() || number.strip_prefix('-').is_some_and(digits);
    digits(pid) && numbered && !ext.is_empty() && ext.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The paths a job's summary names, relative to the batch's folder.
fn relative_outputs(summary: &Value, out_dir: &Path) -> Vec<String> {
    let mut paths: Vec<&str> = summary["paths"].as_array().into_iter().flatten().filter_map(|p| p.as_str()).collect();
    if let Some(s) = summary["spectrogram"].as_str() {
        paths.push(s);
    }
    paths.iter().map(|p| Path::new(p).strip_prefix(out_dir).map(|r| r.display().to_string()).unwrap_or_else(|_| p.to_string())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    /// A job file's text parsed as the runner parses it: the first job that cannot run.
    fn parse_jobs(cli: &Cli, text: &str) -> std::result::Result<(), String> {
        let defaults = Defaults::default();
        let inherited = Inherited { cli, out_dir: Path::new("."), defaults: &defaults };
        for job in jobs::from_text(text, false, &inherited) {
            job.command?;
        }
        Ok(())
    }

    #[test]
    fn temporary_files_are_told_apart() {
        assert!(is_temporary_of(".7.png.1234.tmp", "7"));
        assert!(is_temporary_of(".7-2.png.1234.tmp", "7"));
        assert!(!is_temporary_of(".7-x.png.1234.tmp", "7"));
        assert!(!is_temporary_of(".70.png.1234.tmp", "7"));
        assert!(!is_temporary_of("7.png", "7"));
        assert!(!is_temporary_of(".7.png.tmp", "7"));
    }

    /// Batch-file lines, as the fuzzer mutates them (`tools/fuzz.sh` runs it long).
    const BATCH_LINES: stipple_fuzz::Target = stipple_fuzz::Target {
        name: "batch_lines",
        seeds: &["examples/jobs.txt", "examples/jobs.jsonl"],
        dictionary: &[b"'", b"\"", b"\\", b"#", b" --out ", b" --out-dir ", b" --seed ", b"batch ", b"studio", b"train ", b"image ", b"text ", b"--max-memory 1G", b"../", b"\0", b"\n", b"{\"kind\":", b"\"id\":", b"\"seed\":", b"null", b"true", b"[", b"]", b"{", b"}", b"1e999", b"-1"],
        run: |data| {
            let cli = Cli::try_parse_from(["stipple", "batch", "jobs.txt"]).map_err(|e| e.to_string())?;
            parse_jobs(&cli, &String::from_utf8_lossy(data))
        },
    };

    #[test]
    fn fuzz_batch_lines() {
        let r = stipple_fuzz::fuzz(&BATCH_LINES);
        eprintln!("fuzz {}: {} inputs in {:.1} s, {} distinct errors, {} findings", r.target, r.execs, r.seconds, r.distinct_errors, r.findings.len());
        assert!(r.findings.is_empty(), "{:#?}", r.findings);
    }
}
