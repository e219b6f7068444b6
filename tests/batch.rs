//! `stipple batch` at scale: a batch killed with SIGKILL and run again does every good job
//! exactly once with valid outputs equal to an uninterrupted run's; shards give the same
//! outputs as one process; `batch merge` finds missing and duplicated jobs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

fn stipple() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stipple"));
    // the test's own batches must not be taken for array tasks when CI runs under SLURM
    for var in ["SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT", "SLURM_ARRAY_TASK_MIN", "JOB_COMPLETION_INDEX", "STIPPLE_SHARD_COUNT"] {
        c.env_remove(var);
    }
    c.env("RAYON_NUM_THREADS", "2");
    c
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stipple-batch-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A mixed batch on the embedded models: every kind, one line that cannot run, and a run of
/// four compatible image jobs (i4..i7) that `--group 4` makes as one model batch.
const MIXED: &str = r#"{"id": "t1", "kind": "text", "prompt": "Call me Ishmael.", "gen_len": 16}
{"id": "i1", "kind": "image", "prompt": "a red heart", "steps": 12}
{"kind": "infill", "template": "The [1 {whale,ship}] was [2..4]."}
{"id": "a1", "kind": "audio", "prompt": "a slow piano melody", "steps": 6}
{"id": "bad", "kind": "image", "steps": "many"}
{"id": "i2", "kind": "image", "prompt": "a smiling fox face", "steps": 12, "guidance": 9}
{"id": "i4", "kind": "image", "prompt": "a blue star", "steps": 12}
{"id": "i5", "kind": "image", "prompt": "a yellow sun", "steps": 12}
{"id": "i6", "kind": "image", "prompt": "a pink flower", "steps": 12}
{"id": "i7", "kind": "image", "prompt": "a black cat", "steps": 12}
{"id": "t2", "kind": "text", "prompt": ["To be, or not to be", "The whale"], "gen_len": 16, "seed": 7}
{"id": "i3", "kind": "image", "prompt": "a green tree", "steps": 12, "batch": 2}
{"id": "a2", "kind": "audio", "prompt": "drums", "steps": 6, "loop": true}
"#;

/// The good jobs of MIXED and their outputs.
const GOOD: [(&str, &[&str]); 12] = [
    ("t1", &["t1.txt"]),
    ("i1", &["i1.png"]),
    ("3", &["3.txt"]),
    ("a1", &["a1.wav", "a1.png"]),
    ("i2", &["i2.png"]),
    ("i4", &["i4.png"]),
    ("i5", &["i5.png"]),
    ("i6", &["i6.png"]),
    ("i7", &["i7.png"]),
    ("t2", &["t2-1.txt", "t2-2.txt"]),
    ("i3", &["i3-1.png", "i3-2.png"]),
    ("a2", &["a2.wav", "a2.png"]),
];

fn records(dir: &Path, manifest: &str) -> Vec<Value> {
    std::fs::read_to_string(dir.join(manifest)).unwrap_or_default().lines().map(|l| serde_json::from_str(l).expect("whole records")).collect()
}

fn done_count(records: &[Value], id: &str) -> usize {
    records.iter().filter(|r| r["id"] == id && r["status"] == "done").count()
}

