//! Decoding-loop behaviour beyond reference parity: early stop, streaming canvases,
//! cache agreement, cancellation, seeds.

use std::path::Path;

use candle_core::{DType, Device};
use stipple_core::discrete::Committed;
use stipple_core::progress::{CancelToken, StepEvent};
use stipple_text::generate::{CanvasView, TokenFilter, decode, generate};
use stipple_text::{CacheMode, GenerateConfig, TextModel};

fn model(name: &str) -> TextModel {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name);
    TextModel::load(p.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap()
}

/// Forces end-of-text at one canvas position.
struct ForceEos {
    at: usize,
    eos: u32,
}

impl TokenFilter for ForceEos {
    fn restrict(&mut self, _: usize, _: &[u32], positions: &[usize], logits: &mut [f32], _: usize) -> stipple_text::Result<()> {
        let v = logits.len() / positions.len();
        for (i, &p) in positions.iter().enumerate() {
            if p == self.at {
                let row = &mut logits[i * v..(i + 1) * v];
                row.fill(f32::NEG_INFINITY);
                row[self.eos as usize] = 0.0;
            }
        }
        Ok(())
    }
    fn review(&mut self, _: usize, _: &[u32], commits: &[Committed]) -> Vec<bool> {
        vec![true; commits.len()]
    }
}

#[test]
fn early_stop_after_the_block_with_eos() {
    let m = model("llada-tiny");
    let prompt = m.prompt_ids("The cat sat on", true).unwrap();
    let eos = m.lm.traits().eos_ids[0];
    let mut canvas = prompt.clone();
    canvas.extend(std::iter::repeat_n(m.lm.traits().mask_id, 16));
    let cfg = GenerateConfig { gen_len: 16, steps: 16, block_len: 4, early_stop: true, ..GenerateConfig::default() };
    let mut force = ForceEos { at: prompt.len() + 1, eos };
    let out = decode(&m.lm, vec![canvas.clone()], &cfg, Some(&mut force), None, CancelToken::new()).unwrap();
    assert!(out.early_stopped);
    assert_eq!(out.nfe, 4, "only the first block's 4 steps run");
    assert!(out.generated(0)[4..].iter().all(|&t| t == eos), "{:?}", out.generated(0));
    // without early stop the whole canvas is decoded
    let cfg = GenerateConfig { early_stop: false, ..cfg };
    let mut force = ForceEos { at: prompt.len() + 1, eos };
    let full = decode(&m.lm, vec![canvas], &cfg, Some(&mut force), None, CancelToken::new()).unwrap();
    assert!(!full.early_stopped);
    assert_eq!(full.nfe, 16);
    assert_eq!(&full.generated(0)[..4], &out.generated(0)[..4]);
}

#[test]
fn streaming_views_show_every_commit() {
    let m = model("dream-tiny");
    let prompt = m.prompt_ids("A small bird", true).unwrap();
    let cfg = GenerateConfig { gen_len: 12, steps: 6, block_len: 12, ..GenerateConfig::default() };
    let mut views: Vec<CanvasView> = Vec::new();
    let mut sink = |e: &StepEvent<'_, CanvasView>| views.push(e.preview.unwrap().clone());
    let out = generate(&m.lm, std::slice::from_ref(&prompt), &cfg, Some(&mut sink), CancelToken::new()).unwrap();
    let mask = m.lm.traits().mask_id;
    let mut masked_before = 12;
    let mut committed = 0;
    for v in &views {
        let masked = v.rows[0].iter().filter(|&&t| t == mask).count();
        assert_eq!(masked_before - masked, v.committed[0].len(), "each view's commits account for the masks filled");
        for c in &v.committed[0] {
            assert!((0.0..=1.0).contains(&c.confidence));
            assert_eq!(v.rows[0][c.position], c.token);
        }
        committed += v.committed[0].len();
        masked_before = masked;
    }
    assert_eq!(committed, 12);
    assert_eq!(views.last().unwrap().rows[0], out.rows[0]);
    assert!(out.confidence[0][prompt.len()..].iter().all(Option::is_some));
}

