//! GGUF files as llama.cpp writes them (`tools/make_gguf_fixtures.py` runs llama.cpp's
//! own converter and quantizer on the tiny fixtures and on stipple-mini):
//! * an f32 GGUF gives exactly the reference tokens (the safetensors model's), with the
//!   tokenizer and chat template rebuilt from the file's metadata;
//! * Q8_0 agrees with the plain model on at least 95% of greedy tokens, on the tiny
//!   fixtures and on the embedded stipple-mini (quantized here with candle, which gives
//!   the converter's Q8_0 bytes);
//! * Q4_K_M (k-quants) loads and stays close to the plain model's logits;
//! * broken files get clear errors.

use std::path::{Path, PathBuf};

use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;
use stipple_core::progress::CancelToken;
use stipple_text::generate::{GenerateConfig, generate};
use stipple_text::gguf::GgufFile;
use stipple_text::models::Span;
use stipple_text::pipeline::TextModel;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

fn gguf(name: &str) -> PathBuf {
    fixture("gguf").join(name)
}

fn load(path: &Path) -> TextModel {
    TextModel::load(path.to_str().unwrap(), &Device::Cpu, DType::F32).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn expected(name: &str) -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture(name).join("expected.json")).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn config(case: &Value) -> GenerateConfig {
    let u = |k: &str| case[k].as_u64().unwrap() as usize;
    GenerateConfig {
        gen_len: u("gen_len"),
        steps: u("steps"),
        block_len: case.get("block_len").map(|_| u("block_len")).unwrap_or(u("gen_len")),
        ..GenerateConfig::default()
    }
}

/// The plain greedy cases of a fixture (no CFG, caches, thresholds or Dream algorithms
/// other than the default).
fn plain_cases(name: &str) -> Vec<Value> {
    expected(name)["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("cfg").is_none() && c.get("threshold").is_none() && c.get("cache").is_none())
        .filter(|c| c.get("alg").is_none_or(|a| a == "maskgit_plus") && c.get("alg_temp").is_none_or(|t| t.as_f64() == Some(0.0)))
        .filter(|c| c.get("temperature").is_none_or(|t| t.as_f64() == Some(0.0)))
        .cloned()
        .collect()
}

fn run(model: &TextModel, prompt: &[u32], cfg: &GenerateConfig) -> Vec<u32> {
    generate(&model.lm, &[prompt.to_vec()], cfg, None, CancelToken::new()).unwrap().generated(0).to_vec()
}

fn f32_gives_the_reference_tokens(fixture_name: &str, file: &str) {
    let model = load(&gguf(file));
    let reference = expected(fixture_name);
    assert_eq!(model.lm.traits().mask_id as u64, reference["mask_id"].as_u64().unwrap());
    let cases = plain_cases(fixture_name);
    assert!(cases.len() >= 2, "{fixture_name}: too few plain cases");
    for case in &cases {
        let id = case["id"].as_str().unwrap();
        let chat = case.get("chat").and_then(Value::as_bool).unwrap_or(false);
        let prompt = model.prompt_ids(case["prompt"].as_str().unwrap(), !chat).unwrap();
        assert_eq!(prompt, ids(&case["prompt_ids"]), "{file}/{id}: prompt ids (the metadata's tokenizer or chat template)");
        assert_eq!(run(&model, &prompt, &config(case)), ids(&case["generated_ids"]), "{file}/{id}: generated ids");
        eprintln!("{file}/{id}: exact");
    }
}

#[test]
fn llada_f32_gguf_gives_the_reference_tokens() {
    f32_gives_the_reference_tokens("llada-tiny", "llada-tiny-f32.gguf");
}

#[test]
fn dream_f32_gguf_gives_the_reference_tokens() {
    f32_gives_the_reference_tokens("dream-tiny", "dream-tiny-f32.gguf");
}

/// How often `quantized` picks the token `plain` commits, on the canvases of `plain`'s
/// greedy decode (teacher-forced, as llama.cpp's `llama-perplexity --kl-divergence`
/// reports "same top p": one early difference would otherwise shift every later token
/// and measure the decode's chaos rather than the quantization). Also returns the
/// free-running share (both models decode on their own, position by position).
fn agreement(plain: &TextModel, quantized: &TextModel, prompts: &[(Vec<u32>, GenerateConfig)]) -> (f64, f64) {
    let (mut same, mut total, mut free_same) = (0usize, 0usize, 0usize);
    let shift = plain.lm.traits().shift_logits;
    let vocab = quantized.lm.traits().vocab;
    for (prompt, cfg) in prompts {
        let mut steps: Vec<(Vec<u32>, Vec<(usize, u32)>)> = Vec::new();
        let mut canvas: Option<Vec<u32>> = None;
        let mut record = |e: &stipple_core::progress::StepEvent<'_, stipple_text::generate::CanvasView>| {
            let view = e.preview.expect("a canvas view per step");
            let before = canvas.clone().unwrap_or_else(|| {
                // the canvas before the first step: the final one with this step's commits masked
                let mut c = view.rows[0].clone();
                for k in &view.committed[0] {
                    c[k.position] = view.mask_id;
                }
                c
            });
            steps.push((before, view.committed[0].iter().map(|k| (k.position, k.token)).collect()));
            canvas = Some(view.rows[0].clone());
        };
        let out = generate(&plain.lm, &[prompt.clone()], cfg, Some(&mut record), CancelToken::new()).unwrap();
        for (before, commits) in &steps {
            let l = logits(quantized, before);
            for &(pos, token) in commits {
                let row = if shift { pos - 1 } else { pos };
                let r = &l[row * vocab..(row + 1) * vocab];
                let top = r.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0 as u32;
                same += (top == token) as usize;
                total += 1;
            }
        }
        let free = run(quantized, prompt, cfg);
        free_same += out.generated(0).iter().zip(&free).filter(|(a, b)| a == b).count();
    }
    let generated: usize = prompts.iter().map(|(_, c)| c.gen_len).sum();
    (same as f64 / total as f64, free_same as f64 / generated as f64)
}

