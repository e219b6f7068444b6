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
    // every 5th chunk is held out: about a fifth of the text (chunks end at line or
    // sentence ends, so the share depends on the sources' wording; it was exactly 4:1 too
    // tight to survive README edits)
    let (heldout, train) = (v["heldout_bytes"].as_f64().unwrap(), v["train_bytes"].as_f64().unwrap());
    let share = heldout / (heldout + train);
    assert!(heldout > 1000.0 && (0.12..0.28).contains(&share), "{v}");
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

/// Two sprites and their names: the smallest emoji set.
const SHEET: &str = r##"<svg xmlns="http://www.w3.org/2000/svg"><svg viewBox="0 0 128 128" id="1F534" xmlns="http://www.w3.org/2000/svg"><circle cx="64" cy="64" r="60" fill="#F44336"/></svg><svg viewBox="0 0 128 128" id="1F7E6" xmlns="http://www.w3.org/2000/svg"><rect x="4" y="4" width="120" height="120" fill="#1E88E5"/></svg><svg viewBox="0 0 128 128" id="1F1EB-1F1F7" xmlns="http://www.w3.org/2000/svg"><rect width="128" height="128" fill="#fff"/></svg></svg>"##;
const NAMES: &str = r#"[{"name": "LARGE RED CIRCLE", "unified": "1F534", "category": "Symbols"},
 {"name": "LARGE BLUE SQUARE", "unified": "1F7E6", "category": "Symbols"},
 {"name": "France Flag", "unified": "1F1EB-1F1F7", "category": "Flags"},
 {"name": "NO PICTURE", "unified": "1F600", "category": "Smileys & Emotion"}]"#;

