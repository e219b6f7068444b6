//! `stipple train`: the whole text path on the repository's own prose (README and
//! licences): data preparation, tokenizer training, model training with checkpoints, an
//! interrupted run resumed to the same weights, held-out evaluation, and generation with
//! the trained folder.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn stipple(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stipple")).args(args).output().expect("run stipple")
}

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn fails_with(out: &std::process::Output, needle: &str) {
    assert_eq!(out.status.code(), Some(2), "stdout: {}", String::from_utf8_lossy(&out.stdout));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(needle), "wanted {needle:?} in: {err}");
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

const TINY: &[&str] = &["--layers", "1", "--hidden", "32", "--heads", "2", "--seq-len", "32", "--batch", "4", "--steps", "6", "--warmup", "2", "--checkpoint-every", "3"];

#[test]
fn prepare_tokenize_train_resume_evaluate_generate() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let dir = std::env::temp_dir().join(format!("stipple-train-cli-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (data, model, again) = (dir.join("data"), dir.join("model"), dir.join("again"));
    let sources = [s(&root.join("README.md")), s(&root.join("LICENSE-APACHE")), s(&root.join("LICENSE-MIT"))];
    let data_arg = s(&data);
    let prep: Vec<&str> = ["--json", "train", "prepare-text", "--out", &data_arg, "--chunk-bytes", "400", "--heldout-every", "5"].into_iter().chain(sources.iter().map(String::as_str)).collect();
    let v = json(&stipple(&prep));
    assert_eq!(v["files"], 3);
    assert!(v["heldout_bytes"].as_u64().unwrap() > 1000 && v["train_bytes"].as_u64().unwrap() > 4 * v["heldout_bytes"].as_u64().unwrap(), "{v}");
    fails_with(&stipple(&prep), "already exists");

    // training before a tokenizer exists says what to run
    fails_with(&stipple(&["train", "text", "--data", &s(&data), "--out", &s(&model)]), "stipple train tokenizer");
    let v = json(&stipple(&["--json", "train", "tokenizer", "--data", &s(&data), "--out", &s(&model), "--vocab-size", "400"]));
    assert_eq!(v["vocab_size"], 400);

    let train = |out: &Path, extra: &[&str]| {
        let out = s(out);
        let args: Vec<&str> = ["--json", "--seed", "3", "train", "text", "--data", &data_arg, "--out", &out].iter().copied().chain(TINY.iter().copied()).chain(extra.iter().copied()).collect::<Vec<_>>();
        stipple(&args)
    };
    let v = json(&train(&model, &[]));
    assert_eq!((v["steps"].as_u64(), v["of_steps"].as_u64()), (Some(6), Some(6)));
    assert!(v["final_loss_avg20"].as_f64().unwrap().is_finite());
    for f in ["config.json", "model.safetensors", "loss.csv", "loss.png", "train.json", "checkpoint/checkpoint.safetensors", "checkpoint/checkpoint.json"] {
        assert!(model.join(f).is_file(), "{f} missing");
    }
    assert_eq!(std::fs::read_to_string(model.join("loss.csv")).unwrap().lines().count(), 7);
    assert!(std::fs::read(model.join("loss.png")).unwrap().starts_with(b"\x89PNG"));
    // a finished run is not silently restarted
    fails_with(&train(&model, &[]), "--resume");

    // the same run stopped after its first step and resumed ends with the same weights
    std::fs::create_dir_all(&again).unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(model.join(f), again.join(f)).unwrap();
    }
    let v = json(&train(&again, &["--max-minutes", "0"]));
    assert_eq!(v["steps"], 1);
    let v = json(&train(&again, &["--resume"]));
    assert_eq!(v["steps"], 6);
    assert_eq!(std::fs::read(again.join("model.safetensors")).unwrap(), std::fs::read(model.join("model.safetensors")).unwrap());
    assert_eq!(std::fs::read_to_string(again.join("loss.csv")).unwrap(), std::fs::read_to_string(model.join("loss.csv")).unwrap());

    let v = json(&stipple(&["--json", "train", "eval-text", "--model", &s(&model), "--data", &s(&data), "--seq-len", "32", "--windows", "8"]));
    let acc = v["masked_accuracy"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&acc) && v["masked_tokens"].as_u64().unwrap() > 50, "{v}");
    // six steps of a tiny model: its bound is finite and near log(vocab), the unigram's far lower
    let bound = v["bound_nats_per_token"].as_f64().unwrap();
    assert!(bound.is_finite() && bound > v["unigram_nats_per_token"].as_f64().unwrap(), "{v}");
    fails_with(&stipple(&["train", "eval-text", "--model", &s(&model), "--data", &s(&data), "--seq-len", "64"]), "exceed");

    // the trained folder is a model `stipple text` loads; the default length fits its 32 tokens
    let v = json(&stipple(&["--json", "text", "--model", &s(&model), "The model"]));
    let generated = v["generated_ids"].as_array().unwrap().len();
    let prompt = v["prompt_ids"].as_array().unwrap().len();
    assert_eq!(generated + prompt, 32, "{v}");
    std::fs::remove_dir_all(&dir).ok();
}
