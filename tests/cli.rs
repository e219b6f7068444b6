//! The `stipple` binary's contract: subcommands, global options, exit codes and `--json`.

use std::process::Command;

fn stipple(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stipple")).args(args).output().expect("run stipple")
}

#[test]
fn help_lists_every_subcommand_and_global_option() {
    let out = stipple(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for word in ["text", "infill", "image", "audio", "batch", "studio", "bench", "--device", "--dtype", "--seed", "--json"] {
        assert!(help.contains(word), "--help lacks {word}:\n{help}");
    }
}

/// The default build has no windowing stack: `stipple studio` says how to build it.
#[cfg(not(feature = "studio"))]
#[test]
fn studio_without_the_feature_says_how_to_build_it() {
    let out = stipple(&["studio"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--features studio"), "{err}");
    let out = stipple(&["--json", "studio"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert!(v["error"].as_str().unwrap().contains("studio"));
}

#[test]
fn schedule_json_matches_the_core() {
    let out = stipple(&["--json", "schedule", "--preset", "sd-turbo", "--scheduler", "euler", "--steps", "4"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let ts: Vec<f64> = serde_json::from_value(v["timesteps"].clone()).unwrap();
    assert_eq!(ts, vec![999.0, 749.0, 499.0, 249.0]);
    assert_eq!(v["sigmas"].as_array().unwrap().len(), 5);
    let out = stipple(&["--json", "schedule", "--scheduler", "heun", "--steps", "3"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["model_calls"], 5);
}

#[test]
fn bad_input_gets_a_clear_error_not_a_panic() {
    let cases: &[(&[&str], &str)] = &[
        (&["schedule", "--scheduler", "euler-z"], "unknown sampler"),
        (&["schedule", "--scheduler", "euler-a", "--sigmas", "karras"], "does not take Karras"),
        (&["schedule", "--steps", "0"], "at least 1"),
        (&["schedule", "--config", "/nonexistent/scheduler_config.json"], "nonexistent"),
        (&["schedule", "--preset", "sd3", "--scheduler", "lcm"], "flow-matching"),
        (&["schedule", "--preset", "sd15", "--scheduler", "flow-euler"], "flow-matching config"),
        (&["--device", "cuda:0", "schedule"], "without CUDA"),
    ];
    for (args, needle) in cases {
        let out = stipple(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        if !needle.is_empty() {
            assert!(!out.status.success(), "{args:?} should fail");
            assert!(err.contains(needle), "{args:?}: {err}");
        }
    }
    let bad_device = stipple(&["--device", "gpu", "schedule"]);
    assert!(!bad_device.status.success());
    assert!(String::from_utf8_lossy(&bad_device.stderr).contains("cpu, cuda:N or auto"));
}

/// `stipple batch` runs each line as a command with the batch's global options, goes on
/// past a failing line (or stops at it with --fail-fast) and reports the failures.
#[test]
fn batch_runs_lines_in_order_and_reports_failures() {
    let dir = std::env::temp_dir().join(format!("stipple-batch-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let jobs = dir.join("jobs.txt");
    let out_dir = |name: &str| dir.join(name).display().to_string();
    std::fs::write(&jobs, "# two schedules and a bad line\nschedule --preset sd15 --scheduler euler --steps 3\n\nschedule --scheduler 'dpm++2m' --steps 2\nschedule --scheduler nonsense\nschedule --steps 4\n").unwrap();
    let out = stipple(&["--json", "batch", jobs.to_str().unwrap(), "--out", &out_dir("a")]);
    assert_eq!(out.status.code(), Some(2));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // four job records (ids are line numbers), the summary, the batch's own error
    assert_eq!(lines.len(), 6, "{lines:?}");
    assert_eq!((lines[0]["id"].as_str(), lines[0]["result"]["steps"].as_u64()), (Some("2"), Some(3)));
    assert!(lines[1]["result"]["scheduler"].as_str().unwrap().to_lowercase().contains("dpm"));
    assert_eq!((lines[2]["id"].as_str(), lines[2]["status"].as_str()), (Some("5"), Some("failed")));
    assert_eq!(lines[3]["result"]["steps"], 4);
    assert_eq!(lines[4]["failed"], serde_json::json!(["5"]));
    assert!(lines[5]["error"].as_str().unwrap().contains("1 of 4 job(s) failed (ids 5)"));
    // --fail-fast stops at the failure: line 6 never runs
    let out = stipple(&["--json", "batch", "--fail-fast", jobs.to_str().unwrap(), "--out", &out_dir("b")]);
    assert_eq!(out.status.code(), Some(2));
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 5, "line 6 ran: {lines:?}");
    std::fs::write(&jobs, "text --gen-len 'unterminated\n").unwrap();
    let err = String::from_utf8_lossy(&stipple(&["batch", jobs.to_str().unwrap(), "--out", &out_dir("c")]).stderr).to_string();
    assert!(err.contains("line 1: unbalanced quotes"), "{err}");
    std::fs::write(&jobs, "batch other.txt\n").unwrap();
    let err = String::from_utf8_lossy(&stipple(&["batch", jobs.to_str().unwrap(), "--out", &out_dir("d")]).stderr).to_string();
    assert!(err.contains("cannot run inside a batch"), "{err}");
    // the output folder is asked for, not assumed
    let err = String::from_utf8_lossy(&stipple(&["batch", jobs.to_str().unwrap()]).stderr).to_string();
    assert!(err.contains("--out DIR"), "{err}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Batch jobs write inside --out-dir and cannot leave it.
#[test]
fn batch_outputs_cannot_escape_their_folder() {
    let dir = std::env::temp_dir().join(format!("stipple-batch-escape-{}", std::process::id()));
    let outside = std::env::temp_dir().join(format!("stipple-batch-escape-{}-outside.png", std::process::id()));
    std::fs::create_dir_all(dir.join("out")).unwrap();
    let jobs = dir.join("jobs.txt");
    let lines = [
        "image 'a heart' --steps 1 --out ok.png".to_string(),
        format!("image 'a heart' --steps 1 --out ../stipple-batch-escape-{}-outside.png", std::process::id()),
        format!("image 'a heart' --steps 1 --out {}", outside.display()),
        "audio 'a beat' --steps 1 --out ../../x.wav".to_string(),
        "image 'a heart' --steps 1 --out-dir /tmp --out y.png".to_string(),
    ];
    std::fs::write(&jobs, lines.join("\n")).unwrap();
    let out = stipple(&["batch", "--out-dir", dir.join("out").to_str().unwrap(), jobs.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(dir.join("out/ok.png").is_file(), "{err}");
    assert!(err.contains("4 of 5 job(s) failed (ids 2, 3, 4, 5)"), "{err}");
    assert_eq!(err.lines().filter(|l| l.contains("] job ") && l.contains("outputs must stay inside")).count(), 3, "{err}");
    assert!(err.contains("--out-dir is the batch's own option"), "{err}");
    assert!(!outside.exists());
    let mut written: Vec<String> = std::fs::read_dir(dir.join("out")).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    written.sort();
    assert_eq!(written, ["manifest.jsonl", "ok.png"]);
    std::fs::remove_dir_all(&dir).ok();
}