#[test]
fn emoji_set_autoencoder_and_text_to_image_make_a_pipeline_stipple_image_loads() {
    let dir = std::env::temp_dir().join(format!("stipple-train-image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (sheet, names, data, model) = (dir.join("all.svg"), dir.join("emoji.json"), dir.join("emoji"), dir.join("model"));
    std::fs::write(&sheet, SHEET).unwrap();
    std::fs::write(&names, NAMES).unwrap();
    let v = json(&stipple(&["--json", "train", "prepare-emoji", "--sprites", &s(&sheet), "--names", &s(&names), "--out", &s(&data), "--size", "16", "--skip-category", "flags"]));
    assert_eq!(v["pictures"], 2, "the flag is skipped and the nameless sprite has no picture");
    let meta = std::fs::read_to_string(data.join("metadata.jsonl")).unwrap();
    assert!(meta.contains("\"large red circle\"") && meta.contains("\"large blue square\""), "{meta}");

    let run = ["--steps", "3", "--warmup", "1", "--batch", "2", "--checkpoint-every", "2"];
    let (data_s, vae_s, model_s) = (s(&data), s(&model.join("vae")), s(&model));
    let vae: Vec<&str> = ["--json", "train", "vae", "--data", &data_s, "--out", &vae_s, "--size", "16", "--channels", "8,16", "--groups", "4"].iter().copied().chain(run).collect();
    let v = json(&stipple(&vae));
    assert_eq!(v["steps"], 3);
    let cfg: Value = serde_json::from_str(&std::fs::read_to_string(model.join("vae/config.json")).unwrap()).unwrap();
    let scale = cfg["scaling_factor"].as_f64().unwrap();
    assert!(scale.is_finite() && scale > 0.0 && scale != 1.0, "measured scaling factor: {scale}");
    fails_with(&stipple(&["train", "vae", "--data", &s(&data), "--out", &s(&model.join("vae")), "--channels", "8,12"]), "--resume");

    let image: Vec<&str> = ["--json", "train", "image", "--data", &data_s, "--vae", &vae_s, "--out", &model_s, "--channels", "16,32", "--groups", "8", "--heads", "2", "--text-hidden", "16", "--text-layers", "1", "--max-tokens", "8"]
        .iter()
        .copied()
        .chain(run)
        .collect();
    let v = json(&stipple(&image));
    assert_eq!(v["steps"], 3);
    for f in ["model_index.json", "scheduler/scheduler_config.json", "tokenizer/vocab.json", "tokenizer/merges.txt", "text_encoder/config.json", "text_encoder/model.safetensors", "unet/config.json", "unet/diffusion_pytorch_model.safetensors", "vae/config.json", "loss.png"] {
        assert!(model.join(f).is_file(), "{f} missing");
    }
    let out = dir.join("red.png");
    let v = json(&stipple(&["--json", "image", "large red circle", "--model", &s(&model), "--steps", "2", "--out", &s(&out)]));
    assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(16), Some(16)));
    assert!(out.is_file());
    fails_with(&stipple(&["train", "image", "--data", &s(&data), "--vae", &s(&dir.join("nothing")), "--out", &s(&dir.join("m2"))]), "stipple train vae");
    second_stages_go_on_from_trained_weights(&dir, &data_s, &model, &run);
    // the prompt-following check runs on the trained folder (an untrained model: any rank)
    let v = json(&stipple(&["--json", "train", "eval-image", "--model", &model_s, "--data", &data_s, "--prompts", "2", "--steps", "2", "--guidance", "1,4"]));
    assert_eq!((v["pictures"].as_u64(), v["chance_top1"].as_f64()), (Some(2), Some(0.5)));
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    for r in results {
        let rank = r["mean_rank"].as_f64().unwrap();
        assert!((1.0..=2.0).contains(&rank) && r["top5"] == 1.0, "{r}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

fn tensors(file: &Path) -> std::collections::HashMap<String, candle_core::Tensor> {
    candle_core::safetensors::load(file, &candle_core::Device::Cpu).unwrap()
}

fn same(a: &candle_core::Tensor, b: &candle_core::Tensor) -> bool {
    a.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap() == b.to_dtype(candle_core::DType::F32).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

/// `--init` stages: the autoencoder's decoder alone (its encoder, hence the latents, kept
/// bit for bit) and the UNet and text encoder from a trained pipeline.
fn second_stages_go_on_from_trained_weights(dir: &Path, data: &str, model: &Path, run: &[&str]) {
    let (vae2, model2) = (dir.join("vae2"), dir.join("model2"));
    let (vae_in, vae2_s, model_s, model2_s) = (s(&model.join("vae")), s(&vae2), s(model), s(&model2));
    let vae: Vec<&str> = ["--json", "--seed", "1", "train", "vae", "--data", data, "--out", &vae2_s, "--init", &vae_in, "--decoder-only", "--lr", "1e-3", "--ema", "0"].iter().copied().chain(run.iter().copied()).collect();
    assert_eq!(json(&stipple(&vae))["steps"], 3);
    let (before, after) = (tensors(&model.join("vae/diffusion_pytorch_model.safetensors")), tensors(&vae2.join("diffusion_pytorch_model.safetensors")));
    assert_eq!(before.len(), after.len());
    let (mut decoder, mut trained) = (0, 0);
    for (name, t) in &before {
        let kept = same(t, &after[name]);
        if name.starts_with("decoder.") || name.starts_with("post_quant_conv.") {
            decoder += 1;
            trained += usize::from(!kept);
        } else {
            assert!(kept, "{name} changed: the encoder must stay frozen");
        }
    }
    assert!(decoder > 10 && trained * 10 >= decoder * 9, "{trained} of {decoder} decoder tensors trained");
    // stopped after its first step and resumed (without --init: the run recorded it), it
    // ends with the same weights, the frozen encoder included
    let again = dir.join("vae2-again");
    let mut stopped = vae.clone();
    let again_s = s(&again);
    let out_at = stopped.iter().position(|a| *a == vae2_s.as_str()).unwrap();
    stopped[out_at] = &again_s;
    stopped.extend(["--max-minutes", "0"]);
    assert_eq!(json(&stipple(&stopped))["steps"], 1);
    assert_eq!(json(&stipple(&["--json", "train", "vae", "--data", data, "--out", &again_s, "--resume"]))["steps"], 3);
    let resumed = tensors(&again.join("diffusion_pytorch_model.safetensors"));
    for (name, t) in &after {
        assert!(same(t, &resumed[name]), "{name} differs after resuming");
    }
    let image: Vec<&str> = ["--json", "train", "image", "--data", data, "--vae", &vae2_s, "--out", &model2_s, "--init", &model_s, "--lr", "1e-3", "--ema", "0"].iter().copied().chain(run.iter().copied()).collect();
    assert_eq!(json(&stipple(&image))["steps"], 3);
    let (first, second) = (tensors(&model.join("unet/diffusion_pytorch_model.safetensors")), tensors(&model2.join("unet/diffusion_pytorch_model.safetensors")));
    // started from the trained weights: a few small steps move them a little
    let (a, b) = (&first["conv_in.weight"], &second["conv_in.weight"]);
    let moved = (a.to_dtype(candle_core::DType::F32).unwrap() - b.to_dtype(candle_core::DType::F32).unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
    assert!(moved > 0.0 && moved < 0.02, "conv_in moved by {moved}");
    assert_eq!(std::fs::read(model.join("tokenizer/vocab.json")).unwrap(), std::fs::read(model2.join("tokenizer/vocab.json")).unwrap());
    fails_with(&stipple(&["train", "image", "--data", data, "--vae", &s(&vae2), "--out", &s(&dir.join("m3")), "--init", &s(&dir.join("nothing"))]), "--init needs a pipeline");
    fails_with(&stipple(&["train", "vae", "--data", data, "--out", &s(&dir.join("v3")), "--decoder-only"]), "--init");
}

/// `prepare-music` renders seeded, captioned spectrogram pictures with the parameters
/// beside them (needs Debian's fluid-soundfont-gm, which .ci/run installs).
#[test]
fn music_set_is_captioned_seeded_and_carries_its_parameters() {
    let sf2 = "/usr/share/sounds/sf2/FluidR3_GM.sf2";
    assert!(Path::new(sf2).is_file(), "install Debian's fluid-soundfont-gm (see .ci/run)");
    let dir = std::env::temp_dir().join(format!("stipple-train-music-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let (a, b) = (dir.join("a"), dir.join("b"));
    for out in [&a, &b] {
        let v = json(&stipple(&["--json", "--seed", "4", "train", "prepare-music", "--soundfont", sf2, "--out", &s(out), "--clips", "3"]));
        assert_eq!((v["clips"].as_u64(), v["mel_bins"].as_u64()), (Some(3), Some(64)));
    }
    let meta = std::fs::read_to_string(a.join("metadata.jsonl")).unwrap();
    assert_eq!(meta.lines().count(), 3);
    assert!(meta.contains(" bpm") && meta.contains(" in "), "{meta}");
    assert_eq!(meta, std::fs::read_to_string(b.join("metadata.jsonl")).unwrap());
    assert_eq!(std::fs::read(a.join("images/00002.png")).unwrap(), std::fs::read(b.join("images/00002.png")).unwrap());
    let img = image::open(a.join("images/00000.png")).unwrap();
    assert_eq!((img.width(), img.height()), (64, 64));
    let params: Value = serde_json::from_str(&std::fs::read_to_string(a.join("spectrogram_params.json")).unwrap()).unwrap();
    assert_eq!((params["sample_rate"].as_u64(), params["num_frequencies"].as_u64()), (Some(16000), Some(64)));
    fails_with(&stipple(&["train", "prepare-music", "--soundfont", "/nonexistent.sf2", "--out", &s(&dir.join("c"))]), "/nonexistent.sf2");
    // with Sonic Pi drum samples: the same phrases and captions, some grooves on the kit
    let kit = Path::new(env!("CARGO_MANIFEST_DIR")).join("audio/tests/fixtures/drum-samples");
    let sampled = dir.join("sampled");
    let v = json(&stipple(&["--json", "--seed", "4", "train", "prepare-music", "--soundfont", sf2, "--out", &s(&sampled), "--clips", "8", "--samples", &s(&kit)]));
    assert_eq!(v["drum_samples"], serde_json::json!({ "kicks": 1, "snares": 1, "hats": 1 }));
    let plain = dir.join("plain");
    json(&stipple(&["--json", "--seed", "4", "train", "prepare-music", "--soundfont", sf2, "--out", &s(&plain), "--clips", "8"]));
    let captions = std::fs::read_to_string(sampled.join("metadata.jsonl")).unwrap();
    assert_eq!(captions, std::fs::read_to_string(plain.join("metadata.jsonl")).unwrap());
    let (mut with_drums, mut changed) = (0, 0);
    for (i, line) in captions.lines().enumerate() {
        let picture = |d: &Path| std::fs::read(d.join(format!("images/{i:05}.png"))).unwrap();
        let differs = picture(&sampled) != picture(&plain);
        assert!(line.contains("with drums") || !differs, "clip {i} has no drums but changed: {line}");
        with_drums += usize::from(line.contains("with drums"));
        changed += usize::from(differs);
    }
    assert!(changed >= 1 && changed < with_drums, "{changed} of {with_drums} drum clips on the sampled kit");
    fails_with(&stipple(&["train", "prepare-music", "--soundfont", sf2, "--out", &s(&dir.join("d")), "--samples", &s(&dir)]), "supersonic-scsynth-samples");
    std::fs::remove_dir_all(&dir).ok();
}

/// `eval-music` measures generated clips and, with a soundfont, reference renders of the
/// same captions (which read back their tempo); here on the tiny random Riffusion fixture.
#[test]
fn eval_music_measures_generated_and_reference_clips() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("audio/tests/fixtures/riffusion-tiny");
    let v = json(&stipple(&["--json", "train", "eval-music", "--model", &s(&model), "--soundfont", "/usr/share/sounds/sf2/FluidR3_GM.sf2", "--instruments", "bass", "--tempos", "120,150", "--steps", "4", "--seconds", "1.6", "--seeds", "2"]));
    assert_eq!(v["generated"]["clips"].as_array().unwrap().len(), 4, "two seeds per cell");
    assert!(v["generated"]["centroid_by_instrument"][0][1].as_f64().unwrap() > 0.0);
    assert_eq!(v["reference"]["heard"]["within_6pct_octave"].as_f64(), Some(1.0), "{}", v["reference"]);
    // the tempo is also read from the spectrogram, where a model draws it
    for clip in v["reference"]["clips"].as_array().unwrap() {
        let (asked, drawn) = (clip["tempo"].as_f64().unwrap(), clip["drawn_tempo"].as_f64().unwrap());
        assert!([asked, asked / 2.0].iter().any(|t| (drawn - t).abs() / t <= 0.06), "{clip}");
    }
    // the same renders made audible from their spectrograms, as generated clips are
    let through = &v["reference_through_spectrogram"];
    assert_eq!(through["clips"].as_array().unwrap().len(), 4);
    assert!(through["heard"]["within_6pct_octave"].as_f64().unwrap() >= through["heard"]["within_6pct"].as_f64().unwrap());
    fails_with(&stipple(&["train", "eval-music", "--model", &s(&model), "--soundfont", "/usr/share/sounds/sf2/FluidR3_GM.sf2", "--instruments", "kazoo"]), "kazoo");
}
