//! The studio driven through its accessibility tree (egui_kittest, no display needed),
//! with the embedded stipple-mini models: the real pipelines run on the queue's worker
//! thread while the tests step frames, as a user's clicks would. One test per point a user
//! expects: history and reuse, the queue, image editing, infilling, music, and polish.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use egui::accesskit::Role;
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use stipple_gui::history::History;
use stipple_gui::params::Params;
use stipple_gui::text_panel::Piece;
use stipple_gui::work::{Preview, progress_of};
use stipple_gui::{Studio, StudioOptions, Tab};

fn mini(kind: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../models/stipple-mini").join(kind)
}

/// A fresh folder for one test's history and files.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("stipple-studio-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The studio with the named stipple-mini models ("text", "image", "music") and its
/// history in `dir/history`.
fn studio(models: &[&str], dir: &Path) -> Harness<'static, Studio> {
    let pick = |kind: &str| models.contains(&kind).then(|| mini(kind));
    let opts = StudioOptions { text: pick("text"), image: pick("image"), music: pick("music"), device: candle_core::Device::Cpu, history: Some(dir.join("history")) };
    let app = Studio::new(&opts, Arc::new(|| {}));
    Harness::builder().with_size(egui::vec2(1280.0, 1600.0)).build_ui_state(|ui, s: &mut Studio| s.ui_contents(ui), app)
}

/// Steps frames until `done` holds (the worker threads run meanwhile).
fn step_until(h: &mut Harness<'static, Studio>, what: &str, done: impl Fn(&Studio) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !done(h.state()) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        h.step();
        std::thread::sleep(Duration::from_millis(5));
    }
    h.step();
}

fn loaded(h: &mut Harness<'static, Studio>, tab: Tab) {
    step_until(h, "the model", |s| match tab {
        Tab::Text => s.text.slot.ready().is_some(),
        Tab::Image => s.image.tab.slot.ready().is_some(),
        Tab::Music => s.music.tab.slot.ready().is_some(),
    });
}

fn show(h: &mut Harness<'static, Studio>, tab: &str) {
    h.get_by_label(tab).click();
    h.step();
}

fn generate_and_wait(h: &mut Harness<'static, Studio>) {
    // through accesskit: the result viewer may float over the button
    h.get_by_role_and_label(Role::Button, "Generate").click_accesskit();
    h.step();
    step_until(h, "the run", |s| !s.is_busy());
}

