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
use std::ops::Range;
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
    /// Make up to N consecutive image jobs with the same model, size, steps, guidance and
    /// sampler as one model batch (each keeps its own prompt, seed and output; 1: one at a
    /// time). Outputs depend on it by rounding only, so keep it when resuming.
    #[arg(long, value_name = "N", default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub group: u16,
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
    /// The first failure's message (the final error quotes it).
    first_error: Option<String>,
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
    // runs of jobs made together, fixed by the job file alone, so a resumed or sharded batch
    // makes the same batches (and so the same bytes) as an uninterrupted one
    let all_units = units(&all, args.group as usize);
    let share = shard.map_or(0..total, |s| s.range(total));
    let units: Vec<Range<usize>> = all_units.into_iter().filter(|u| share.contains(&u.start)).collect();
    let mine = units.first().map_or(0..0, |u| u.start..units.last().expect("one unit").end);
    let manifest_path = out_dir.join(manifest::file_name(shard));
    let manifest = Manifest::open(&manifest_path)?;
    // a job recorded as done must still be the same job: same parameters, same seed
    let changed: Vec<String> = all[mine.clone()]
        .iter()
        .filter(|j| manifest.earlier.get(&j.id).is_some_and(|s| s.status == Status::Done && !same_job(&s.record, j)))
        .map(|j| format!("{} (line {})", j.id, j.line))
        .collect();
    if !changed.is_empty() {
        bail!(
            "{} records job(s) {} as done with other parameters or seeds than {} gives them now: give changed jobs new ids, or use another --out",
            manifest_path.display(),
            changed.join(", "),
            file.display()
        );
    }
    let ids: Vec<&str> = all[mine.clone()].iter().map(|j| j.id.as_str()).collect();
    let header = manifest::batch_record(file, &fingerprint, shard, total, &ids);

    let bars = MultiProgress::new();
    let overall = bars.add(ProgressBar::new(mine.len() as u64));
    overall.set_style(ProgressStyle::with_template("batch [{bar:30}] {pos}/{len} jobs, {msg} {elapsed_precise} (eta {eta})").expect("valid template").progress_chars("=> "));
    overall.set_message("0 failed,");
    let models = ModelCache::default();
    let mut runner = Runner {
        manifest,
        context: RunContext { models: &models, bars: Some(&bars) },
        overall: &overall,
        tty: std::io::stderr().is_terminal(),
        json: cli.json,
        out_dir: &out_dir,
        retry_failed: args.retry_failed,
        count: mine.len(),
        tally: Tally::default(),
    };
    runner.manifest.append(&header)?;
    let started = Instant::now();
    for unit in units {
        let jobs = &mut all[unit];
        if jobs.len() == 1 { runner.run_alone(&mut jobs[0])? } else { runner.run_together(jobs)? }
        if args.fail_fast && !runner.tally.failed.is_empty() {
            break;
        }
    }
    overall.finish();
    let (tally, count) = (runner.tally, runner.count);
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
        manifest_path.display()
    );
    let failed: Vec<&String> = tally.failed_earlier.iter().chain(&tally.failed).collect();
    if !failed.is_empty() {
        let shown: Vec<&str> = failed.iter().take(20).map(|s| s.as_str()).collect();
        bail!(
            "{} of {count} job(s) failed (ids {}{}); the first: {}; every error is in the manifest{}",
            failed.len(),
            shown.join(", "),
            if failed.len() > 20 { ", ..." } else { "" },
            tally.first_error.as_deref().unwrap_or("?"),
            if tally.failed_earlier.is_empty() { "" } else { "; --retry-failed runs the earlier failures again" }
        );
    }
    if skipped > 0 {
        bail!("{skipped} job(s) did not run (--fail-fast)");
    }
    Ok(())
}

