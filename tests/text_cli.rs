//! `stipple text --json` reproduces the reference decoders' greedy ids on the tiny
//! fixtures (made by tools/make_text_fixtures.py), and rejects bad input cleanly.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("text/tests/fixtures").join(name)
}

fn stipple(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stipple")).args(args).output().expect("run stipple")
}

fn case(model: &str, id: &str) -> Value {
    let e: Value = serde_json::from_str(&std::fs::read_to_string(fixture(model).join("expected.json")).unwrap()).unwrap();
    e["cases"].as_array().unwrap().iter().find(|c| c["id"] == id).unwrap().clone()
}

fn run_case(model: &str, id: &str, extra: &[&str]) {
    let c = case(model, id);
    let path = fixture(model);
    let s = |k: &str| c[k].to_string();
    let mut args: Vec<String> = vec![
        "--json".into(),
        "text".into(),
        "--model".into(),
        path.to_string_lossy().into(),
        "--prompt".into(),
        c["prompt"].as_str().unwrap().into(),
        "--gen-len".into(),
        s("gen_len"),
        "--steps".into(),
        s("steps"),
    ];
    if c.get("block_len").is_some() {
        args.extend(["--block-len".into(), s("block_len")]);
    }
    if !c.get("chat").and_then(Value::as_bool).unwrap_or(false) {
        args.push("--raw".into());
    }
    args.extend(extra.iter().map(|x| x.to_string()));
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = stipple(&refs);
    assert!(out.status.success(), "{model}/{id}: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).expect("one JSON object");
    assert_eq!(v["generated_ids"], c["generated_ids"], "{model}/{id}");
    assert_eq!(v["prompt_ids"], c["prompt_ids"], "{model}/{id}");
    for key in ["text", "nfe", "elapsed_ms", "tokens_per_s"] {
        assert!(v.get(key).is_some(), "{model}/{id}: no {key}");
    }
    // text is the generated part cut at the first end-of-text
    let text = v["text"].as_str().unwrap();
    assert!(!text.contains("<|endoftext|>"));
}

#[test]
fn text_json_reproduces_reference_ids() {
    run_case("llada-tiny", "plain", &[]);
    run_case("llada-tiny", "semi-ar", &[]);
    run_case("llada-tiny", "cfg", &["--cfg", "1.5"]);
    run_case("llada-tiny", "chat", &[]);
    run_case("llada-tiny", "dual-cache-threshold", &["--cache", "dual", "--threshold", "0.5"]);
    run_case("llada-tiny", "prefix-cache", &["--cache", "prefix"]);
    run_case("dream-tiny", "entropy", &["--remasking", "entropy"]);
    run_case("llada-tiny-gqa", "few-steps", &[]);
}

#[test]
fn text_bad_input_is_a_clear_error() {
    let llada = fixture("llada-tiny");
    let m = llada.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["text", "--model", "/no/such/folder", "--prompt", "x"], "no such folder"),
        (&["text", "--model", m, "--prompt", "x", "--gen-len", "0"], "gen-len"),
        (&["text", "--model", m, "--prompt", "x", "--gen-len", "16", "--block-len", "5"], "multiple of block_len"),
        (&["text", "--model", m, "--prompt", "x", "--gen-len", "16", "--steps", "3", "--block-len", "8"], "multiple of the number of blocks"),
        (&["text", "--model", m, "--prompt", "x", "--threshold", "1.5", "--gen-len", "8"], "threshold"),
        (&["text", "--model", m, "--prompt", "x", "--gen-len", "300"], "exceeds"),
    ];
    for (args, needle) in cases {
        let out = stipple(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn text_batch_rows_match_single_runs() {
    let llada = fixture("llada-tiny");
    let m = llada.to_str().unwrap();
    let single = |p: &str| -> Value {
        let out = stipple(&["--json", "text", "--model", m, "--raw", "--prompt", p, "--gen-len", "8", "--steps", "8"]);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let a = single("The cat sat on");
    let b = single("A small bird sang a song in the morning");
    let out = stipple(&[
        "--json", "text", "--model", m, "--raw", "--prompt", "The cat sat on", "--prompt",
        "A small bird sang a song in the morning", "--gen-len", "8", "--steps", "8",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = v["results"].as_array().unwrap();
    assert_eq!(results[0]["generated_ids"], a["generated_ids"]);
    assert_eq!(results[1]["generated_ids"], b["generated_ids"]);
}

#[test]
fn infill_json_fills_constrained_holes() {
    let llada = fixture("llada-tiny");
    let out = stipple(&[
        "--json", "--seed", "3", "infill", "--model", llada.to_str().unwrap(), "--template",
        "The [1 {cat,dog}] sat on the [1..3] in [4 /[0-9]+/].", "--temperature", "1",
    ]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let holes = v["holes"].as_array().unwrap();
    assert!(["cat", "dog"].contains(&holes[0]["text"].as_str().unwrap()));
    let year = holes[2]["text"].as_str().unwrap();
    assert!(!year.is_empty() && year.chars().all(|c| c.is_ascii_digit()), "{year}");
    assert_eq!(holes[2]["ids"].as_array().unwrap().len(), 4);
    let text = v["text"].as_str().unwrap();
    assert!(text.starts_with("The ") && text.ends_with('.'), "{text}");
    for key in ["nfe", "elapsed_ms", "ids"] {
        assert!(v.get(key).is_some(), "no {key}");
    }
    let bad = stipple(&["infill", "--model", llada.to_str().unwrap(), "--template", "x [1 /[0-9]{40}/]"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("can never be filled"));
}

/// Without `--model`, `text` and `infill` use `stipple-mini/text` from `$STIPPLE_MODELS`
/// first (here a copy of the tiny fixture), and say where they looked when it is missing.
#[test]
fn default_model_is_found_through_stipple_models() {
    let root = std::env::temp_dir().join(format!("stipple-default-models-{}", std::process::id()));
    let dir = root.join("stipple-mini/text");
    std::fs::create_dir_all(&dir).unwrap();
    for f in std::fs::read_dir(fixture("llada-tiny")).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, dir.join(f.file_name().unwrap())).unwrap();
    }
    let run = |models: &Path, args: &[&str]| Command::new(env!("CARGO_BIN_EXE_stipple")).env("STIPPLE_MODELS", models).args(args).output().unwrap();
    let with_model = stipple(&["--json", "text", "--model", &fixture("llada-tiny").to_string_lossy(), "--raw", "--gen-len", "6", "a b"]);
    let by_default = run(&root, &["--json", "text", "--raw", "--gen-len", "6", "a b"]);
    assert!(by_default.status.success(), "{}", String::from_utf8_lossy(&by_default.stderr));
    let ids = |o: &std::process::Output| serde_json::from_slice::<Value>(&o.stdout).unwrap()["generated_ids"].clone();
    assert_eq!(ids(&by_default), ids(&with_model));
    let infill = run(&root, &["--json", "infill", "--template", "a [2] b"]);
    assert!(infill.status.success(), "{}", String::from_utf8_lossy(&infill.stderr));
    // a generation_config.json sets the defaults the command line leaves open
    std::fs::write(dir.join("generation_config.json"), r#"{"gen_length": 6, "block_length": 3, "temperature": 1.0}"#).unwrap();
    let sampled = |seed: &str| ids(&run(&root, &["--json", "--seed", seed, "text", "--raw", "a b"]));
    let (one, two) = (sampled("1"), sampled("2"));
    assert_eq!(one.as_array().unwrap().len(), 6);
    assert_ne!(one, two, "temperature 1 from the config: seeds differ");
    let greedy = ids(&run(&root, &["--json", "text", "--raw", "--temperature", "0", "--gen-len", "6", "--block-len", "6", "a b"]));
    assert_eq!(greedy, ids(&with_model), "the command line wins");
    std::fs::remove_dir_all(&root).ok();
}