/// 1. History and reuse: two pictures land in the history with their parameters (kept on
/// disk across a restart); "Reuse parameters" on the first gives the same picture again.
#[test]
fn results_go_into_the_history_and_reuse_reproduces_them() {
    let dir = scratch("history");
    let mut h = studio(&["image"], &dir);
    show(&mut h, "Image");
    loaded(&mut h, Tab::Image);
    generate_and_wait(&mut h);
    h.state_mut().image.tab.controls.seed = 5;
    h.state_mut().image.batch = 2;
    generate_and_wait(&mut h);
    let entries = h.state().history.entries().to_vec();
    assert_eq!(entries.len(), 2, "{:?}", h.state().history.error);
    let (Params::Image(first), Params::Image(second)) = (&entries[0].params, &entries[1].params) else { panic!("not image entries") };
    assert_eq!((first.run.seed, first.batch, second.run.seed, second.batch), (0, 1, 5, 2));
    assert_eq!((first.width, first.height, first.run.prompt.as_str()), (32, 32, "red apple"));
    assert_eq!(entries[1].outputs.iter().filter(|n| n.ends_with(".png")).count(), 2);
    // on disk, with the parameters in the PNG too
    let reopened = History::open(&dir.join("history"));
    assert_eq!(reopened.entries(), &entries[..]);
    let png = reopened.path(&entries[0].outputs[0]);
    assert_eq!(stipple_image::metadata::GenerationInfo::from_png(&png).unwrap().seed, Some(0));
    let recorded = image::open(&png).unwrap().to_rgb8();
    // picture 2 of the batch is what seed 6 gives alone
    let batch_second = image::open(reopened.path(&entries[1].outputs[1])).unwrap().to_rgb8();

    // open #1 from the gallery and reuse its parameters
    h.get_by_label_contains("#1 image").click();
    h.step();
    h.step();
    assert!(h.query_by_label("Result #1").is_some());
    h.get_by_role_and_label(Role::Button, "Reuse parameters").click_accesskit();
    h.step();
    assert_eq!((h.state().image.tab.controls.seed, h.state().image.batch), (0, 1));
    generate_and_wait(&mut h);
    let again = h.state().image.tab.last.result.clone().unwrap();
    assert_eq!(again[0].image, recorded, "reusing the parameters gave another picture");
    // "Reuse seed" of #2 takes only the seed; seed 6 alone is picture 2 of #2's batch
    h.get_by_label_contains("#2 image").click();
    h.step();
    h.step();
    h.get_by_role_and_label(Role::Button, "Reuse seed").click_accesskit();
    h.step();
    assert_eq!((h.state().image.tab.controls.seed, h.state().image.batch), (5, 1));
    h.state_mut().image.tab.controls.seed = 6;
    generate_and_wait(&mut h);
    // (a batch of two and a run of one differ by float rounding at most)
    let alone = &h.state().image.tab.last.result.as_ref().unwrap()[0].image;
    let worst = alone.as_raw().iter().zip(batch_second.as_raw()).map(|(&a, &b)| a.abs_diff(b)).max().unwrap();
    assert!(worst <= 1, "picture 2 of the batch differs from seed 6 alone by {worst}/255");
    assert_eq!(h.state().history.entries().len(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file dropped on the window, as the desktop hands it over.
#[derive(Debug)]
struct Dropped(PathBuf);

impl egui::DroppedFile for Dropped {
    fn path(&self) -> &Path {
        &self.0
    }
    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(&self.0).map_err(|e| e.to_string())
    }
}

fn drop_file(h: &mut Harness<'static, Studio>, path: &Path) {
    h.input_mut().dropped_files.push(Arc::new(Dropped(path.to_path_buf())));
    h.step();
}

/// 1. PNG Info: a PNG made by AUTOMATIC1111 (its `parameters` text chunk only) dropped on
/// the window sets the Image tab's settings; a picture without parameters opens for img2img.
#[test]
fn a_dropped_a1111_png_loads_its_parameters() {
    let dir = scratch("pnginfo");
    let mut h = studio(&[], &dir);
    let path = dir.join("a1111.png");
    {
        let file = std::io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let mut enc = png::Encoder::new(file, 16, 8);
        enc.set_color(png::ColorType::Rgb);
        let text = "a lighthouse at dusk\nNegative prompt: blurry\nSteps: 24, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 6.5, Seed: 1234, Size: 640x448, Model: v1-5";
        enc.add_text_chunk("parameters".into(), text.into()).unwrap();
        let mut w = enc.write_header().unwrap();
        w.write_image_data(&[90u8; 16 * 8 * 3]).unwrap();
    }
    drop_file(&mut h, &path);
    let s = h.state();
    assert_eq!(s.tab, Tab::Image);
    let c = &s.image.tab.controls;
    assert_eq!((c.prompt.as_str(), c.negative_prompt.as_str(), c.steps, c.guidance, c.seed), ("a lighthouse at dusk", "blurry", 24, 6.5, 1234));
    assert_eq!(c.sampler.as_deref(), Some("dpm++2m-karras"));
    assert_eq!((s.image.width, s.image.height), (640, 448));
    assert!(h.query_by_label_contains("loaded the parameters").is_some());
    // a picture without parameters: img2img from it
    let plain = dir.join("plain.png");
    image::RgbImage::from_pixel(24, 16, image::Rgb([1, 2, 3])).save(&plain).unwrap();
    drop_file(&mut h, &plain);
    let init = h.state().image.init.as_ref().expect("no init image");
    assert_eq!((init.image.width(), h.state().image.width, h.state().image.height), (24, 24, 16));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 2. The queue: Generate while a job runs queues behind it, across tabs; cancelling the
/// middle job leaves the running one and the last one to finish.
#[test]
fn jobs_queue_across_tabs_and_the_middle_one_can_be_cancelled() {
    let dir = scratch("queue");
    let mut h = studio(&["text", "image", "music"], &dir);
    for tab in [Tab::Text, Tab::Image, Tab::Music] {
        loaded(&mut h, tab);
    }
    // a long first job (one token per model call)
    (h.state_mut().text.gen_len, h.state_mut().text.steps) = (96, 96);
    h.get_by_role_and_label(Role::Button, "Generate").click();
    h.step();
    show(&mut h, "Image");
    h.get_by_role_and_label(Role::Button, "Generate").click();
    h.step();
    show(&mut h, "Music");
    h.get_by_role_and_label(Role::Button, "Generate").click();
    h.step();
    // the side panel is drawn before the tab: one more frame shows the job just queued
    h.step();
    let s = h.state();
    assert_eq!(s.queue.running().map(|r| (r.id, r.meta.tab)), Some((1, Tab::Text)), "the text job should still run");
    assert_eq!(s.queue.waiting().map(|w| (w.id, w.meta.tab)).collect::<Vec<_>>(), vec![(2, Tab::Image), (3, Tab::Music)]);
    assert!(h.query_by_label_contains("#2 image").is_some() && h.query_by_label_contains("#3 music").is_some());
    h.get_by_role_and_label(Role::Button, "Remove #2").click();
    h.step();
    assert_eq!(h.state().queue.waiting().map(|w| w.id).collect::<Vec<_>>(), vec![3]);
    assert!(h.state().queue.running().is_some_and(|r| r.id == 1), "removing #2 touched the running job");
    step_until(&mut h, "the queue", |s| !s.is_busy());
    let kinds: Vec<&str> = h.state().history.entries().iter().map(|e| match e.params { Params::Text(_) => "text", Params::Image(_) => "image", Params::Music(_) => "music" }).collect();
    assert_eq!(kinds, vec!["text", "music"]);
    assert!(h.state().image.tab.last.result.is_none() && h.state().image.tab.last.error.is_none());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 3. Image editing: a result sent to inpainting, a mask painted with the brush, and a
/// repaint that changes the masked part only (unmasked pixels stay exactly).
#[test]
fn inpainting_with_a_painted_mask_keeps_the_unmasked_pixels() {
    let dir = scratch("inpaint");
    let mut h = studio(&["image"], &dir);
    show(&mut h, "Image");
    loaded(&mut h, Tab::Image);
    // size presets follow the model (32 px native)
    assert!(h.query_by_label("1:1 32x32").is_some());
    generate_and_wait(&mut h);
    let original = h.state().image.tab.last.result.clone().unwrap()[0].image.clone();
    h.get_by_role_and_label(Role::Button, "Send to inpaint").click();
    h.step();
    h.step();
    assert!(h.state().image.inpaint && h.state().image.init.is_some());
    // nothing painted yet: refused with a message
    h.state_mut().image.tab.controls.seed = 3;
    h.get_by_role_and_label(Role::Button, "Generate").click();
    h.step();
    assert!(h.state().image.tab.last.error.as_deref().unwrap_or("").contains("paint"), "{:?}", h.state().image.tab.last.error);
    // a stroke across the middle of the picture, with a brush 3 px across
    h.get_by_role_and_label(Role::Slider, "Brush size").set_value_accesskit(3.0);
    h.step();
    let canvas = h.get_by_label("Mask canvas").rect();
    let at = |fx: f32, fy: f32| egui::pos2(canvas.min.x + fx * canvas.width(), canvas.min.y + fy * canvas.height());
    h.hover_at(at(0.2, 0.5));
    h.step();
    h.drag_at(at(0.2, 0.5));
    h.step();
    for k in 1..=6 {
        h.hover_at(at(0.2 + 0.1 * k as f32, 0.5));
        h.step();
    }
    h.drop_at(at(0.8, 0.5));
    h.step();
    let mask = h.state().image.mask.as_ref().unwrap().mask.clone();
    let painted = mask.pixels().filter(|p| p.0[0] > 127).count();
    assert!(painted > 32 && painted < 32 * 32 / 2, "{painted} pixels painted");
    assert_eq!(mask.get_pixel(16, 2).0[0], 0, "the stroke spread too far");
    h.get_by_role_and_label(Role::Slider, "Strength").set_value_accesskit(1.0);
    h.step();
    generate_and_wait(&mut h);
    let out = h.state().image.tab.last.result.clone().unwrap_or_else(|| panic!("{:?}", h.state().image.tab.last.error))[0].image.clone();
    let (mut changed, mut kept) = (0, 0);
    for (x, y, m) in mask.enumerate_pixels() {
        if m.0[0] > 127 {
            changed += (out.get_pixel(x, y) != original.get_pixel(x, y)) as usize;
        } else {
            assert_eq!(out.get_pixel(x, y), original.get_pixel(x, y), "unmasked pixel ({x}, {y}) changed");
            kept += 1;
        }
    }
    assert!(kept > 0 && changed > painted / 2, "only {changed} of {painted} masked pixels changed");
    // the inputs are kept with the result, so reuse brings the mask back
    let entry = h.state().history.entries().last().cloned().unwrap();
    let Params::Image(p) = &entry.params else { panic!() };
    assert!(p.init_image.is_some() && p.mask.is_some());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 4. Text as diffusion: a template's holes fill at once, each under its constraint; the
/// live canvas shows undecided tokens and committed ones with confidences; threshold
/// (parallel) decoding takes fewer model calls.
#[test]
fn infilling_a_template_fills_every_hole_under_its_constraint() {
    let dir = scratch("infill");
    let mut h = studio(&["text"], &dir);
    loaded(&mut h, Tab::Text);
    h.get_by_label("Fill a template").click();
    h.step();
    let template = r#"{"born": "[4..10 /18[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9])/]", "pet": "[1..2 {cat,dog,whale}]", "note": "[2..6 chars:[a-z ]]"}"#;
    h.get_by_role_and_label(Role::MultilineTextInput, "Template").set_text_value_accesskit(template);
    h.step();
    assert_eq!(h.state().text.template, template);
    h.get_by_role_and_label(Role::Button, "Generate").click();
    h.step();
    // watch the canvas while it decodes: holes start undecided and fill together
    let mut seen_masked = false;
    let deadline = Instant::now() + Duration::from_secs(300);
    while h.state().is_busy() {
        if let Some(Preview::Text(c)) = progress_of(&h.state().queue, Tab::Text).and_then(|p| p.preview) {
            seen_masked |= c.pieces.iter().any(|p| *p == Piece::Masked) && c.committed() > 0;
        }
        assert!(Instant::now() < deadline, "the infill did not finish");
        h.step();
        std::thread::sleep(Duration::from_millis(2));
    }
    h.step();
    assert!(seen_masked, "no step showed committed and undecided tokens together");
    let r = h.state().text.last.result.clone().unwrap_or_else(|| panic!("{:?}", h.state().text.last.error));
    let holes: Vec<&str> = r.holes.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(holes.len(), 3);
    let full = |re: &str, s: &str| regex::Regex::new(&format!("^(?:{re})$")).unwrap().is_match(s);
    assert!(full("18[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9])", holes[0]), "{holes:?}");
    assert!(["cat", "dog", "whale"].contains(&holes[1]), "{holes:?}");
    assert!(full("[a-z ]+", holes[2]), "{holes:?}");
    assert_eq!(r.text, format!(r#"{{"born": "{}", "pet": "{}", "note": "{}"}}"#, holes[0], holes[1], holes[2]));
    // fixed spans are shown as given, filled tokens with their confidences
    let given: String = r.canvas.pieces.iter().filter_map(|p| if let Piece::Given(t) = p { Some(t.as_str()) } else { None }).collect();
    assert!(given.contains("born") && given.contains("pet") && given.contains("note"), "{given:?}");
    assert!(r.canvas.pieces.iter().filter_map(|p| if let Piece::Committed(_, c) = p { Some(*c) } else { None }).all(|c| (0.0..=1.0).contains(&c)));
    let nfe_schedule = r.nfe;
    // parallel decoding: commit everything at least 0.5 confident each step
    h.get_by_role_and_label(Role::CheckBox, "threshold").click();
    h.step();
    h.state_mut().text.threshold = Some(0.5);
    generate_and_wait(&mut h);
    let fast = h.state().text.last.result.clone().unwrap();
    assert!(fast.nfe < nfe_schedule, "threshold decoding took {} model calls, the schedule {nfe_schedule}", fast.nfe);
    let Params::Text(p) = &h.state().history.entries().last().unwrap().params else { panic!() };
    assert_eq!((p.threshold, p.mode), (Some(0.5), stipple_gui::params::TextMode::Infill));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 5. Music you can see: the spectrogram forms during the run; the clip continues (the
/// result is longer and starts with the clip); a dropped WAV is transformed.
#[test]
fn music_forms_on_screen_continues_and_transforms_a_wav() {
    let dir = scratch("music");
    let mut h = studio(&["music"], &dir);
    show(&mut h, "Music");
    loaded(&mut h, Tab::Music);
    h.get_by_role_and_label(Role::Button, "Generate").click();
    h.step();
    let mut previews = 0;
    while h.state().is_busy() {
        if let Some(Preview::Music(img)) = progress_of(&h.state().queue, Tab::Music).and_then(|p| p.preview) {
            assert_eq!(img.height(), 64);
            previews += 1;
        }
        h.step();
        std::thread::sleep(Duration::from_millis(2));
    }
    h.step();
    assert!(previews > 0, "no spectrogram preview during the run");
    let first = h.state().music.tab.last.result.clone().unwrap_or_else(|| panic!("{:?}", h.state().music.tab.last.error));
    assert_eq!((first.sample_rate, first.spectrogram.height()), (16000, 64));
    // playing: a sound card plays it, a machine without one says so; either way a message
    h.get_by_role_and_label(Role::Button, "Play").click();
    h.step();
    assert!(h.query_by_label("playing").is_some() || h.query_by_label_contains("no audio output").is_some());
    h.get_by_role_and_label(Role::Button, "Stop").click();
    h.step();
    h.get_by_role_and_label(Role::Button, "Continue this clip").click();
    h.step();
    step_until(&mut h, "the continuation", |s| !s.is_busy());
    let longer = h.state().music.tab.last.result.clone().unwrap_or_else(|| panic!("{:?}", h.state().music.tab.last.error));
    assert!(longer.audio.len() > first.audio.len() + first.audio.len() / 2, "{} after {}", longer.audio.len(), first.audio.len());
    assert_eq!(&longer.audio[..first.audio.len() / 2], &first.audio[..first.audio.len() / 2]);
    let Params::Music(p) = &h.state().history.entries().last().unwrap().params else { panic!() };
    assert!(p.continue_from.is_some());
    // audio-to-audio from a dropped WAV
    let wav = dir.join("source.wav");
    let tone: Vec<f32> = (0..16000).map(|i| (i as f32 * 440.0 * std::f32::consts::TAU / 16000.0).sin() * 0.5).collect();
    stipple_audio::wav::write_mono(&wav, &tone, 16000, stipple_audio::wav::WavFormat::Pcm16, false).unwrap();
    drop_file(&mut h, &wav);
    assert_eq!(h.state().music.source.as_ref().map(|s| s.samples.len()), Some(16000));
    generate_and_wait(&mut h);
    let Params::Music(p) = &h.state().history.entries().last().unwrap().params else { panic!() };
    assert!(p.init_audio.is_some(), "{:?}", h.state().music.tab.last.error);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 6. Ctrl+Enter generates, Esc cancels; a cancelled run keeps the previous result and
/// its statistics.
#[test]
fn shortcuts_start_and_cancel_and_a_cancelled_run_keeps_the_last_result() {
    let dir = scratch("keys");
    let mut h = studio(&["text"], &dir);
    loaded(&mut h, Tab::Text);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
    h.step();
    assert!(h.state().is_busy(), "Ctrl+Enter did not start a run");
    step_until(&mut h, "the text", |s| !s.is_busy());
    let first = h.state().text.last.result.clone().unwrap();
    let stats = h.state().text.last.stats.clone().unwrap();
    assert!(stats.contains("model calls"));
    (h.state_mut().text.gen_len, h.state_mut().text.steps) = (96, 96);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::Enter);
    h.step();
    h.key_press(egui::Key::Escape);
    h.step();
    step_until(&mut h, "the cancelled run", |s| !s.is_busy());
    assert_eq!(h.state().text.last.error.as_deref(), Some("cancelled"));
    assert!(h.query_by_label("cancelled").is_some());
    assert_eq!(h.state().text.last.result.as_ref().map(|r| &r.text), Some(&first.text));
    assert_eq!(h.state().text.last.stats.as_ref(), Some(&stats));
    assert_eq!(h.state().history.entries().len(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// 6. A bad model folder keeps the model that was loaded, and says what is wrong with it.
#[test]
fn a_bad_model_folder_keeps_the_loaded_model_and_says_why() {
    let dir = scratch("badfolder");
    let mut h = studio(&["image"], &dir);
    show(&mut h, "Image");
    loaded(&mut h, Tab::Image);
    let good = h.state().image.tab.slot.path().unwrap().to_path_buf();
    for (folder, says) in [("/nonexistent/model".to_string(), "folder does not exist: /nonexistent/model"), (dir.display().to_string(), "no model_index.json in")] {
        h.get_by_role_and_label(Role::TextInput, "Model folder").set_text_value_accesskit(&folder);
        h.step();
        h.get_by_role_and_label(Role::Button, "Load").click();
        h.step();
        step_until(&mut h, "the refusal", |s| !s.image.tab.slot.is_loading());
        assert!(h.state().image.tab.slot.error.as_deref().unwrap_or("").contains(says), "{:?}", h.state().image.tab.slot.error);
        assert!(h.query_by_label_contains(says).is_some());
        assert_eq!(h.state().image.tab.slot.path(), Some(good.as_path()));
    }
    // a folder that passes the first look but does not load: the model stays too
    let broken = dir.join("broken");
    std::fs::create_dir_all(&broken).unwrap();
    std::fs::write(broken.join("model_index.json"), "{}").unwrap();
    h.get_by_role_and_label(Role::TextInput, "Model folder").set_text_value_accesskit(&broken.display().to_string());
    h.step();
    h.get_by_role_and_label(Role::Button, "Load").click();
    h.step();
    step_until(&mut h, "the failed load", |s| !s.image.tab.slot.is_loading());
    assert!(h.state().image.tab.slot.error.as_deref().unwrap_or("").starts_with("could not load"), "{:?}", h.state().image.tab.slot.error);
    assert_eq!(h.state().image.tab.slot.path(), Some(good.as_path()));
    assert!(!h.get_by_role_and_label(Role::Button, "Generate").accesskit_node().is_disabled());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Saving asks before replacing a file, and never half-writes one.
#[test]
fn saving_over_a_file_asks_first() {
    let dir = scratch("save");
    let mut h = studio(&["text"], &dir);
    loaded(&mut h, Tab::Text);
    h.get_by_role_and_label(Role::MultilineTextInput, "Prompt").set_text_value_accesskit("The whale");
    h.step();
    generate_and_wait(&mut h);
    let r = h.state().text.last.result.clone().unwrap_or_else(|| panic!("no result: {:?}", h.state().text.last.error));
    assert_eq!(r.prompt, "The whale");
    assert!(r.text.split_whitespace().count() >= 10, "{}", r.text);
    let taken = dir.join("taken.txt");
    std::fs::write(&taken, "keep me").unwrap();
    h.state_mut().text.save.path = taken.display().to_string();
    h.get_by_role_and_label(Role::Button, "Save").click();
    h.step();
    assert!(h.query_by_label_contains("exists. Replace it?").is_some());
    h.get_by_role_and_label(Role::Button, "Keep it").click();
    h.step();
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), "keep me");
    h.get_by_role_and_label(Role::Button, "Save").click();
    h.step();
    h.get_by_role_and_label(Role::Button, "Replace").click();
    h.step();
    assert_eq!(std::fs::read_to_string(&taken).unwrap(), format!("The whale{}\n", r.text));
    let leftovers = std::fs::read_dir(&dir).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp")).count();
    assert_eq!(leftovers, 0);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn music_tab_without_a_model_says_how_to_load_one() {
    let dir = scratch("nomusic");
    let mut h = studio(&[], &dir);
    show(&mut h, "Music");
    assert!(h.query_by_label_contains("no music model").is_some());
    assert!(h.get_by_role_and_label(Role::Button, "Generate").accesskit_node().is_disabled());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The studio refuses what the CLI refuses, with the parameter table's message: the checks
/// live in the library's request types, not in the studio.
#[test]
fn bad_settings_get_the_same_message_as_the_cli() {
    let dir = scratch("badsettings");
    let mut h = studio(&["text"], &dir);
    loaded(&mut h, Tab::Text);
    (h.state_mut().text.gen_len, h.state_mut().text.block_len, h.state_mut().text.steps) = (16, 8, 3);
    generate_and_wait(&mut h);
    assert!(h.state().text.last.result.is_none());
    let err = h.state().text.last.error.clone().unwrap_or_default();
    assert!(err.contains("steps 3 must be a multiple of the number of blocks 2 (gen_len / block_len)"), "{err:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
