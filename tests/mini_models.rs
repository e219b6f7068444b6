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

/// With guidance, prompts from the captions draw their own picture: on a committed sample
/// of 64 training pictures (tests/fixtures/mini-emoji), the caption's own picture ranks
/// among the 5 nearest to what the embedded image model draws far more often than chance
/// (5 in 64; measured 56%), its mean rank is far better than chance (32.5; measured 7.6),
/// and guidance 5 beats no guidance (measured mean rank 21.9).
#[test]
fn image_model_draws_what_its_prompts_name() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = root.join("models/stipple-mini/image");
    let data = root.join("tests/fixtures/mini-emoji");
    let v = json(&stipple(&["--json", "--seed", "0", "train", "eval-image", "--model", &model.to_string_lossy(), "--data", &data.to_string_lossy(), "--prompts", "16", "--guidance", "1,5"]));
    let results = v["results"].as_array().unwrap();
    let top5 = |i: usize| results[i]["top5"].as_f64().unwrap();
    let rank = |i: usize| results[i]["mean_rank"].as_f64().unwrap();
    assert!(top5(1) >= 0.375 && rank(1) < 12.0, "guided: top-5 {}, mean rank {} (chance 0.08, 32.5): {v}", top5(1), rank(1));
    assert!(rank(1) < rank(0) - 5.0, "guidance does not help: {v}");
}

/// `stipple image PROMPT` with no model runs the embedded one and writes a 32 x 32 PNG
/// that is a picture, not a flat colour.
#[test]
fn image_runs_on_the_embedded_model_by_default() {
    let dir = std::env::temp_dir().join(format!("stipple-mini-image-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("apple.png");
    let v = json(&stipple(&["--json", "--seed", "1", "image", "red apple", "--out", &out.to_string_lossy()]));
    assert_eq!(v["paths"][0].as_str().unwrap(), out.to_string_lossy());
    let img = image::open(&out).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (32, 32));
    let red_heavy = img.pixels().filter(|p| p.0[0] as i32 > p.0[1] as i32 + 60 && p.0[0] > 120).count();
    let white = img.pixels().filter(|p| p.0.iter().all(|&c| c > 220)).count();
    assert!(red_heavy >= 40 && white >= 100, "a red apple on white? {red_heavy} red and {white} white pixels");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `stipple audio PROMPT` with no model runs the embedded one: a 16 kHz WAV of the asked
/// length that is not silent, and its 64-bin spectrogram beside it.
#[test]
fn audio_runs_on_the_embedded_model_by_default() {
    let dir = std::env::temp_dir().join(format!("stipple-mini-music-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join("piano.wav");
    let v = json(&stipple(&["--json", "--seed", "0", "audio", "piano chords in c major, 110 bpm, with drums", "--seconds", "4", "--out", &out.to_string_lossy()]));
    assert_eq!((v["sample_rate"].as_u64(), v["windows"].as_u64()), (Some(16000), Some(3)), "{v}");
    let wav = stipple::audio::wav::read_mono(&out, 16000).unwrap();
    assert!((wav.samples.len() as f64 / 16000.0 - 4.0).abs() < 0.05, "{} samples", wav.samples.len());
    let rms = (wav.samples.iter().map(|v| (v * v) as f64).sum::<f64>() / wav.samples.len() as f64).sqrt();
    assert!(rms > 0.02, "nearly silent (rms {rms})");
    let png = image::open(out.with_extension("png")).unwrap();
    assert_eq!(png.height(), 64);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The embedded music model follows the instrument and the tempo of its prompts. Over
/// bass and violin chord prompts at 70, 110 and 150 bpm (4 s each, three seeds each):
/// the bass clips are darker (spectral centroid; measured 1232 vs 1775 Hz, reference
/// renders 1551 vs 1863 Hz), and the tempo heard in the clips is the prompted one
/// (measured 78% within 6%, rank correlation 0.84; by chance about 13% and 0).
#[test]
fn music_model_follows_the_instrument_and_the_tempo() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/stipple-mini/music");
    let v = json(&stipple(&["--json", "--seed", "0", "train", "eval-music", "--model", &model.to_string_lossy(), "--instruments", "bass,violin"]));
    let by = &v["generated"]["centroid_by_instrument"];
    let (bass, violin) = (by[0][1].as_f64().unwrap(), by[1][1].as_f64().unwrap());
    assert_eq!((by[0][0].as_str(), by[1][0].as_str()), (Some("bass"), Some("violin")));
    assert!(bass + 300.0 < violin, "bass {bass:.0} Hz is not darker than violin {violin:.0} Hz: {v}");
    let heard = &v["generated"]["heard"];
    assert_eq!(v["generated"]["clips"].as_array().unwrap().len(), 18);
    let (within, rho) = (heard["within_6pct"].as_f64().unwrap(), heard["rank_correlation"].as_f64().unwrap());
    assert!(within >= 0.5 && rho >= 0.5, "the prompted tempo is not heard: {within:.2} within 6%, rank correlation {rho:.2}: {v}");
}
