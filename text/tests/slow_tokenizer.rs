//! Dream as it is on the hub: a model folder with only the slow tokenizer's files
//! (vocab.json, merges.txt, added_tokens.json, tokenizer_config.json naming
//! DreamTokenizer; no tokenizer.json). The rebuilt tokenizer must give the ids of Dream's
//! own Python class (recorded by tools/make_dream_slow_tokenizer_fixture.py), and the
//! model must load and generate from that folder.

use std::path::Path;

use candle_core::{DType, Device};
use stipple_text::files::{ModelFiles, TokenizerFiles};
use stipple_text::tokenizer::TextTokenizer;
use stipple_text::{GenerateConfig, TextModel};

fn fixture() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dream-slow-tok")
}

#[test]
fn the_rebuilt_tokenizer_matches_dreams_python_class() {
    let files = ModelFiles::from_dir(&fixture()).unwrap();
    assert!(matches!(files.tokenizer, TokenizerFiles::SlowBpe { .. }), "{:?}", files.tokenizer);
    let tok = TextTokenizer::load(&files).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture().join("expected_tokenizer.json")).unwrap()).unwrap();
    let cases = expected["cases"].as_array().unwrap();
    assert!(cases.len() >= 10);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(tok.encode(text, false).unwrap(), want, "{text:?}");
        assert_eq!(tok.decode(&want, false).unwrap(), case["decoded"].as_str().unwrap(), "{text:?}");
    }
    // the special tokens sit after the vocabulary, at the files' ids
    assert_eq!(tok.token_id("<|endoftext|>"), Some(396));
    assert_eq!(tok.token_id("<|mask|>"), Some(399));
    assert!(tok.has_chat_template());
}

#[test]
fn the_model_folder_loads_and_generates() {
    let model = TextModel::load(fixture().to_str().unwrap(), &Device::Cpu, DType::F32).unwrap();
    let prompt = model.prompt_ids("What is 2+2?", false).unwrap();
    let cfg = GenerateConfig { gen_len: 8, steps: 8, block_len: 8, ..GenerateConfig::default() };
    let out = stipple_text::generate::generate(&model.lm, &[prompt], &cfg, None, stipple_core::progress::CancelToken::new()).unwrap();
    assert_eq!(out.generated(0).len(), 8);
    assert!(out.generated(0).iter().all(|&t| t != 399), "no mask left");
}

#[test]
fn an_unknown_slow_tokenizer_class_is_named() {
    let dir = std::env::temp_dir().join(format!("stipple-slowtok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for f in ["config.json", "model.safetensors", "vocab.json", "merges.txt"] {
        std::fs::copy(fixture().join(f), dir.join(f)).unwrap();
    }
    std::fs::write(dir.join("tokenizer_config.json"), r#"{"tokenizer_class": "LlamaTokenizer"}"#).unwrap();
    let files = ModelFiles::from_dir(&dir).unwrap();
    let e = TextTokenizer::load(&files).err().unwrap().to_string();
    assert!(e.contains("LlamaTokenizer") && e.contains("tokenizer.json"), "{e}");
    std::fs::remove_file(dir.join("vocab.json")).unwrap();
    let e = ModelFiles::from_dir(&dir).err().unwrap().to_string();
    assert!(e.contains("tokenizer.json or vocab.json + merges.txt"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
