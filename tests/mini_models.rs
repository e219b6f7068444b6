//! The embedded stipple-mini models: found with no `--model` from a clone, and measurably
//! trained (a random-weight model of the same shape fails these checks).

use std::path::Path;
use std::process::Command;

use serde_json::Value;

fn stipple(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stipple")).env_remove("STIPPLE_MODELS").args(args).output().expect("run stipple")
}

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// On a held-out sample of its corpora (tests/fixtures/mini-text), the text model beats
/// the unigram baseline on masked-token accuracy (4x) and on the likelihood bound.
#[test]
fn text_model_beats_the_unigram_baseline_on_held_out_text() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("models/stipple-mini/text");
    let data = root.join("tests/fixtures/mini-text");
    let v = json(&stipple(&["--json", "train", "eval-text", "--model", &model.to_string_lossy(), "--data", &data.to_string_lossy(), "--windows", "16"]));
    let (acc, uni) = (v["masked_accuracy"].as_f64().unwrap(), v["unigram_accuracy"].as_f64().unwrap());
    assert!(acc > 0.10 && acc > 3.0 * uni, "{v}");
    assert!(v["bound_nats_per_token"].as_f64().unwrap() < v["unigram_nats_per_token"].as_f64().unwrap() - 1.0, "{v}");
}

/// `stipple text PROMPT` with no model runs the embedded one with its recommended
/// decoding (48 tokens, blocks of 8, sampled), and writes words of the corpus.
#[test]
fn text_runs_on_the_embedded_model_by_default() {
    let v = json(&stipple(&["--json", "text", "The whale"]));
    assert_eq!(v["generated_ids"].as_array().unwrap().len(), 48);
    let text = v["text"].as_str().unwrap().to_lowercase();
    let common = ["the", "of", "and", "to", "a", "in", "that", "is", "was", "he", "for", "it", "with", "as", "his", "on", "be", "at", "by", "i", "this", "had", "not", "are", "but", "from", "or", "have", "an", "they", "which", "we", "our", "whale"];
    let words: Vec<&str> = text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).collect();
    let hits = words.iter().filter(|w| common.contains(w)).count();
    assert!(words.len() >= 15 && hits * 4 >= words.len(), "{hits} of {} words are common English: {text}", words.len());
}
