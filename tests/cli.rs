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

#[test]
fn pending_commands_say_so_and_fail() {
    for cmd in ["batch", "studio"] {
        let out = stipple(&[cmd]);
        assert_eq!(out.status.code(), Some(2), "{cmd}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("not implemented yet") && err.contains("issue #"), "{cmd}: {err}");
    }
    let out = stipple(&["--json", "batch", "jobs.toml"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("one JSON object on stdout");
    assert!(v["error"].as_str().unwrap().contains("issue #6"));
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
    assert!(String::from_utf8_lossy(&bad_device.stderr).contains("cpu or cuda:N"));
}