fn fixture_prompts(name: &str, model: &TextModel) -> Vec<(Vec<u32>, GenerateConfig)> {
    plain_cases(name)
        .iter()
        .map(|c| {
            let chat = c.get("chat").and_then(Value::as_bool).unwrap_or(false);
            (model.prompt_ids(c["prompt"].as_str().unwrap(), !chat).unwrap(), config(c))
        })
        .collect()
}

#[test]
fn q8_0_agrees_with_f32_on_the_tiny_fixtures() {
    for (name, f32_file, q8_file) in [("llada-tiny", "llada-tiny-f32.gguf", "llada-tiny-q8_0.gguf"), ("dream-tiny", "dream-tiny-f32.gguf", "dream-tiny-q8_0.gguf")] {
        let plain = load(&gguf(f32_file));
        let q8 = load(&gguf(q8_file));
        assert_eq!(q8.lm.dtype(), DType::F32);
        let (share, free) = agreement(&plain, &q8, &fixture_prompts(name, &plain));
        eprintln!("{q8_file}: {:.1}% of greedy tokens as f32 ({:.1}% free-running)", share * 100.0, free * 100.0);
        assert!(share >= 0.95, "{q8_file}: only {:.1}% of greedy tokens agree with f32", share * 100.0);
    }
}

/// Q8_0 as llama.cpp's converter writes it is what candle's quantizer gives: every
/// matrix of the converter's Q8_0 file, byte for byte, from the f32 file's values.
#[test]
fn candle_q8_0_is_the_converters() {
    let read = |name: &str| {
        let path = gguf(name);
        let mut f = std::fs::File::open(&path).unwrap();
        let content = gguf_file::Content::read(&mut f).unwrap();
        (content, f)
    };
    let (plain, mut pf) = read("llada-tiny-f32.gguf");
    let (q8, mut qf) = read("llada-tiny-q8_0.gguf");
    let mut matrices = 0;
    for (name, info) in &q8.tensor_infos {
        let theirs = q8.tensor(&mut qf, name, &Device::Cpu).unwrap();
        if info.ggml_dtype != GgmlDType::Q8_0 {
            continue;
        }
        let values = plain.tensor(&mut pf, name, &Device::Cpu).unwrap().dequantize(&Device::Cpu).unwrap();
        let ours = QTensor::quantize(&values, GgmlDType::Q8_0).unwrap();
        assert_eq!(ours.data().unwrap(), theirs.data().unwrap(), "{name}: candle's Q8_0 differs from the converter's");
        matrices += 1;
    }
    assert!(matrices >= 10, "only {matrices} Q8_0 matrices compared");
}

