//! The whole music path (prompt -> spectrogram windows through the image pipeline and the
//! core's samplers -> audio) on `riffusion-tiny`, a tiny random pipeline in Riffusion's
//! layout made by `tools/make_audio_fixtures.py`. The weights are random, so these tests
//! check structure and behaviour (lengths, windows, determinism, seams, interpolation,
//! progress, cancellation), not musical quality.

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use std::path::{Path, PathBuf};
use stipple_audio::{AudioError, MusicRequest, Riffusion};
use stipple_core::progress::{CancelToken, NoProgress, StepEvent};

fn model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/riffusion-tiny")
}

fn load() -> Riffusion {
    Riffusion::load(&model(), &Device::Cpu, DType::F32).unwrap()
}

fn req(prompt: &str, seconds: f64) -> MusicRequest {
    MusicRequest { prompt: prompt.into(), seconds: Some(seconds), steps: Some(3), seed: 5, ..MusicRequest::default() }
}

fn run(r: &Riffusion, q: &MusicRequest) -> stipple_audio::MusicOutput {
    r.generate(q, &mut NoProgress, &CancelToken::new()).unwrap()
}

#[test]
fn layout_and_parameters_are_read() {
    let r = load();
    let p = r.codec().params();
    assert_eq!((p.sample_rate, p.num_frequencies), (16_000, 64));
    assert_eq!(r.window_columns(), 64);
}

#[test]
fn one_window_is_deterministic_and_seeded() -> Result<()> {
    let r = load();
    let a = run(&r, &req("lofi piano", 0.5));
    assert_eq!(a.audio.len(), 8000);
    assert_eq!(a.windows, 1);
    assert_eq!(a.spectrogram.height(), 64);
    assert_eq!(a.spectrogram.width(), 51);
    assert!(a.audio.iter().all(|x| x.is_finite()));
    let peak = a.audio.iter().fold(0f32, |m, x| m.max(x.abs()));
    assert!((0.9..=1.0).contains(&peak), "peak {peak}");
    let again = run(&r, &req("lofi piano", 0.5));
    assert_eq!(a.audio, again.audio);
    let other = run(&r, &MusicRequest { seed: 6, ..req("lofi piano", 0.5) });
    assert_ne!(a.spectrogram, other.spectrogram);
    let prompt = run(&r, &req("heavy metal drums", 0.5));
    assert_ne!(a.spectrogram, prompt.spectrogram);
    Ok(())
}

#[test]
fn long_clips_are_painted_in_overlapping_windows() -> Result<()> {
    let r = load();
    let mut events = Vec::new();
    let mut progress = |e: &StepEvent<'_, Tensor>| events.push((e.step, e.total, e.preview.is_some()));
    let out = r.generate(&req("ambient pads", 2.0), &mut progress, &CancelToken::new())?;
    // 201 columns from 64-column windows that share 16: 1 + ceil(137 / 48) = 4
    assert_eq!(out.windows, 4);
    assert_eq!(out.audio.len(), 32_000);
    assert_eq!(out.spectrogram.width(), 201);
    // steps count up over the whole clip and end at the total
    assert!(events.len() >= 4 * 2, "{events:?}");
    assert!(events.windows(2).all(|w| w[1].0 == w[0].0 + 1), "{events:?}");
    let last = events.last().unwrap();
    assert_eq!(last.0, last.1);
    assert!(events.iter().all(|e| e.2), "every step carries the latents for previews");
    assert!(out.audio.iter().all(|x| x.is_finite()));
    // the same request again gives the same clip (every window's noise is seeded)
    let again = r.generate(&req("ambient pads", 2.0), &mut NoProgress, &CancelToken::new())?;
    assert_eq!(out.spectrogram, again.spectrogram);
    Ok(())
}

#[test]
fn audio_to_audio_follows_the_input_length() -> Result<()> {
    let r = load();
    let first = run(&r, &req("rock", 1.0));
    let out = run(&r, &MusicRequest { seconds: None, init_audio: Some(first.audio.clone()), strength: 0.5, ..req("jazz", 1.0) });
    // the input's length decides the clip's: 1 + 16000 / 160 columns
    assert_eq!(out.spectrogram.width(), 101);
    assert!(out.audio.len() >= 16_000);
    // low strength keeps more of the input than high strength does
    let diff = |o: &stipple_audio::MusicOutput| {
        let (a, b) = (&first.spectrogram, &o.spectrogram);
        let w = a.width().min(b.width());
        (0..w).flat_map(|x| (0..64).map(move |y| (x, y))).map(|(x, y)| (a.get_pixel(x, y).0[0] as f64 - b.get_pixel(x, y).0[0] as f64).abs()).sum::<f64>()
    };
    let strong = run(&r, &MusicRequest { seconds: None, init_audio: Some(first.audio.clone()), strength: 1.0, ..req("jazz", 1.0) });
    assert!(diff(&out) < diff(&strong), "{} vs {}", diff(&out), diff(&strong));
    Ok(())
}

