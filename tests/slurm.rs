//! The SLURM example on a real cluster: `examples/slurm/stipple-array.sbatch` submitted as
//! a 4-task array over the mixed example batch, then `stipple batch merge`. Needs a running
//! cluster: CI starts a one-node one with `tools/slurm/start.sh` and sets
//! `STIPPLE_REQUIRE_SLURM=1`, so there a missing cluster fails the test; elsewhere the test
//! says it did not run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cluster_is_up() -> bool {
    Command::new("scontrol").arg("ping").output().is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("UP"))
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Submits the example array script over `jobs` into `out` and waits (at most 5 minutes)
/// for every task to end; returns the array's job id.
fn submit_and_wait(dir: &Path, jobs: &Path, out: &Path) -> String {
    let id = run(Command::new("sbatch")
        .args(["--parsable", "--array=0-3", "--gres=none", "--cpus-per-task=1", "--mem=2G", "--time=10:00"])
        .arg(format!("--output={}/log-%A_%a.txt", dir.display()))
        .arg(format!("--chdir={}", dir.display()))
        .arg(root().join("examples/slurm/stipple-array.sbatch"))
        .args([jobs, out])
        .env("STIPPLE", env!("CARGO_BIN_EXE_stipple"))
        .env("RAYON_NUM_THREADS", "1"))
    .trim()
    .to_string();
    let t = Instant::now();
    while !run(Command::new("squeue").args(["-h", "-j", &id])).trim().is_empty() {
        if t.elapsed() > Duration::from_secs(300) {
            let _ = Command::new("scancel").arg(&id).status();
            panic!("the array job {id} did not finish in 5 minutes");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    id
}

#[test]
fn the_example_array_job_does_every_job_once_on_a_real_cluster() {
    if !cluster_is_up() {
        assert!(std::env::var_os("STIPPLE_REQUIRE_SLURM").is_none(), "STIPPLE_REQUIRE_SLURM is set but no SLURM cluster answers `scontrol ping` (start one: tools/slurm/start.sh)");
        eprintln!("not run: no SLURM cluster answers `scontrol ping` (tools/slurm/start.sh starts a local one)");
        return;
    }
    let dir = std::env::temp_dir().join(format!("stipple-slurm-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // the tasks run as the submitting user, but in case that is not the owner of /tmp's entries
    std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
    let jobs = root().join("examples/jobs.jsonl");
    let (out, whole) = (dir.join("out"), dir.join("whole"));

    let id = submit_and_wait(&dir, &jobs, &out);
    let states = run(Command::new("scontrol").args(["show", "job", &id, "-o"]));
    let completed = states.matches("JobState=COMPLETED").count();
    assert_eq!(completed, 4, "every task completes: {states}");
    for task in 0..4 {
        let log = std::fs::read_to_string(dir.join(format!("log-{id}_{task}.txt"))).unwrap();
        assert!(log.contains(&format!("stipple task {task} of 4")), "{log}");
        assert!(out.join(format!("manifest-{}-of-4.jsonl", task + 1)).is_file(), "{log}");
    }

    // merged: every job of the file done exactly once, its outputs there
    let report = run(Command::new(env!("CARGO_BIN_EXE_stipple")).args(["--json", "batch", "merge"]).arg(&out));
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    let job_count = std::fs::read_to_string(&jobs).unwrap().lines().filter(|l| l.trim_start().starts_with('{')).count();
    assert_eq!((report["jobs"].as_u64(), report["done"].as_u64()), (Some(job_count as u64), Some(job_count as u64)), "{report}");
    let merged: Vec<serde_json::Value> = std::fs::read_to_string(out.join("merged.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(merged.len(), job_count);
    let mut kinds: Vec<&str> = merged.iter().map(|r| r["params"]["kind"].as_str().unwrap()).collect();
    kinds.sort();
    kinds.dedup();
    assert_eq!(kinds, ["audio", "image", "infill", "text"], "a mixed batch");

    // the same bytes as one process running the whole file; valid files
    run(Command::new(env!("CARGO_BIN_EXE_stipple")).args(["batch"]).arg(&jobs).arg("--out").arg(&whole));
    for record in &merged {
        for name in record["outputs"].as_array().unwrap() {
            let name = name.as_str().unwrap();
            let (a, b) = (std::fs::read(out.join(name)).unwrap(), std::fs::read(whole.join(name)).unwrap());
            assert!(a == b, "{name}: the array's output differs from one process's");
            match name.rsplit('.').next() {
                Some("png") => assert!(image::load_from_memory(&a).is_ok(), "{name}"),
                Some("wav") => assert!(hound::WavReader::new(std::io::Cursor::new(&a)).unwrap().duration() > 0, "{name}"),
                _ => assert!(!String::from_utf8_lossy(&a).trim().is_empty(), "{name}"),
            }
        }
    }
    assert!(std::fs::read_dir(&out).unwrap().all(|e| !e.unwrap().file_name().to_string_lossy().ends_with(".tmp")));

    // submitted again, the array resumes: nothing is done twice
    let id = submit_and_wait(&dir, &jobs, &out);
    for task in 0..4 {
        let log = std::fs::read_to_string(dir.join(format!("log-{id}_{task}.txt"))).unwrap();
        assert!(log.contains("0 job(s) done") && !log.contains("failed:"), "{log}");
    }
    run(Command::new(env!("CARGO_BIN_EXE_stipple")).args(["batch", "merge"]).arg(&out));
    std::fs::remove_dir_all(&dir).ok();
}
