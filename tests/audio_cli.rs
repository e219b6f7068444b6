//! `stipple audio`: the codec subcommands on the torchaudio fixtures (audio/tests/fixtures,
//! made by tools/make_audio_fixtures.py), text-to-music with the tiny Riffusion-layout
//! model, its JSON report, previews, overwrite protection and clear errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("audio/tests/fixtures")
}

fn stipple(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stipple")).args(args).output().expect("run stipple")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stipple-audio-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn json(out: &std::process::Output) -> Value {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Samples of a 16-bit WAV file.
fn wav_len(p: &Path) -> (usize, u32) {
    let r = hound::WavReader::open(p).unwrap();
    (r.len() as usize, r.spec().sample_rate)
}

#[test]
fn spectrogram_and_render_subcommands() {
    let dir = scratch("codec");
    let png = dir.join("amen.png");
    let wav = dir.join("amen.wav");
    let input = fixtures().join("loop_amen.wav");
    let v = json(&stipple(&["--json", "audio", "spectrogram", &s(&input), &s(&png)]));
    assert_eq!((v["width"].as_u64(), v["height"].as_u64()), (Some(151), Some(512)));
    // the same picture as Riffusion's (torchaudio) within one level
    let ours = image::open(&png).unwrap().to_rgb8();
    let theirs = image::open(fixtures().join("loop_amen.png")).unwrap().to_rgb8();
    let worst = ours.as_raw().iter().zip(theirs.as_raw()).map(|(a, b)| (*a as i32 - *b as i32).abs()).max().unwrap();
    assert!(worst <= 1, "{worst}");
    let v = json(&stipple(&["--json", "audio", "render", &s(&png), &s(&wav)]));
    assert_eq!(v["sample_rate"].as_u64(), Some(44_100));
    assert_eq!(wav_len(&wav), (150 * 441, 44_100));
    // existing outputs are kept unless --overwrite
    let before = std::fs::read(&wav).unwrap();
    let again = stipple(&["audio", "render", &s(&png), &s(&wav)]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("--overwrite"));
    assert_eq!(std::fs::read(&wav).unwrap(), before);
    assert!(stipple(&["audio", "render", &s(&png), &s(&wav), "--overwrite", "--iterations", "4"]).status.success());
    // bad inputs: clear errors, exit 2
    for (args, needle) in [
        (vec!["audio", "spectrogram", "/nonexistent.wav", &s(&dir.join("x.png"))], "nonexistent.wav"),
        (vec!["audio", "render", &s(&input), &s(&dir.join("y.wav"))], "not a readable image"),
    ] {
        let out = stipple(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}

#[test]
fn text_to_music_writes_audio_spectrogram_and_report() {
    let dir = scratch("music");
    let model = fixtures().join("riffusion-tiny");
    let out = dir.join("clip.wav");
    let preview = dir.join("preview.png");
    let v = json(&stipple(&[
        "--json", "--seed", "4", "audio", "lofi hip hop beat", "--model", &s(&model), "--seconds", "1.5",
        "--steps", "3", "--preview", &s(&preview), "--out", &s(&out),
    ]));
    assert_eq!(v["paths"][0].as_str(), Some(s(&out).as_str()));
    assert_eq!(v["sample_rate"].as_u64(), Some(16_000));
    assert_eq!(v["seconds"].as_f64(), Some(1.5));
    assert_eq!(v["seed"].as_u64(), Some(4));
    assert!(v["elapsed_ms"].as_f64().unwrap() > 0.0);
    assert_eq!(wav_len(&out), (24_000, 16_000));
    let png = PathBuf::from(v["spectrogram"].as_str().unwrap());
    assert_eq!(png, dir.join("clip.png"));
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (151, 64));
    assert!(preview.exists(), "a per-step preview was written");
    // the spectrogram PNG renders back with the parameters stored in it (16 kHz)
    let back = dir.join("back.wav");
    assert!(stipple(&["audio", "render", &s(&png), &s(&back)]).status.success());
    assert_eq!(wav_len(&back).1, 16_000);
    // same seed, same clip; and the outputs are protected
    let out2 = dir.join("clip2.wav");
    json(&stipple(&["--json", "--seed", "4", "audio", "--prompt", "lofi hip hop beat", "--model", &s(&model), "--seconds", "1.5", "--steps", "3", "--out", &s(&out2)]));
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&out2).unwrap());
    let again = stipple(&["audio", "x", "--model", &s(&model), "--out", &s(&out), "--steps", "1"]);
    assert_eq!(again.status.code(), Some(2));
    // audio-to-audio, interpolation and loops run through the same command
    let a2a = dir.join("a2a.wav");
    let v = json(&stipple(&["--json", "audio", "jazz", "--model", &s(&model), "--init-audio", &s(&out), "--strength", "0.5", "--steps", "2", "--out", &s(&a2a)]));
    assert_eq!(v["seconds"].as_f64(), Some(1.5));
    let morph = dir.join("morph.wav");
    let v = json(&stipple(&["--json", "audio", "jazz", "--to-prompt", "metal", "--to-seed", "9", "--model", &s(&model), "--seconds", "2", "--steps", "2", "--out", &s(&morph)]));
    assert!(v["windows"].as_u64().unwrap() > 1);
    let looped = dir.join("loop.wav");
    json(&stipple(&["--json", "audio", "drums", "--loop", "--model", &s(&model), "--seconds", "1", "--steps", "2", "--out", &s(&looped)]));
    assert_eq!(wav_len(&looped).0, 16_000);
    // a continuation is the clip and then one second more
    let longer = dir.join("longer.wav");
    let v = json(&stipple(&["--json", "audio", "drums", "--continue-from", &s(&looped), "--model", &s(&model), "--seconds", "1", "--steps", "2", "--out", &s(&longer)]));
    assert_eq!(wav_len(&longer).0, 32_000, "{v}");
    let both = stipple(&["audio", "drums", "--continue-from", &s(&looped), "--loop", "--model", &s(&model), "--out", &s(&dir.join("x.wav"))]);
    assert_eq!(both.status.code(), Some(2));
}

#[test]
fn music_errors_are_clear() {
    let dir = scratch("errors");
    let model = fixtures().join("riffusion-tiny");
    let m = s(&model);
    let out = s(&dir.join("o.wav"));
    for (args, needle) in [
        (vec!["audio", "--model", m.as_str(), "--out", out.as_str()], "give a prompt"),
        (vec!["audio", "x", "--model", "/nonexistent/riffusion", "--out", out.as_str()], "/nonexistent/riffusion"),
        (vec!["audio", "x", "--model", m.as_str(), "--seconds=-2", "--out", out.as_str()], "seconds"),
        (vec!["audio", "x", "--model", m.as_str(), "--strength", "0", "--out", out.as_str()], "strength"),
        (vec!["audio", "x", "--model", m.as_str(), "--init-audio", "/nonexistent.wav", "--out", out.as_str()], "nonexistent.wav"),
        (vec!["audio", "x", "--model", m.as_str(), "--scheduler", "nope", "--out", out.as_str()], "nope"),
    ] {
        let o = stipple(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    assert!(!dir.join("o.wav").exists());
}