#[test]
fn interpolation_moves_from_one_prompt_and_seed_to_the_other() -> Result<()> {
    let r = load();
    let q = MusicRequest { to_prompt: Some("church organ".into()), to_seed: Some(99), ..req("synth bass", 2.0) };
    let out = run(&r, &q);
    assert_eq!(out.windows, 4);
    // the same walk with the same endpoints is the same; a different end differs only
    // after the start (window 0 is the start prompt and seed exactly)
    let other = run(&r, &MusicRequest { to_prompt: Some("choir".into()), to_seed: Some(7), ..q.clone() });
    let cols = |img: &image::RgbImage, xs: std::ops::Range<u32>| xs.flat_map(|x| (0..64).map(move |y| (x, y))).map(|(x, y)| img.get_pixel(x, y).0[0]).collect::<Vec<_>>();
    assert_eq!(cols(&out.spectrogram, 0..40), cols(&other.spectrogram, 0..40));
    assert_ne!(cols(&out.spectrogram, 160..200), cols(&other.spectrogram, 160..200));
    Ok(())
}

#[test]
fn loops_keep_the_length_and_join_end_to_start() -> Result<()> {
    let r = load();
    let out = run(&r, &MusicRequest { looped: true, ..req("drum loop", 1.0) });
    assert_eq!(out.audio.len(), 16_000);
    assert_eq!(out.spectrogram.width(), 101);
    Ok(())
}

/// A continuation keeps the clip as it was and adds `seconds` of new music after it,
/// without a jump at the join; its spectrogram is the clip's and then the new part's.
#[test]
fn continuations_keep_the_clip_and_add_music_after_it() -> Result<()> {
    let r = load();
    let first = run(&r, &req("jazz", 1.0));
    let out = run(&r, &MusicRequest { continue_from: Some(first.audio.clone()), seed: 9, ..req("jazz", 1.0) });
    // the clip, then one second more; the crossfade overlaps at most the clip's last eighth
    // window (the mini model's window: 64 columns of 512 samples)
    assert_eq!(out.audio.len(), first.audio.len() + 16_000);
    let kept = first.audio.len() - 64 * 512 / 8;
    assert_eq!(&out.audio[..kept], &first.audio[..kept]);
    let rms = |x: &[f32]| (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt();
    let added = &out.audio[first.audio.len()..];
    assert!(rms(added) > 0.01, "the continuation is silent");
    // the spectrogram: the clip's (as its audio analyses), then the new part's
    let clip_image = r.codec().image_from_audio(&first.audio)?.0;
    assert!(out.spectrogram.width() > clip_image.width());
    assert_eq!(image::imageops::crop_imm(&out.spectrogram, 0, 0, clip_image.width(), 64).to_image(), clip_image);
    // what cannot be combined is refused before any work
    let bad = |q: MusicRequest| r.generate(&q, &mut NoProgress, &CancelToken::new()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(bad(MusicRequest { continue_from: Some(first.audio.clone()), looped: true, ..req("x", 1.0) }).contains("loop"));
    assert!(bad(MusicRequest { continue_from: Some(vec![]), ..req("x", 1.0) }).contains("empty"));
    Ok(())
}

#[test]
fn bad_requests_and_cancellation_are_errors() {
    let r = load();
    let bad = |q: MusicRequest| r.generate(&q, &mut NoProgress, &CancelToken::new()).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(bad(req("x", -1.0)).contains("seconds"));
    assert!(bad(MusicRequest { strength: 0.0, ..req("x", 1.0) }).contains("strength"));
    assert!(bad(MusicRequest { init_audio: Some(vec![]), ..req("x", 1.0) }).contains("empty"));
    let cancel = CancelToken::new();
    cancel.cancel();
    assert!(matches!(r.generate(&req("x", 1.0), &mut NoProgress, &cancel), Err(AudioError::Cancelled)));
    let missing = Riffusion::load(Path::new("/nonexistent/riffusion"), &Device::Cpu, DType::F32);
    assert!(missing.is_err());
}
