//! GGUF files named by hub repository (`owner/name:Q8_0`, `owner/name:FILE.gguf`), served
//! from a Hugging Face cache laid out as hf-hub writes it (refs/main -> snapshots/<commit>).
//! No network here: the lookup falls back to the cached snapshot's listing, as it does
//! offline for users. Its own test binary, since it sets HF_HOME.

use std::path::Path;

use candle_core::{DType, Device};
use stipple_text::pipeline::TextModel;

#[test]
fn hub_gguf_sources_load_from_the_cache() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf");
    let home = std::env::temp_dir().join(format!("stipple-gguf-hub-{}", std::process::id()));
    let repo = home.join("hub").join("models--stipple-test--llada-tiny-GGUF");
    let snapshot = repo.join("snapshots").join("0123abcd");
    std::fs::create_dir_all(&snapshot).unwrap();
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::write(repo.join("refs").join("main"), "0123abcd").unwrap();
    for (from, to) in [("llada-tiny-q8_0.gguf", "LLaDA-tiny-Q8_0.gguf"), ("llada-tiny-q4_k_m.gguf", "LLaDA-tiny-Q4_K_M.gguf"), ("llada-tiny-f32.gguf", "LLaDA-tiny-F32.gguf")] {
        std::fs::copy(fixtures.join(from), snapshot.join(to)).unwrap();
    }
    // Safety: the only test of this binary, before it starts any thread.
    unsafe { std::env::set_var("HF_HOME", &home) };
    let load = |source: &str| TextModel::load(source, &Device::Cpu, DType::F32);

    // by quantization, case-insensitive, and by file name: the same files as local paths
    let by_tag = load("stipple-test/llada-tiny-GGUF:q8_0").unwrap();
    let local = load(fixtures.join("llada-tiny-q8_0.gguf").to_str().unwrap()).unwrap();
    let prompt = local.prompt_ids("Hello world", true).unwrap();
    assert_eq!(by_tag.prompt_ids("Hello world", true).unwrap(), prompt);
    let cfg = stipple_text::generate::GenerateConfig { gen_len: 8, steps: 8, block_len: 8, ..Default::default() };
    let run = |m: &TextModel| stipple_text::generate::generate(&m.lm, &[prompt.clone()], &cfg, None, stipple_core::progress::CancelToken::new()).unwrap().generated(0).to_vec();
    assert_eq!(run(&by_tag), run(&local));
    let by_name = load("stipple-test/llada-tiny-GGUF:LLaDA-tiny-F32.gguf").unwrap();
    assert_eq!(run(&by_name), run(&load(fixtures.join("llada-tiny-f32.gguf").to_str().unwrap()).unwrap()));

    // the errors name what the repository has
    let err = |source: &str| match load(source) {
        Ok(_) => panic!("{source} loaded"),
        Err(e) => e.to_string(),
    };
    let e = err("stipple-test/llada-tiny-GGUF:q");
    assert!(e.contains("2 match") && e.contains("LLaDA-tiny-Q4_K_M.gguf"), "{e}");
    let e = err("stipple-test/llada-tiny-GGUF:IQ2_XS");
    assert!(e.contains("it has:") && e.contains("LLaDA-tiny-F32.gguf"), "{e}");
    let e = err("stipple-test/not-cached-GGUF:Q8_0");
    assert!(e.contains("stipple-test/not-cached-GGUF") && e.contains("--model"), "{e}");
    std::fs::remove_dir_all(&home).unwrap();
}