/// The job file cut into units that run as one: a job alone, or up to `group` consecutive
/// image jobs with the same [`super::image::batch_key`] (and global options), made as one
/// model batch.
fn units(jobs: &[Job], group: usize) -> Vec<Range<usize>> {
    let key = |j: &Job| match &j.command {
        Ok(c) => match &c.command {
            Command::Image(a) => super::image::batch_key(a).map(|k| format!("{} {} {:?} {k}", c.device, c.dtype, c.max_memory)),
            _ => None,
        },
        Err(_) => None,
    };
    let mut units: Vec<Range<usize>> = Vec::new();
    let mut last_key = None;
    for (i, job) in jobs.iter().enumerate() {
        let k = key(job);
        match units.last_mut() {
            Some(u) if k.is_some() && k == last_key && u.len() < group.max(1) => u.end = i + 1,
            _ => units.push(i..i + 1),
        }
        last_key = k;
    }
    units
}

/// One run of a batch: the manifest it appends to, the progress it shows, how it went.
struct Runner<'a> {
    manifest: Manifest,
    context: RunContext<'a>,
    overall: &'a ProgressBar,
    tty: bool,
    json: bool,
    out_dir: &'a Path,
    retry_failed: bool,
    count: usize,
    tally: Tally,
}

impl Runner<'_> {
    /// Whether `job` is to run now: not done earlier, and not failed earlier unless
    /// failures are retried (a failed job whose parameters changed since is a new job).
    /// Counts the ones that are not.
    fn wanted(&mut self, job: &Job) -> bool {
        let earlier = self.manifest.earlier.get(&job.id);
        match earlier.map(|s| s.status) {
            Some(Status::Done) => self.tally.done_earlier += 1,
            Some(Status::Failed) if !self.retry_failed && same_job(&earlier.expect("state").record, job) => {
                self.tally.failed_earlier.push(job.id.clone());
                let error = earlier.and_then(|s| s.record["error"].as_str()).unwrap_or("failed");
                self.tally.first_error.get_or_insert_with(|| format!("job {}: {error}", job.id));
            }
            _ => return true,
        }
        self.overall.inc(1);
        false
    }

    /// Records that `job` starts, and readies its command: its default output named by
    /// its id, leftovers of a killed write removed, replacing allowed when it was killed
    /// while it ran (what it wrote then is its own).
    fn start(&mut self, job: &mut Job) -> Result<()> {
        let interrupted = self.manifest.earlier.get(&job.id).is_some_and(|s| s.status == Status::Started);
        self.manifest.append(&json!({ "record": "job", "id": job.id, "status": "started", "line": job.line, "time": manifest::now() }))?;
        if let Ok(command) = &mut job.command
            && let Some(out) = own_outputs(command, &job.id, interrupted)
        {
            remove_temporary_files(&self.out_dir.join(out));
        }
        Ok(())
    }

    /// Records how `job` went, prints it, and counts it.
    fn finish(&mut self, job: &Job, result: Result<Option<Value>>, seconds: f64) -> Result<()> {
        let record = match result {
            Ok(summary) => {
                self.tally.done += 1;
                let summary = summary.unwrap_or(Value::Null);
                json!({
                    "record": "job", "id": job.id, "status": "done", "line": job.line, "kind": kind(job),
                    "params": job.params, "seed": job.seed,
                    "outputs": relative_outputs(&summary, self.out_dir),
                    "seconds": seconds, "result": summary, "time": manifest::now(),
                })
            }
            Err(e) => {
                self.tally.failed.push(job.id.clone());
                self.tally.first_error.get_or_insert_with(|| format!("job {}: line {}: {e:#}", job.id, job.line));
                json!({
                    "record": "job", "id": job.id, "status": "failed", "line": job.line, "kind": kind(job),
                    "params": job.params, "seed": job.seed,
                    "error": format!("line {}: {e:#}", job.line), "seconds": seconds, "time": manifest::now(),
                })
            }
        };
        self.manifest.append(&record)?;
        let failed = record["status"] == "failed";
        let bars = self.context.bars.expect("a batch draws its bars");
        if self.json {
            bars.suspend(|| println!("{record}"));
        }
        if failed || !self.tty {
            let what = if failed { format!("failed: {}", record["error"].as_str().unwrap_or_default()) } else { format!("done in {seconds:.1} s") };
            let k = self.tally.done + self.tally.failed.len() + self.tally.done_earlier + self.tally.failed_earlier.len();
            bars.suspend(|| eprintln!("[{k}/{}] job {} {what}", self.count, job.id));
        }
        self.overall.set_message(format!("{} failed,", self.tally.failed.len() + self.tally.failed_earlier.len()));
        self.overall.inc(1);
        Ok(())
    }

    /// Runs one job.
    fn run_alone(&mut self, job: &mut Job) -> Result<()> {
        if !self.wanted(job) {
            return Ok(());
        }
        self.start(job)?;
        let t = Instant::now();
        let result = match &job.command {
            Err(e) => Err(anyhow::anyhow!("{e}")),
            Ok(command) => execute(command, &self.context),
        };
        self.finish(job, result, t.elapsed().as_secs_f64())
    }

    /// Runs consecutive compatible image jobs as one model batch. The whole group is
    /// made even when some of it was done before (only the others are written), so the
    /// batch is the one an uninterrupted run made. If the group cannot run together (too
    /// big for memory, one job's output refused...), its jobs run one by one.
    fn run_together(&mut self, jobs: &mut [Job]) -> Result<()> {
        let wanted: Vec<bool> = jobs.iter().map(|j| self.wanted(j)).collect();
        if !wanted.contains(&true) {
            return Ok(());
        }
        for (job, _) in jobs.iter_mut().zip(&wanted).filter(|(_, w)| **w) {
            self.start(job)?;
        }
        let t = Instant::now();
        let together = (|| {
            let commands: Vec<&Cli> = jobs.iter().map(|j| j.command.as_ref().map_err(|e| anyhow::anyhow!("{e}"))).collect::<Result<_>>()?;
            let args: Vec<&super::image::ImageArgs> = commands.iter().filter_map(|c| if let Command::Image(a) = &c.command { Some(a) } else { None }).collect();
            let seeds: Vec<u64> = jobs.iter().map(|j| j.seed).collect();
            let g = super::global(commands[0], &self.context)?;
            super::image::run_batched(&g, &args, &seeds, &wanted)
        })();
        match together {
            Ok(summaries) => {
                let seconds = t.elapsed().as_secs_f64() / jobs.len() as f64;
                for (job, summary) in jobs.iter().zip(summaries) {
                    if let Some(summary) = summary {
                        self.finish(job, Ok(Some(summary)), seconds)?;
                    }
                }
            }
            Err(e) => {
                let bars = self.context.bars.expect("a batch draws its bars");
                bars.suspend(|| eprintln!("jobs {}..{} could not run together ({e:#}); running them one by one", jobs[0].id, jobs[jobs.len() - 1].id));
                for (job, _) in jobs.iter_mut().zip(&wanted).filter(|(_, w)| **w) {
                    let t = Instant::now();
                    let result = match &job.command {
                        Err(e) => Err(anyhow::anyhow!("{e}")),
                        Ok(command) => execute(command, &self.context),
                    };
                    self.finish(job, result, t.elapsed().as_secs_f64())?;
                }
            }
        }
        Ok(())
    }
}

/// The command a job runs (`text`, `image`...), or null when it cannot run.
fn kind(job: &Job) -> Value {
    match &job.command {
        Ok(c) => json!(match &c.command {
            Command::Text(_) => "text",
            Command::Infill(_) => "infill",
            Command::Image(_) => "image",
            Command::Audio(_) => "audio",
            Command::Schedule(_) => "schedule",
            Command::Bench(_) => "bench",
            Command::Params => "params",
            _ => "other",
        }),
        Err(_) => job.params.get("kind").cloned().unwrap_or(Value::Null),
    }
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
