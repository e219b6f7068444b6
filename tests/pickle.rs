//! Pickle checkpoints are refused everywhere a weight file can be given, with a message that
//! says how to convert them, and nothing ever unpickles them: `tests/fixtures/pickle/evil.ckpt`
//! (made by `tools/make_pickle_fixture.py`) would create `STIPPLE_PICKLE_RAN` in the working
//! directory if it were unpickled.

use std::path::{Path, PathBuf};
use std::process::Command;

const MARKER: &str = "STIPPLE_PICKLE_RAN";

fn evil() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pickle/evil.ckpt")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stipple-pickle-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The fixture is live: Python's own unpickler runs its payload (so the checks below could
/// fail if stipple unpickled it). Skipped where no python3 is installed.
#[test]
fn the_fixture_would_run_its_payload() {
    let dir = scratch("python");
    let loaded = Command::new("python3").arg("-c").arg(format!("import pickle; pickle.load(open({:?}, 'rb'))", evil().display().to_string())).current_dir(&dir).status();
    if loaded.is_ok() {
        assert!(dir.join(MARKER).exists(), "unpickling the fixture did not run its payload");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn pickles_are_refused_and_never_run() {
    let dir = scratch("refused");
    let copy = |name: &str| {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).unwrap();
        }
        std::fs::copy(evil(), &p).unwrap();
        p.display().to_string()
    };
    let ckpt = copy("evil.ckpt");
    let disguised = copy("model.safetensors");
    let pth = copy("taesd.pth");
    // a transformers folder whose only weights are a pickle
    copy("folder/pytorch_model.bin");
    std::fs::write(dir.join("folder/config.json"), "{}").unwrap();
    let folder = dir.join("folder").display().to_string();
    let cases: Vec<Vec<&str>> = vec![
        vec!["text", "hi", "--model", &ckpt],
        vec!["text", "hi", "--model", &folder],
        vec!["image", "x", "--model", &ckpt, "--out", "x.png"],
        vec!["image", "x", "--model", &disguised, "--out", "x.png"],
        vec!["image", "x", "--taesd", &pth, "--out", "x.png"],
        vec!["audio", "x", "--model", &ckpt, "--out", "x.wav"],
    ];
    for args in &cases {
        let out = Command::new(env!("CARGO_BIN_EXE_stipple")).args(args).current_dir(&dir).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("pickle") && err.contains("never unpickles") && err.contains("safetensors"), "{args:?}: {err}");
        assert!(!dir.join(MARKER).exists(), "{args:?} ran the pickle's payload");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
