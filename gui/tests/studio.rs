//! The studio driven through its accessibility tree (egui_kittest, no display needed),
//! with the embedded stipple-mini models: the real pipelines run on worker threads while
//! the tests step frames, as a user's clicks would.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use stipple_gui::{Studio, StudioOptions, Tab};

fn mini(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/stipple-mini").join(kind)
}

/// The studio with the named stipple-mini models ("text", "image", "music").
fn studio(models: &[&str]) -> Harness<'static, Studio> {
    let pick = |kind: &str| models.contains(&kind).then(|| mini(kind));
    let opts = StudioOptions {
        text: pick("text"),
        image: pick("image"),
        music: pick("music"),
        device: candle_core::Device::Cpu,
    };
    let app = Studio::new(&opts, Arc::new(|| {}));
    Harness::builder().with_size(egui::vec2(920.0, 900.0)).build_ui_state(|ui, s: &mut Studio| s.ui_contents(ui), app)
}

/// Steps frames until `done` holds (the worker threads run meanwhile).
fn step_until(h: &mut Harness<'static, Studio>, what: &str, done: impl Fn(&Studio) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::sleep(Duration::from_millis(10));
    }
    h.step();
}

#[test]
fn text_tab_generates_with_the_embedded_model_and_saves_without_overwriting() {
    let mut h = studio(&["text"]);
    step_until(&mut h, "the text model", |s| s.text.slot.ready().is_some());
    // its generation_config.json set the controls
    assert_eq!((h.state().text.gen_len % 8, h.state().text.block_len), (0, 8));
    h.get_by_role_and_label(Role::MultilineTextInput, "Prompt").set_text_value_accesskit("The whale");
    h.step();
    assert_eq!(h.state().text.prompt, "The whale");
    h.get_by_role_and_label(Role::Button, "Generate").click();
    h.step();
    assert!(h.state().text.is_running());
    step_until(&mut h, "the text", |s| !s.text.is_running());
    let r = h.state().text.runs.result.clone().unwrap_or_else(|| panic!("no result: {:?}", h.state().text.runs.error));
    assert_eq!(r.prompt, "The whale");
    assert!(r.text.split_whitespace().count() >= 10, "{}", r.text);
    assert!(h.query_by_label_contains("model calls").is_some());

    let dir = std::env::temp_dir().join(format!("stipple-studio-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let taken = dir.join("taken.txt");
    std::fs::write(&taken, "keep me").unwrap();
    h.state_mut().text.save.path = taken.display().to_string();
    h.get_by_role_and_label(Role::Button, "Save").click();
    h.step();
    assert!(h.state().text.save.message.as_deref().unwrap().contains("exists"), "{:?}", h.state().text.save.message);
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "keep me");
    let fresh = dir.join("fresh.txt");
    h.state_mut().text.save.path = fresh.display().to_string();
    h.get_by_role_and_label(Role::Button, "Save").click();
    h.step();
    assert_eq!(std::fs::read_to_string(&fresh).unwrap(), format!("The whale{}\n", r.text));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn cancel_stops_a_text_run_and_says_so() {
    let mut h = studio(&["text"]);
    step_until(&mut h, "the text model", |s| s.text.slot.ready().is_some());
    h.state_mut().text.steps = 48;
    h.get_by_role_and_label(Role::Button, "Generate").click();
    h.step();
    h.get_by_role_and_label(Role::Button, "Cancel").click();
    h.step();
    step_until(&mut h, "the cancelled run", |s| !s.text.is_running());
    assert!(h.state().text.runs.result.is_none());
    assert_eq!(h.state().text.runs.error.as_deref(), Some("cancelled"));
    assert!(h.query_by_label("cancelled").is_some());
}

#[test]
fn image_tab_guidance_slider_changes_the_picture() {
    let mut h = studio(&["image"]);
    h.get_by_label("Image").click();
    h.step();
    assert_eq!(h.state().tab, Tab::Image);
    step_until(&mut h, "the image model", |s| s.image.tab.slot.ready().is_some());
    h.step();
    let mut pictures = Vec::new();
    for guidance in [1.0, 7.0] {
        h.get_by_role_and_label(Role::Slider, "Guidance").set_value_accesskit(guidance);
        h.step();
        assert_eq!(h.state().image.tab.controls.guidance, guidance);
        h.get_by_role_and_label(Role::Button, "Generate").click();
        h.step();
        step_until(&mut h, "the picture", |s| !s.image.tab.is_running());
        let r = h.state().image.tab.runs.result.clone().unwrap_or_else(|| panic!("no picture: {:?}", h.state().image.tab.runs.error));
        assert_eq!((r.info.guidance, r.info.seed, r.image.width()), (guidance, Some(0), 32));
        pictures.push(r.image);
    }
    // a real picture (not flat), and guidance visibly changes it at the same seed
    let px = |img: &image::RgbImage| img.pixels().map(|p| p.0.iter().map(|&c| c as f64).sum::<f64>() / 3.0).collect::<Vec<_>>();
    let a = px(&pictures[0]);
    let mean = a.iter().sum::<f64>() / a.len() as f64;
    let spread = (a.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / a.len() as f64).sqrt();
    assert!(spread > 20.0, "flat picture (std {spread:.1})");
    let diff: f64 = pictures[0].as_raw().iter().zip(pictures[1].as_raw()).map(|(&x, &y)| (x as f64 - y as f64).abs()).sum::<f64>() / a.len() as f64 / 3.0;
    assert!(diff > 5.0, "guidance 1 and 7 gave nearly the same picture (mean abs diff {diff:.2})");
}

#[test]
fn music_tab_without_a_model_says_how_to_load_one() {
    let mut h = studio(&[]);
    h.get_by_label("Music").click();
    h.step();
    assert!(h.query_by_label_contains("no music model").is_some());
    assert!(h.get_by_role_and_label(Role::Button, "Generate").accesskit_node().is_disabled());
    // a folder that is not a model: a message, not a crash
    h.get_by_role_and_label(Role::TextInput, "Model folder").set_text_value_accesskit("/nonexistent/model");
    h.step();
    h.get_by_role_and_label(Role::Button, "Load").click();
    h.step();
    step_until(&mut h, "the failed load", |s| !matches!(s.music.tab.slot, stipple_gui::model_slot::ModelSlot::Loading(..)));
    assert!(h.query_by_label_contains("could not load /nonexistent/model").is_some());
}

/// The Music tab with the embedded model: it takes the model's own steps, paints one
/// window, shows its spectrogram and saves a playable WAV.
#[test]
fn music_tab_makes_a_clip_with_the_default_model() {
    let mut h = studio(&["music"]);
    h.get_by_label("Music").click();
    h.step();
    step_until(&mut h, "the music model", |s| s.music.tab.slot.ready().is_some());
    h.step();
    h.get_by_role_and_label(Role::Button, "Generate").click();
    h.step();
    step_until(&mut h, "the clip", |s| !s.music.tab.is_running());
    let r = h.state().music.tab.runs.result.clone().unwrap_or_else(|| panic!("no clip: {:?}", h.state().music.tab.runs.error));
    // one 64-frame window of 32 ms hops at 16 kHz, and a 64-bin spectrogram
    assert_eq!((r.sample_rate, r.spectrogram.height(), r.spectrogram.width()), (16000, 64, 64));
    assert!((r.audio.len() as f64 / 16000.0 - 2.048).abs() < 0.05, "{} samples", r.audio.len());
    let rms = (r.audio.iter().map(|v| (v * v) as f64).sum::<f64>() / r.audio.len() as f64).sqrt();
    assert!(rms > 0.01, "silent clip (rms {rms})");
    let dir = std::env::temp_dir().join(format!("stipple-studio-music-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("clip.wav");
    h.state_mut().music.save.path = path.display().to_string();
    h.get_by_role_and_label(Role::Button, "Save").click();
    h.step();
    let wav = stipple_audio::wav::read_mono(&path, 16000).unwrap();
    assert_eq!(wav.samples.len(), r.audio.len());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The studio refuses what the CLI refuses, with the parameter table's message: the checks
/// live in the library's request types, not in the studio. (The text tab's sliders allow
/// steps that do not divide into the blocks; the image tab's sliders keep to the ranges.)
#[test]
fn bad_settings_get_the_same_message_as_the_cli() {
    let mut h = studio(&["text"]);
    step_until(&mut h, "the text model", |s| s.text.slot.ready().is_some());
    (h.state_mut().text.gen_len, h.state_mut().text.block_len, h.state_mut().text.steps) = (16, 8, 3);
    h.get_by_role_and_label(Role::Button, "Generate").click();
    h.step();
    step_until(&mut h, "the refusal", |s| !s.text.is_running());
    assert!(h.state().text.runs.result.is_none());
    let err = h.state().text.runs.error.clone().unwrap_or_default();
    assert!(err.contains("steps 3 must be a multiple of the number of blocks 2 (gen_len / block_len)"), "{err:?}");
}