/// stipple-mini as a Q8_0 GGUF the way the converter writes one (LLaDA's names, its
/// query/key row order, Q8_0 matrices, f32 norms; the tensor bytes are the converter's,
/// as [`candle_q8_0_is_the_converters`] shows), with its tokenizer.json beside it. Made
/// here rather than committed: 4.5 MB that the repository need not carry.
fn stipple_mini_q8_0(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/stipple-mini/text");
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    let u = |k: &str| cfg[k].as_u64().unwrap() as usize;
    let (hidden, heads, layers, mlp, vocab) = (u("d_model"), u("n_heads"), u("n_layers"), u("mlp_hidden_size"), u("embedding_size"));
    assert!(cfg["weight_tying"].as_bool().unwrap(), "stipple-mini ties its output head");
    let st = stipple_core::weights::SafetensorsFiles::open(&[src.join("model.safetensors")]).unwrap();
    let read = |name: &str| st.read(name).unwrap().to_dtype(DType::F32).unwrap();
    // convert_hf_to_gguf.py's LLaDA permutation: rows [h, t, j] -> [h, j, t]
    let permute = |w: Tensor| {
        let (out, inp) = w.dims2().unwrap();
        w.reshape((heads, 2, out / heads / 2, inp)).unwrap().transpose(1, 2).unwrap().contiguous().unwrap().reshape((out, inp)).unwrap()
    };
    let mut tensors: Vec<(String, QTensor)> = Vec::new();
    let q8 = |t: Tensor| QTensor::quantize(&t, GgmlDType::Q8_0).unwrap();
    let f32 = |t: Tensor| QTensor::quantize(&t, GgmlDType::F32).unwrap();
    tensors.push(("token_embd.weight".into(), q8(read("model.transformer.wte.weight"))));
    tensors.push(("output_norm.weight".into(), f32(read("model.transformer.ln_f.weight"))));
    for i in 0..layers {
        let hf = |n: &str| read(&format!("model.transformer.blocks.{i}.{n}.weight"));
        for (ours, theirs, perm) in [("attn_q", "q_proj", true), ("attn_k", "k_proj", true), ("attn_v", "v_proj", false), ("attn_output", "attn_out", false), ("ffn_gate", "ff_proj", false), ("ffn_up", "up_proj", false), ("ffn_down", "ff_out", false)] {
            let w = if perm { permute(hf(theirs)) } else { hf(theirs) };
            tensors.push((format!("blk.{i}.{ours}.weight"), q8(w)));
        }
        tensors.push((format!("blk.{i}.attn_norm.weight"), f32(hf("attn_norm"))));
        tensors.push((format!("blk.{i}.ffn_norm.weight"), f32(hf("ff_norm"))));
    }
    use gguf_file::Value as V;
    let meta: Vec<(&str, V)> = vec![
        ("general.architecture", V::String("llada".into())),
        ("llada.block_count", V::U32(layers as u32)),
        ("llada.context_length", V::U32(u("max_sequence_length") as u32)),
        ("llada.embedding_length", V::U32(hidden as u32)),
        ("llada.feed_forward_length", V::U32(mlp as u32)),
        ("llada.attention.head_count", V::U32(heads as u32)),
        ("llada.attention.head_count_kv", V::U32(u("n_kv_heads") as u32)),
        ("llada.attention.layer_norm_rms_epsilon", V::F32(cfg["rms_norm_eps"].as_f64().unwrap() as f32)),
        ("llada.rope.freq_base", V::F32(cfg["rope_theta"].as_f64().unwrap() as f32)),
        ("llada.vocab_size", V::U32(vocab as u32)),
        ("tokenizer.ggml.mask_token_id", V::U32(u("mask_token_id") as u32)),
        ("tokenizer.ggml.eos_token_id", V::U32(u("eos_token_id") as u32)),
        ("tokenizer.ggml.padding_token_id", V::U32(u("pad_token_id") as u32)),
    ];
    std::fs::create_dir_all(dir).unwrap();
    let path = dir.join("stipple-mini-q8_0.gguf");
    let mut file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
    let meta_refs: Vec<(&str, &V)> = meta.iter().map(|(k, v)| (*k, v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut file, &meta_refs, &tensor_refs).unwrap();
    drop(file);
    std::fs::copy(src.join("tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    path
}

#[test]
fn q8_0_stipple_mini_agrees_with_the_embedded_model() {
    let plain = load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../models/stipple-mini/text"));
    let dir = std::env::temp_dir().join(format!("stipple-gguf-mini-{}", std::process::id()));
    let q8 = load(&stipple_mini_q8_0(&dir));
    let prompts = ["Once upon a time", "The little dog", "She opened the door and", "Tom and Lily went to the park. They", "It was a sunny day"];
    let cfg = GenerateConfig { gen_len: 48, steps: 48, block_len: 16, ..GenerateConfig::default() };
    let cases: Vec<_> = prompts.iter().map(|p| (plain.prompt_ids(p, true).unwrap(), cfg.clone())).collect();
    let (share, free) = agreement(&plain, &q8, &cases);
    std::fs::remove_dir_all(&dir).unwrap();
    eprintln!("stipple-mini Q8_0: {:.1}% of greedy tokens as the f16 safetensors model run in f32 ({:.1}% free-running)", share * 100.0, free * 100.0);
    assert!(share >= 0.95, "stipple-mini Q8_0: only {:.1}% of greedy tokens agree", share * 100.0);
}

/// First-forward logits of a canvas.
fn logits(model: &TextModel, canvas: &[u32]) -> Vec<f32> {
    let input = Tensor::from_vec(canvas.to_vec(), (1, canvas.len()), &Device::Cpu).unwrap();
    let span = Span { ids: &input, start: 0, positions: None, key_mask: None, logits_rows: None };
    model.lm.forward(&span, None, false).unwrap().flatten_all().unwrap().to_vec1().unwrap()
}

fn correlation(a: &[f32], b: &[f32]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().map(|&x| x as f64).sum::<f64>() / n, b.iter().map(|&x| x as f64).sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x as f64 - ma, y as f64 - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    sab / (saa * sbb).sqrt()
}

#[test]
fn quantized_logits_track_the_plain_ones() {
    let canvas = ids(&expected("llada-tiny")["first_logits"]["canvas"]);
    let plain = logits(&load(&gguf("llada-tiny-f32.gguf")), &canvas);
    // the file's types, as llama-quantize chose them for 64-wide rows
    let file = GgufFile::open(&gguf("llada-tiny-q4_k_m.gguf")).unwrap();
    eprintln!("llada-tiny-q4_k_m.gguf tensor types: {:?}", stipple_text::gguf::type_counts(&file));
    // Q4_K_M falls back to Q5_0 on these 64- and 96-wide rows; each weight matrix keeps a
    // 0.999 correlation with its f32 values, which two random layers amplify to about
    // 0.96 on the logits (the same when every matrix is expanded, CANDLE_DEQUANTIZE_ALL=1)
    for (name, min) in [("llada-tiny-f16.gguf", 0.9999), ("llada-tiny-q8_0.gguf", 0.998), ("llada-tiny-q4_k_m.gguf", 0.95)] {
        let got = logits(&load(&gguf(name)), &canvas);
        let r = correlation(&plain, &got);
        eprintln!("{name}: logits correlation with f32 {r:.6}");
        assert!(r >= min, "{name}: logits correlation {r} < {min}");
    }
}

#[test]
fn metadata_tokenizer_matches_tokenizer_json() {
    let texts = ["Hello world", "  leading and   several    spaces  ", "lines\n\nwith\r\nbreaks\n", "caf\u{e9} \u{4e2d}\u{6587} \u{1F600}", "I'm sure you'll see it's", "12345 and 3.14159", ""];
    for (dir, file) in [("llada-tiny", "llada-tiny-f32.gguf"), ("dream-tiny", "dream-tiny-f32.gguf")] {
        let hf = stipple_text::tokenizer::TextTokenizer::load(&stipple_text::files::ModelFiles::from_dir(&fixture(dir)).unwrap()).unwrap();
        let from_meta = load(&gguf(file));
        for t in texts {
            for special in [false, true] {
                assert_eq!(from_meta.tokenizer.encode(t, special).unwrap(), hf.encode(t, special).unwrap(), "{file}: {t:?} (special {special})");
            }
            let ids = hf.encode(t, false).unwrap();
            assert_eq!(from_meta.tokenizer.decode(&ids, true).unwrap(), hf.decode(&ids, true).unwrap(), "{file}: decode {t:?}");
        }
    }
}

#[test]
fn a_tokenizer_json_beside_the_file_is_preferred() {
    let dir = std::env::temp_dir().join(format!("stipple-gguf-beside-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(gguf("llada-tiny-q8_0.gguf"), dir.join("model.gguf")).unwrap();
    // a tokenizer.json that differs from the metadata's (dream-tiny's): it must be the one used
    std::fs::copy(fixture("dream-tiny/tokenizer.json"), dir.join("tokenizer.json")).unwrap();
    let beside = load(&dir.join("model.gguf"));
    let hf = stipple_text::tokenizer::TextTokenizer::from_files(&fixture("dream-tiny/tokenizer.json"), None).unwrap();
    assert_eq!(beside.tokenizer.encode("<|im_start|>Hello world", true).unwrap(), hf.encode("<|im_start|>Hello world", true).unwrap());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn broken_files_get_clear_errors() {
    let dir = std::env::temp_dir().join(format!("stipple-gguf-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bytes = std::fs::read(gguf("llada-tiny-q8_0.gguf")).unwrap();
    let err = |path: &Path| match TextModel::load(path.to_str().unwrap(), &Device::Cpu, DType::F32) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => e.to_string(),
    };
    // cut inside the tensor data
    let cut = dir.join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() - 1000]).unwrap();
    let e = err(&cut);
    assert!(e.contains("cut.gguf") && e.contains("bytes"), "{e}");
    // cut inside the header
    let header = dir.join("header.gguf");
    std::fs::write(&header, &bytes[..100]).unwrap();
    assert!(err(&header).contains("not a readable GGUF file"), "{}", err(&header));
    // not GGUF at all
    let junk = dir.join("junk.gguf");
    std::fs::write(&junk, b"this is not a model").unwrap();
    assert!(err(&junk).contains("not a readable GGUF file"), "{}", err(&junk));
    // missing
    assert!(err(&dir.join("missing.gguf")).contains("no such GGUF file"));
    std::fs::remove_dir_all(&dir).unwrap();
}


/// `--quantize q8_0` on the safetensors checkpoint runs exactly the converter's Q8_0 file:
/// the same bytes (candle's Q8_0 is the converter's), so the same logits, bit for bit.
#[test]
fn quantizing_at_load_runs_the_converters_q8_0_file() {
    use stipple_text::quantize::parse;
    for (dir, file) in [("llada-tiny", "llada-tiny-q8_0.gguf"), ("dream-tiny", "dream-tiny-q8_0.gguf")] {
        let at_load = TextModel::load_quantized(fixture(dir).to_str().unwrap(), &Device::Cpu, DType::F32, Some(parse("Q8_0").unwrap())).unwrap();
        let from_file = load(&gguf(file));
        let canvas = ids(&expected(dir)["first_logits"]["canvas"]);
        let (a, b) = (logits(&at_load, &canvas), logits(&from_file, &canvas));
        let worst = a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        assert_eq!(worst, 0.0, "{dir}: --quantize q8_0 vs {file}");
        let plain = load(&fixture(dir));
        assert_ne!(logits(&plain, &canvas), a, "{dir}: quantizing changed nothing");
    }
    // rows that do not split into k-quant blocks (64 wide, blocks of 256) stay plain
    let q4k = TextModel::load_quantized(fixture("llada-tiny").to_str().unwrap(), &Device::Cpu, DType::F32, Some(parse("q4_k").unwrap())).unwrap();
    let canvas = ids(&expected("llada-tiny")["first_logits"]["canvas"]);
    assert_eq!(logits(&q4k, &canvas), logits(&load(&fixture("llada-tiny")), &canvas));
    let e = parse("q3_xs").unwrap_err().to_string();
    assert!(e.contains("q8_0") && e.contains("q4_k"), "{e}");
}
