//! `stipple batch merge DIR...`: joins the manifests of a sharded batch into one and
//! reports what is not right: jobs missing (never done, or a shard that never ran), done
//! more than once, failed, or whose outputs are gone.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::Args;
use serde_json::{Value, json};

use super::manifest::{Status, job_states, read_records};

/// `stipple batch merge` arguments.
#[derive(Args, Debug)]
pub struct MergeArgs {
    /// Folders holding the shards' manifests (`manifest.jsonl`, `manifest-I-of-N.jsonl`).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// The merged manifest (default: merged.jsonl in the first folder); replaced if it exists.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// What the manifests say, put together.
#[derive(Debug, Default)]
pub struct Merged {
    /// Every job id the shards owned, in batch order.
    pub expected: Vec<String>,
    /// Each done job's record (the first one found), and the folder of its manifest.
    pub done: BTreeMap<String, (Value, PathBuf)>,
    /// Jobs done in more than one manifest, with the manifests.
    pub duplicated: BTreeMap<String, Vec<PathBuf>>,
    /// Jobs whose last record is a failure (and that no other manifest has done).
    pub failed: BTreeMap<String, String>,
    /// Jobs owned by a shard but never finished.
    pub missing: Vec<String>,
    /// Shards (1-based) of the batch that left no manifest.
    pub missing_shards: Vec<usize>,
    /// Done jobs whose recorded outputs are gone or empty.
    pub lost_outputs: BTreeMap<String, Vec<String>>,
}

impl Merged {
    /// Whether every job is done exactly once with its outputs.
    pub fn complete(&self) -> bool {
        self.duplicated.is_empty() && self.failed.is_empty() && self.missing.is_empty() && self.missing_shards.is_empty() && self.lost_outputs.is_empty()
    }
}

/// Reads and checks the manifests in `dirs` (except `exclude`, the merged file itself).
pub fn merge(dirs: &[PathBuf], exclude: Option<&Path>) -> Result<Merged> {
    let mut manifests = Vec::new();
    for dir in dirs {
        let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
        let mut found: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("manifest") && n.ends_with(".jsonl")))
            .filter(|p| exclude.is_none_or(|x| !same_file(p, x)))
            .collect();
        found.sort();
        if found.is_empty() {
            bail!("{}: no manifest*.jsonl (is it a batch's --out folder?)", dir.display());
        }
        manifests.extend(found);
    }
    let mut merged = Merged::default();
    let (mut fingerprint, mut shard_count): (Option<String>, Option<usize>) = (None, None);
    let mut shards_seen = Vec::new();
    let mut owned_order: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    let mut done_in: HashMap<String, Vec<PathBuf>> = HashMap::new();
    let mut failed: HashMap<String, String> = HashMap::new();
    for path in &manifests {
        let records = read_records(path)?;
        // the last run of a manifest says which batch and shard it is (an earlier run may
        // have had a failed job that was fixed since)
        if let Some(r) = records.iter().rev().find(|r| r["record"] == "batch") {
            let fp = r["fingerprint"].as_str().unwrap_or_default().to_string();
            match &fingerprint {
                None => fingerprint = Some(fp),
                Some(f) if *f != fp => bail!("{} belongs to another batch than the manifests before it (different jobs, ids or seeds)", path.display()),
                _ => {}
            }
            let (index, count) = match r["shard"].as_array().map(|a| (a[0].as_u64(), a[1].as_u64())) {
                Some((Some(i), Some(n))) => (i as usize, n as usize),
                _ => (1, 1),
            };
            match shard_count {
                None => shard_count = Some(count),
                Some(n) if n != count => bail!("{} was run as one of {count} shards, the manifests before it as one of {n}", path.display()),
                _ => {}
            }
            shards_seen.push(index);
            let ids: Vec<String> = r["ids"].as_array().map(|a| a.iter().filter_map(|v| v.as_str().map(String::from)).collect()).unwrap_or_default();
            owned_order.entry(index).or_insert(ids);
        }
        for (id, state) in job_states(&records) {
            match state.status {
                Status::Done => {
                    done_in.entry(id.clone()).or_default().push(path.clone());
                    let dir = path.parent().map(Path::to_path_buf).unwrap_or_default();
                    merged.done.entry(id).or_insert((state.record, dir));
                }
                Status::Failed => {
                    failed.insert(id, state.record["error"].as_str().unwrap_or("failed").to_string());
                }
                Status::Started => {}
            }
        }
    }
    let count = shard_count.unwrap_or(1);
    merged.missing_shards = (1..=count).filter(|i| !shards_seen.contains(i)).collect();
    let mut seen = std::collections::HashSet::new();
    for id in owned_order.values().flatten() {
        if seen.insert(id.clone()) {
            merged.expected.push(id.clone());
        }
    }
    for id in &merged.expected {
        if !merged.done.contains_key(id) {
            match failed.get(id) {
                Some(e) => {
                    merged.failed.insert(id.clone(), e.clone());
                }
                None => merged.missing.push(id.clone()),
            }
        }
    }
    merged.duplicated = done_in.into_iter().filter(|(_, m)| m.len() > 1).collect();
    for (id, (record, dir)) in &merged.done {
        // outputs are recorded relative to the batch's folder
        let lost: Vec<String> = record["outputs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str())
            .filter(|p| std::fs::metadata(dir.join(p)).map(|m| m.len() == 0).unwrap_or(true))
            .map(String::from)
            .collect();
        if !lost.is_empty() {
            merged.lost_outputs.insert(id.clone(), lost);
        }
    }
    Ok(merged)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(x), Ok(y)) => x == y,
        _ => false,
    }
}

