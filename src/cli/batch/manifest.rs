//! The batch manifest, `DIR/manifest.jsonl` (`manifest-I-of-N.jsonl` for a shard): one JSON
//! record per line, appended and flushed to disk as the batch goes, so a batch killed at any
//! moment resumes from it. A run starts with a `batch` record (its shard and job ids); each
//! job gets `started`, then `done` (outputs, seed, timing, summary) or `failed` (the error).
//! The last record of a job is its state.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::shard::Shard;

/// The state of a job in the manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Began and never finished: the process was killed while it ran.
    Started,
    /// Finished; its outputs are in place.
    Done,
    /// Failed, with the error recorded.
    Failed,
}

impl Status {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "started" => Some(Status::Started),
            "done" => Some(Status::Done),
            "failed" => Some(Status::Failed),
            _ => None,
        }
    }
}

/// The file name of the manifest of `shard`.
pub fn file_name(shard: Option<Shard>) -> String {
    match shard {
        None => "manifest.jsonl".into(),
        Some(s) => format!("manifest-{}-of-{}.jsonl", s.index, s.count),
    }
}

/// The records of a manifest file, in order (a last line cut short by a kill is dropped).
pub fn read_records(path: &Path) -> Result<Vec<Value>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut records = Vec::new();
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if !line.ends_with('\n') {
            break; // a record being written when the process died
        }
        let record: Value = serde_json::from_str(line).with_context(|| format!("{}:{}: not a manifest record", path.display(), i + 1))?;
        records.push(record);
    }
    Ok(records)
}

/// A job's last record (its state) and the parameters it ran with.
#[derive(Clone, Debug)]
pub struct JobState {
    /// Its state.
    pub status: Status,
    /// The record itself.
    pub record: Value,
}

/// The last record of every job in `records`.
pub fn job_states(records: &[Value]) -> HashMap<String, JobState> {
    let mut states = HashMap::new();
    for r in records {
        if let (Some("job"), Some(id), Some(status)) = (r["record"].as_str(), r["id"].as_str(), r["status"].as_str().and_then(Status::parse)) {
            states.insert(id.to_string(), JobState { status, record: r.clone() });
        }
    }
    states
}

/// An open manifest: what earlier runs recorded, and the file new records go to.
pub struct Manifest {
    path: PathBuf,
    file: File,
    /// The state of every job earlier runs recorded.
    pub earlier: HashMap<String, JobState>,
}

impl Manifest {
    /// Opens (or creates) the manifest at `path`, reading what earlier runs recorded and
    /// cutting off a record a kill left half-written. The file stays locked while this
    /// run holds it: a second run of the same batch (and shard) into the same folder is
    /// refused instead of doing the jobs twice.
    pub fn open(path: &Path) -> Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                anyhow::bail!("{} is in use: another `stipple batch` is running this batch (or shard) into the same folder", path.display())
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(e).with_context(|| format!("locking {}", path.display())),
        }
        let records = read_records(path)?;
        let earlier = job_states(&records);
        if let Ok(text) = std::fs::read(path) {
            let whole = text.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            if whole < text.len() {
                let f = OpenOptions::new().write(true).open(path).with_context(|| format!("opening {}", path.display()))?;
                f.set_len(whole as u64).with_context(|| format!("repairing {}", path.display()))?;
            }
        }
        Ok(Self { path: path.to_path_buf(), file, earlier })
    }

    /// Appends `record` as one line and flushes it to disk before returning: once this
    /// returns, a kill cannot lose it.
    pub fn append(&mut self, record: &Value) -> Result<()> {
        let mut line = serde_json::to_vec(record)?;
        line.push(b'\n');
        self.file.write_all(&line).and_then(|()| self.file.sync_data()).with_context(|| format!("writing {}", self.path.display()))
    }
}

/// The first record of a run: which shard of which batch it is, and the jobs it owns.
pub fn batch_record(jobs_file: &Path, fingerprint: &str, shard: Option<Shard>, total: usize, ids: &[&str]) -> Value {
    json!({
        "record": "batch",
        "jobs_file": jobs_file,
        "fingerprint": fingerprint,
        "shard": shard.map(|s| json!([s.index, s.count])),
        "total_jobs": total,
        "ids": ids,
        "host": gethostname::gethostname().to_string_lossy(),
        "pid": std::process::id(),
        "started": now(),
    })
}

/// Seconds since the Unix epoch, as a record's time stamp.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

/// A fingerprint of a batch's jobs (ids, parameters, seeds, in order): shards of one batch
/// share it, and `batch merge` refuses manifests of different batches.
pub fn fingerprint<'a>(jobs: impl Iterator<Item = (&'a str, &'a Value, u64)>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for &b in bytes {
            h = (h ^ b as u64).wrapping_mul(0x0000_0100_0000_01B3);
        }
    };
    for (id, params, seed) in jobs {
        eat(id.as_bytes());
        eat(&[0]);
        eat(params.to_string().as_bytes());
        eat(&seed.to_le_bytes());
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_record_cut_short_is_dropped_and_repaired() {
        let dir = std::env::temp_dir().join(format!("stipple-manifest-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("manifest.jsonl");
        std::fs::write(&path, "{\"record\":\"job\",\"id\":\"a\",\"status\":\"done\"}\n{\"record\":\"job\",\"id\":\"b\",\"sta").unwrap();
        let mut m = Manifest::open(&path).unwrap();
        assert_eq!(m.earlier.len(), 1);
        assert_eq!(m.earlier["a"].status, Status::Done);
        m.append(&json!({"record": "job", "id": "b", "status": "failed"})).unwrap();
        // one run at a time
        assert!(Manifest::open(&path).err().expect("locked").to_string().contains("is in use"));
        drop(m);
        let records = read_records(&path).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(job_states(&records)["b"].status, Status::Failed);
        std::fs::remove_dir_all(&dir).ok();
    }
}
