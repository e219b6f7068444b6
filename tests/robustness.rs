//! Every input of `tests/robustness_cases.txt` run through the binary: none panics, each
//! ends with status 0 (a good input) or 2 (refused), a refusal says what is wrong, and
//! nothing is written outside the scratch folder. The run's table goes to
//! `target/robustness-table.md` (the one in `docs/robustness.md`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.path().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

fn head(from: &Path, to: &Path, n: usize) {
    let bytes = std::fs::read(from).unwrap();
    std::fs::write(to, &bytes[..n.min(bytes.len())]).unwrap();
}

/// The broken files the cases name under `$T`.
fn scratch() -> PathBuf {
    let t = std::env::temp_dir().join(format!("stipple-robustness-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&t);
    std::fs::create_dir_all(t.join("outputs")).unwrap();
    std::fs::create_dir_all(t.join("cwd")).unwrap();
    let r = root();
    let llada = r.join("text/tests/fixtures/llada-tiny");
    std::fs::create_dir_all(t.join("pickle-folder")).unwrap();
    std::fs::write(t.join("pickle-folder/config.json"), "{}").unwrap();
    std::fs::copy(r.join("tests/fixtures/pickle/evil.ckpt"), t.join("pickle-folder/pytorch_model.bin")).unwrap();
    head(&r.join("text/tests/fixtures/gguf/llada-tiny-q8_0.gguf"), &t.join("truncated.gguf"), 100);
    copy_dir(&llada, &t.join("garbage-config"));
    std::fs::write(t.join("garbage-config/config.json"), "{not json").unwrap();
    copy_dir(&llada, &t.join("truncated-weights"));
    head(&llada.join("model.safetensors"), &t.join("truncated-weights/model.safetensors"), 4000);
    head(&r.join("image/tests/fixtures/sd1-tiny.safetensors"), &t.join("truncated.safetensors"), 2000);
    std::fs::create_dir_all(t.join("garbage-pipeline")).unwrap();
    std::fs::write(t.join("garbage-pipeline/model_index.json"), "garbage").unwrap();
    std::fs::copy(r.join("image/tests/fixtures/init.png"), t.join("existing.png")).unwrap();
    candle_core::Tensor::zeros((1, 4, 3, 3), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap().write_npy(t.join("bad.npy")).unwrap();
    head(&r.join("audio/tests/fixtures/beat.wav"), &t.join("truncated.wav"), 30);
    // a .npy header claiming 10^18 values over 16 bytes of data
    let header = "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000, 1000000000), }";
    let header = format!("{header}{}\n", " ".repeat(63 - (10 + header.len()) % 64));
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    npy.extend((header.len() as u16).to_le_bytes());
    npy.extend(header.as_bytes());
    npy.extend([0u8; 16]);
    std::fs::write(t.join("huge.npy"), npy).unwrap();
    std::fs::write(t.join("bad-params.json"), r#"{"sample_rate": 0}"#).unwrap();
    std::fs::write(t.join("empty-jobs.txt"), "# nothing to do\n").unwrap();
    std::fs::write(t.join("bad-jobs.txt"), "text 'oops\n").unwrap();
    std::fs::write(t.join("nested-jobs.txt"), "batch other.txt\n").unwrap();
    std::fs::write(t.join("escape-jobs.txt"), "image x --steps 1 --out ../../escaped.png\n").unwrap();
    std::fs::write(t.join("bad-jobs.jsonl"), "{\"kind\": \"text\"\n").unwrap();
    std::fs::write(t.join("unknown-kind.jsonl"), "{\"kind\": \"video\"}\n").unwrap();
    std::fs::write(t.join("bad-field.jsonl"), "{\"kind\": \"image\", \"stepz\": 2}\n").unwrap();
    std::fs::write(t.join("bad-id.jsonl"), "{\"kind\": \"image\", \"id\": \"../up\"}\n").unwrap();
    std::fs::write(t.join("bad-defaults.toml"), "steps = \n").unwrap();
    std::fs::create_dir_all(t.join("empty")).unwrap();
    t
}

struct Case {
    args: Vec<String>,
    line: String,
    /// `None`: must succeed; `Some(text)`: must be refused with `text` in the message.
    expect: Option<String>,
}

fn cases(t: &Path) -> Vec<Case> {
    let text = std::fs::read_to_string(root().join("tests/robustness_cases.txt")).unwrap();
    let r = root().display().to_string();
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (cmd, expect) = match l.split_once("=>") {
                Some((c, e)) => (c.trim(), Some(e.trim().to_string())),
                None => (l, None),
            };
            let filled = cmd.replace("$T", &t.display().to_string()).replace("$F", &r);
            Case { args: shlex::split(&filled).expect("balanced quotes in the case file"), line: cmd.to_string(), expect }
        })
        .collect()
}

#[test]
fn every_input_gets_a_clear_answer() {
    let t = scratch();
    let cases = cases(&t);
    assert!(cases.len() >= 60, "only {} cases", cases.len());
    let mut table = String::from("| # | command (after `stipple`) | exit | what stipple said |\n|---|---|---|---|\n");
    let mut failures = Vec::new();
    for (i, c) in cases.iter().enumerate() {
        let out = Command::new(env!("CARGO_BIN_EXE_stipple")).args(&c.args).current_dir(t.join("cwd")).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        let code = out.status.code();
        // the error with its continuation lines (a regex's caret and cause), else the last line
        let said = match err.find("error:") {
            Some(at) => err[at..].split_whitespace().collect::<Vec<_>>().join(" "),
            None => err.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string(),
        };
        let said = said.replace(&t.display().to_string(), "$T").replace(&root().display().to_string(), "$F");
        let said: String = said.chars().take(220).collect();
        table.push_str(&format!("| {} | `{}` | {} | {} |\n", i + 1, c.line.replace('|', "\\|"), code.map_or("signal".into(), |c| c.to_string()), said.replace('|', "\\|")));
        let ok = match (&c.expect, code) {
            _ if err.contains("panicked") => false,
            (None, Some(0)) => true,
            (Some(msg), Some(2)) => err.contains("error:") && (msg.is_empty() || err.contains(msg.as_str())),
            _ => false,
        };
        if !ok {
            failures.push(format!("{}: exit {code:?}, expected {:?}: {err}", c.line, c.expect));
        }
    }
    std::fs::create_dir_all(root().join("target")).unwrap();
    std::fs::write(root().join("target/robustness-table.md"), &table).unwrap();
    // nothing escaped the scratch folder
    assert!(!t.join("escaped.png").exists() && !t.parent().unwrap().join("escaped.png").exists());
    let _ = std::fs::remove_dir_all(&t);
    assert!(failures.is_empty(), "{} of {} cases went wrong:\n{}", failures.len(), cases.len(), failures.join("\n"));
}