#[test]
fn caches_agree_with_the_exact_decode() {
    // Report how close prefix / dual caching stays to the uncached decode (random tiny
    // models are far more sensitive than trained ones; parity with Fast-dLLM's own
    // caches is in parity.rs).
    for name in ["llada-tiny", "dream-tiny"] {
        let m = model(name);
        let prompts: Vec<Vec<u32>> = ["The cat sat on", "Music, images and", "What is the capital"]
            .iter()
            .map(|p| m.prompt_ids(p, true).unwrap())
            .collect();
        let run = |cache| {
            let cfg = GenerateConfig { gen_len: 16, steps: 16, block_len: 8, cache, ..GenerateConfig::default() };
            generate(&m.lm, &prompts, &cfg, None, CancelToken::new()).unwrap()
        };
        let exact = run(CacheMode::None);
        for mode in [CacheMode::Prefix, CacheMode::Dual] {
            let cached = run(mode);
            let (mut same, mut total) = (0, 0);
            for r in 0..prompts.len() {
                same += exact.generated(r).iter().zip(cached.generated(r)).filter(|(a, b)| a == b).count();
                total += exact.generated(r).len();
                // the first block's first step is a full pass in every mode
                assert_eq!(cached.nfe, exact.nfe);
            }
            eprintln!("{name} {mode:?}: token agreement with the uncached decode {same}/{total}");
            assert!(same > 0);
        }
    }
}

#[test]
fn cancellation_stops_decoding() {
    let m = model("llada-tiny");
    let prompt = m.prompt_ids("The cat", true).unwrap();
    let cancel = CancelToken::new();
    let c2 = cancel.clone();
    let mut sink = move |e: &StepEvent<'_, CanvasView>| {
        if e.step == 2 {
            c2.cancel();
        }
    };
    let cfg = GenerateConfig { gen_len: 8, steps: 8, block_len: 8, ..GenerateConfig::default() };
    let err = generate(&m.lm, &[prompt], &cfg, Some(&mut sink), cancel).unwrap_err();
    assert!(err.to_string().contains("cancelled"), "{err}");
}

#[test]
fn sampling_is_deterministic_for_a_seed() {
    let m = model("llada-tiny");
    let prompt = m.prompt_ids("The cat", true).unwrap();
    let run = |seed| {
        let cfg = GenerateConfig { gen_len: 12, steps: 12, block_len: 12, temperature: 1.0, seed, ..GenerateConfig::default() };
        generate(&m.lm, std::slice::from_ref(&prompt), &cfg, None, CancelToken::new()).unwrap().rows[0].clone()
    };
    assert_eq!(run(5), run(5));
    assert!((6..12).any(|s| run(s) != run(5)));
}

#[test]
fn dream_origin_and_alg_temp_fill_every_position() {
    use stipple_text::CommitRule;
    let m = model("dream-tiny");
    let prompt = m.prompt_ids("The cat sat on", true).unwrap();
    let mask = m.lm.traits().mask_id;
    for (commit, alg_temp) in [(CommitRule::Origin, None), (CommitRule::Schedule, Some(0.5))] {
        let run = |seed| {
            let cfg = GenerateConfig { gen_len: 12, steps: 6, block_len: 12, commit, alg_temp, seed, ..GenerateConfig::default() };
            generate(&m.lm, std::slice::from_ref(&prompt), &cfg, None, CancelToken::new()).unwrap()
        };
        let a = run(1);
        assert!(a.nfe <= 6, "{commit:?}: {} calls", a.nfe);
        assert!(!a.generated(0).contains(&mask), "{commit:?}: {:?}", a.generated(0));
        assert_eq!(a.rows, run(1).rows);
    }
}

#[test]
fn span_forward_over_a_fresh_cache_equals_the_full_forward() {
    use candle_core::Tensor;
    use stipple_text::models::{KvCache, Span};
    for name in ["llada-tiny", "llada-tiny-gqa", "dream-tiny"] {
        let m = model(name);
        let mut ids = m.prompt_ids("The quick brown fox", true).unwrap();
        ids.extend(std::iter::repeat_n(m.lm.traits().mask_id, 10));
        let l = ids.len();
        let x = Tensor::from_vec(ids.clone(), (1, l), &Device::Cpu).unwrap();
        let full = Span { ids: &x, start: 0, positions: None, key_mask: None, logits_rows: None };
        let mut cache = KvCache::new();
        let want = m.lm.forward(&full, Some(&mut cache), true).unwrap();
        assert_eq!(cache.len(), l);
        for (a, b) in [(l - 10, l - 4), (l - 10, l), (3, 9)] {
            let part = x.narrow(1, a, b - a).unwrap();
            let span = Span { ids: &part, start: a, positions: None, key_mask: None, logits_rows: None };
            let got = m.lm.forward(&span, Some(&mut cache), false).unwrap();
            let diff = (got - want.narrow(1, a, b - a).unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(diff < 1e-4, "{name} span {a}..{b}: {diff}");
        }
    }
}
