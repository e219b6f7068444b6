//! Parity with the reference implementations on tiny random checkpoints made by
//! `tools/make_text_fixtures.py` (LLaDA / Fast-dLLM / Dream code run unchanged):
//! the first forward's logits to 1e-4 and the greedy generated ids exactly.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use stipple_core::progress::CancelToken;
use stipple_text::files::ModelFiles;
use stipple_text::generate::{CacheMode, CommitRule, GenerateConfig, generate};
use stipple_text::models::{DiffusionLm, Span};
use stipple_text::tokenizer::TextTokenizer;
use stipple_core::discrete::Remasking;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn load(name: &str) -> (DiffusionLm, TextTokenizer, Value) {
    let files = ModelFiles::from_dir(&fixture(name)).unwrap();
    let tok = TextTokenizer::load(&files).unwrap();
    let model = DiffusionLm::load(&files, &Device::Cpu, DType::F32, &|t| tok.token_id(t)).unwrap();
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected.json")).unwrap()).unwrap();
    (model, tok, expected)
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn check_first_logits(model: &DiffusionLm, expected: &Value) {
    let fl = &expected["first_logits"];
    let canvas = ids(&fl["canvas"]);
    let want: Vec<Vec<f32>> = fl["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect())
        .collect();
    let input = Tensor::from_vec(canvas.clone(), (1, canvas.len()), &Device::Cpu).unwrap();
    let span = Span { ids: &input, start: 0, positions: None, key_mask: None, logits_rows: None };
    let got = model.forward(&span, None, false).unwrap().squeeze(0).unwrap().to_vec2::<f32>().unwrap();
    assert_eq!(got.len(), want.len());
    let mut worst = 0f32;
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g.len(), w.len());
        for (a, b) in g.iter().zip(w) {
            worst = worst.max((a - b).abs() / b.abs().max(1.0));
        }
    }
    assert!(worst < 1e-4, "first-forward logits differ by {worst}");
    eprintln!("first logits: worst error {worst:.2e}");
}

fn config_for(case: &Value, family_dream: bool) -> GenerateConfig {
    let u = |k: &str| case[k].as_u64().unwrap() as usize;
    let mut cfg = GenerateConfig {
        gen_len: u("gen_len"),
        steps: u("steps"),
        block_len: case.get("block_len").map(|_| u("block_len")).unwrap_or(u("gen_len")),
        guidance: case.get("cfg").and_then(Value::as_f64).unwrap_or(0.0),
        ..GenerateConfig::default()
    };
    if let Some(t) = case.get("threshold").and_then(Value::as_f64) {
        cfg.commit = CommitRule::Threshold(t);
    }
    cfg.cache = match case.get("cache").and_then(Value::as_str) {
        Some("prefix") => CacheMode::Prefix,
        Some("dual") => CacheMode::Dual,
        _ => CacheMode::None,
    };
    if family_dream {
        cfg.remasking = match case["alg"].as_str().unwrap() {
            "maskgit_plus" => Remasking::LowConfidence,
            "topk_margin" => Remasking::Margin,
            "entropy" => Remasking::Entropy,
            a => panic!("alg {a}"),
        };
    }
    cfg
}

fn check_cases(name: &str, dream: bool) {
    let (model, tok, expected) = load(name);
    check_first_logits(&model, &expected);
    assert_eq!(model.traits().mask_id as u64, expected["mask_id"].as_u64().unwrap());
    let mut failures = Vec::new();
    for case in expected["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let chat = case.get("chat").and_then(Value::as_bool).unwrap_or(false);
        let prompt = tok.prompt_ids(case["prompt"].as_str().unwrap(), !chat).unwrap();
        assert_eq!(prompt, ids(&case["prompt_ids"]), "{name}/{id}: prompt ids (tokenizer or chat template)");
        let cfg = config_for(case, dream);
        let out = generate(&model, &[prompt], &cfg, None, CancelToken::new()).unwrap();
        let want = ids(&case["generated_ids"]);
        if out.generated(0) != want.as_slice() {
            failures.push(format!("{name}/{id}: got {:?}, want {want:?}", out.generated(0)));
        } else if !dream && case.get("threshold").is_none() {
            assert_eq!(out.nfe as u64, case["nfe"].as_u64().unwrap(), "{name}/{id}: model calls");
        }
        eprintln!("{name}/{id}: ok ({} model calls)", out.nfe);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn llada_matches_reference() {
    check_cases("llada-tiny", false);
}

#[test]
fn llada_gqa_tied_sharded_matches_reference() {
    check_cases("llada-tiny-gqa", false);
}

#[test]
fn dream_matches_reference() {
    check_cases("dream-tiny", true);
}

#[test]
fn bert_matches_reference() {
    check_cases("bert-tiny", false);
}

#[test]
fn modernbert_matches_reference() {
    check_cases("modernbert-tiny", false);
}