/// Runs `stipple batch merge`: writes the merged manifest (one done record per job, in
/// batch order) and fails, saying why, unless every job is done exactly once.
pub fn run(args: &MergeArgs, json_out: bool) -> Result<()> {
    let out = args.out.clone().unwrap_or_else(|| args.dirs[0].join("merged.jsonl"));
    let merged = merge(&args.dirs, Some(&out))?;
    let mut text = String::new();
    for id in &merged.expected {
        if let Some((r, _)) = merged.done.get(id) {
            text.push_str(&r.to_string());
            text.push('\n');
        }
    }
    stipple_core::output::write_bytes(&out, text.as_bytes(), true)?;
    let summary = json!({
        "merged": out,
        "jobs": merged.expected.len(),
        "done": merged.done.len(),
        "missing": merged.missing,
        "missing_shards": merged.missing_shards,
        "duplicated": merged.duplicated.keys().collect::<Vec<_>>(),
        "failed": merged.failed,
        "lost_outputs": merged.lost_outputs,
    });
    if json_out {
        println!("{summary}");
    }
    eprintln!("{} of {} jobs done; merged manifest: {}", merged.done.len(), merged.expected.len(), out.display());
    let list = |ids: &[String]| {
        let shown: Vec<&str> = ids.iter().take(20).map(String::as_str).collect();
        format!("{}{}", shown.join(", "), if ids.len() > 20 { format!(" and {} more", ids.len() - 20) } else { String::new() })
    };
    let mut problems = Vec::new();
    if !merged.missing_shards.is_empty() {
        problems.push(format!("shard(s) {:?} left no manifest (never ran, or wrote to another folder)", merged.missing_shards));
    }
    if !merged.missing.is_empty() {
        problems.push(format!("{} job(s) never finished: {}", merged.missing.len(), list(&merged.missing)));
    }
    if !merged.failed.is_empty() {
        let ids: Vec<String> = merged.failed.keys().cloned().collect();
        problems.push(format!("{} job(s) failed: {} (rerun their shard with --retry-failed)", ids.len(), list(&ids)));
    }
    if !merged.duplicated.is_empty() {
        let ids: Vec<String> = merged.duplicated.keys().cloned().collect();
        problems.push(format!("{} job(s) done more than once: {}", ids.len(), list(&ids)));
    }
    if !merged.lost_outputs.is_empty() {
        let ids: Vec<String> = merged.lost_outputs.keys().cloned().collect();
        problems.push(format!("{} done job(s) whose outputs are missing or empty: {}", ids.len(), list(&ids)));
    }
    if !merged.complete() {
        bail!("the batch is not complete: {}", problems.join("; "));
    }
    Ok(())
}