/// Every output file of a folder (not the manifests), by name.
fn outputs(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with("manifest") && !p.file_name().unwrap().to_string_lossy().starts_with("merged"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect()
}

/// The outputs are what they claim to be: PNGs decode, WAVs hold audio, texts are not empty.
fn check_valid(files: &BTreeMap<String, Vec<u8>>) {
    for (name, bytes) in files {
        assert!(!name.ends_with(".tmp") && !name.starts_with('.'), "temporary file left: {name}");
        if name.ends_with(".png") {
            let img = image::load_from_memory(bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(img.width() > 0, "{name}");
        } else if name.ends_with(".wav") {
            let r = hound::WavReader::new(std::io::Cursor::new(bytes)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(r.duration() > 1000, "{name}");
        } else if name.ends_with(".txt") {
            assert!(!String::from_utf8_lossy(bytes).trim().is_empty(), "{name} is empty");
        }
    }
}

#[test]
fn a_killed_batch_resumes_and_does_every_job_exactly_once() {
    let dir = scratch("kill");
    let jobs = dir.join("jobs.jsonl");
    std::fs::write(&jobs, MIXED).unwrap();
    let (killed, whole) = (dir.join("killed"), dir.join("whole"));

    // uninterrupted, for comparison
    let out = stipple().args(["batch", jobs.to_str().unwrap(), "--out", whole.to_str().unwrap(), "--group", "4"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    let whole_records = records(&whole, "manifest.jsonl");
    let joined = whole_records.iter().filter(|r| r["status"] == "done" && r["result"]["batched_with"] == 4).count();
    assert_eq!(joined, 4, "i4..i7 are made as one batch");

    // killed once two jobs are done (SIGKILL: no chance to clean up), then killed again
    // right after the restart, then run to the end
    for wait_for_done in [2, 4] {
        let mut child = stipple().args(["batch", jobs.to_str().unwrap(), "--out", killed.to_str().unwrap(), "--group", "4"]).stderr(Stdio::null()).spawn().unwrap();
        let t = Instant::now();
        loop {
            let recs = records(&killed, "manifest.jsonl");
            if recs.iter().filter(|r| r["status"] == "done").count() >= wait_for_done {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(300), "the batch made no progress");
            assert!(child.try_wait().unwrap().is_none(), "the batch ended before it was killed");
            std::thread::sleep(Duration::from_millis(20));
        }
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
    }
    let recs = records(&killed, "manifest.jsonl");
    assert!(recs.iter().filter(|r| r["status"] == "done").count() < GOOD.len(), "the kill came too late to test anything");
    let out = stipple().args(["--json", "batch", jobs.to_str().unwrap(), "--out", killed.to_str().unwrap(), "--group", "4"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "the bad line makes the batch fail: {stderr}");
    assert!(stderr.contains("1 of 13 job(s) failed (ids bad)"), "{stderr}");
    let summary: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().rev().nth(1).unwrap()).unwrap();
    assert!(summary["done_earlier"].as_u64().unwrap() >= 4, "{summary}");

    let recs = records(&killed, "manifest.jsonl");
    for (id, files) in GOOD {
        assert_eq!(done_count(&recs, id), 1, "job {id} done once");
        let done = recs.iter().find(|r| r["id"] == id && r["status"] == "done").unwrap();
        assert_eq!(done["outputs"], serde_json::json!(files), "{id}");
    }
    let bad: Vec<&Value> = recs.iter().filter(|r| r["id"] == "bad").collect();
    assert!(bad.iter().all(|r| r["status"] != "done") && bad.last().unwrap()["status"] == "failed");
    assert!(bad.last().unwrap()["error"].as_str().unwrap().contains("invalid value 'many'"), "{:?}", bad.last());

    // the same files, byte for byte, as the uninterrupted run; all valid; nothing temporary
    let (a, b) = (outputs(&killed), outputs(&whole));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name} differs from the uninterrupted run's");
    }
    check_valid(&a);

    // a rerun does nothing; --retry-failed runs the bad line again (and it fails again)
    let out = stipple().args(["--json", "batch", jobs.to_str().unwrap(), "--out", killed.to_str().unwrap()]).output().unwrap();
    let summary: Value = serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().next().unwrap()).unwrap();
    assert_eq!((summary["done"].as_u64(), summary["done_earlier"].as_u64(), summary["failed_earlier"].clone()), (Some(0), Some(12), serde_json::json!(["bad"])));
    let out = stipple().args(["--json", "batch", "--retry-failed", jobs.to_str().unwrap(), "--out", killed.to_str().unwrap()]).output().unwrap();
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["id"], "bad");
    assert_eq!(lines[1]["failed"], serde_json::json!(["bad"]));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn shards_give_the_outputs_of_one_process_and_merge_checks_them() {
    let dir = scratch("shards");
    let jobs = dir.join("jobs.jsonl");
    let good: String = MIXED.lines().filter(|l| !l.contains("\"bad\"")).map(|l| format!("{l}\n")).collect();
    std::fs::write(&jobs, good).unwrap();
    let (sharded, whole) = (dir.join("sharded"), dir.join("whole"));
    let out = stipple().args(["--seed", "3", "batch", jobs.to_str().unwrap(), "--out", whole.to_str().unwrap(), "--group", "4"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // shard 1 by flag, 2 as a SLURM array task, 3 as a Kubernetes Indexed Job
    let run = |extra: &[&str], env: &[(&str, &str)]| {
        let out = stipple().envs(env.iter().copied()).args(["--seed", "3", "batch", jobs.to_str().unwrap(), "--out", sharded.to_str().unwrap(), "--group", "4"]).args(extra).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    run(&["--shard", "1/3"], &[]);
    run(&[], &[("SLURM_ARRAY_TASK_ID", "1"), ("SLURM_ARRAY_TASK_COUNT", "3"), ("SLURM_ARRAY_TASK_MIN", "0")]);
    // merge before the last shard ran: its jobs are missing
    let out = stipple().args(["--json", "batch", "merge", sharded.to_str().unwrap()]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let report: Value = serde_json::from_slice(&out.stdout[..out.stdout.iter().position(|&b| b == b'\n').unwrap()]).unwrap();
    assert_eq!(report["missing_shards"], serde_json::json!([3]), "{report}");
    run(&[], &[("JOB_COMPLETION_INDEX", "2"), ("STIPPLE_SHARD_COUNT", "3")]);
    for i in 1..=3 {
        assert!(sharded.join(format!("manifest-{i}-of-3.jsonl")).is_file());
    }
    let (a, b) = (outputs(&sharded), outputs(&whole));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (name, bytes) in &a {
        assert!(bytes == &b[name], "{name}: the sharded run's output differs");
    }
    check_valid(&a);
    let out = stipple().args(["--json", "batch", "merge", sharded.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((report["jobs"].as_u64(), report["done"].as_u64()), (Some(12), Some(12)), "{report}");
    assert_eq!(std::fs::read_to_string(sharded.join("merged.jsonl")).unwrap().lines().count(), 12);
    // i4..i7 (jobs 6 to 9 of 12) straddle the boundary of shards 2 and 3 and stay together
    let shard2 = records(&sharded, "manifest-2-of-3.jsonl");
    assert!(["i4", "i5", "i6", "i7"].iter().all(|id| done_count(&shard2, id) == 1), "the group runs in the shard it starts in");
    // a job done twice (a shard's manifest copied into a second folder), and a lost output
    let copy = dir.join("copy");
    std::fs::create_dir_all(&copy).unwrap();
    std::fs::copy(sharded.join("manifest-2-of-3.jsonl"), copy.join("manifest-2-of-3.jsonl")).unwrap();
    std::fs::remove_file(sharded.join("i4.png")).unwrap();
    let out = stipple().args(["batch", "merge", sharded.to_str().unwrap(), copy.to_str().unwrap()]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("done more than once") && err.contains("outputs are missing or empty: i4"), "{err}");
    // a shard of another batch is refused
    std::fs::write(&jobs, "{\"id\": \"x\", \"kind\": \"text\", \"prompt\": \"x\", \"gen_len\": 8}\n").unwrap();
    let other = dir.join("other");
    let out = stipple().args(["batch", jobs.to_str().unwrap(), "--out", other.to_str().unwrap(), "--shard", "1/3"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = stipple().args(["batch", "merge", sharded.to_str().unwrap(), other.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("belongs to another batch"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
}

/// The Kubernetes example names its shard count twice (the Job's completions, and
/// STIPPLE_SHARD_COUNT for stipple): they must agree, and its command must be a batch run.
#[test]
fn the_kubernetes_example_is_consistent() {
    let yaml = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/k8s/stipple-batch-job.yaml")).unwrap();
    // the value on the line after (or of) the first non-comment line starting with `key`
    let value = |key: &str, next: usize| {
        let mut lines = yaml.lines().map(str::trim).filter(|l| !l.starts_with('#')).skip_while(|l| !l.starts_with(key));
        let line = lines.nth(next).unwrap_or_else(|| panic!("{key} in the example"));
        line.split_once(':').unwrap().1.split('#').next().unwrap().trim().trim_matches('"').to_string()
    };
    let (completions, count) = (value("completions:", 0), value("- name: STIPPLE_SHARD_COUNT", 1));
    assert_eq!(completions, count);
    assert!(yaml.contains("completionMode: Indexed") && yaml.contains("\"batch\", \"/data/jobs.jsonl\", \"--out\""), "{yaml}");
}

#[test]
fn defaults_apply_under_each_jobs_own_fields() {
    let dir = scratch("defaults");
    let jobs = dir.join("jobs.jsonl");
    std::fs::write(&jobs, "{\"id\": \"a\", \"kind\": \"image\", \"prompt\": \"a red heart\"}\n{\"id\": \"b\", \"kind\": \"image\", \"prompt\": \"a red heart\", \"steps\": 3}\n{\"id\": \"c\", \"kind\": \"text\", \"prompt\": \"Hi\"}\n").unwrap();
    let defaults = dir.join("defaults.toml");
    std::fs::write(&defaults, "steps = 2\n[text]\ngen_len = 8\n[image]\nguidance = 3.0\n").unwrap();
    let out = stipple().args(["--json", "batch", jobs.to_str().unwrap(), "--out", dir.join("out").to_str().unwrap(), "--defaults", defaults.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!((lines[0]["result"]["steps"].as_u64(), lines[0]["result"]["guidance"].as_f64()), (Some(2), Some(3.0)));
    assert_eq!(lines[1]["result"]["steps"].as_u64(), Some(3));
    assert_eq!((lines[2]["result"]["nfe"].as_u64(), lines[2]["result"]["generated_ids"].as_array().map(Vec::len)), (Some(2), Some(8)));
    // one model load per model, reused across jobs
    assert_eq!(lines[3]["models_loaded"].as_u64(), Some(2), "{}", lines[3]);
    // a field no kind has is refused before any work
    std::fs::write(&defaults, "stepz = 2\n").unwrap();
    let out = stipple().args(["batch", jobs.to_str().unwrap(), "--out", dir.join("out2").to_str().unwrap(), "--defaults", defaults.to_str().unwrap()]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"stepz\" is not a field of any job kind"), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&dir).ok();
}
