//! The Music tab: text-to-music with a Riffusion-layout model; shows the spectrogram, plays
//! the clip, saves a WAV. A machine without a sound card gets a message, not a crash.

use std::path::Path;

use candle_core::{Device, Tensor};
use stipple_audio::pipeline::{MusicRequest, Riffusion};
use stipple_audio::wav::{self, WavFormat};
use stipple_core::progress::StepEvent;

use crate::diffusion_controls::DiffusionControls;
use crate::diffusion_tab::DiffusionTab;
use crate::job::{Job, Waker};
use crate::playback::Playback;
use crate::widgets::{self, SaveTarget};

/// A finished clip.
#[derive(Clone, Debug)]
pub struct MusicResult {
    /// Mono samples.
    pub audio: Vec<f32>,
    /// Their rate.
    pub sample_rate: u32,
    /// The spectrogram it was rendered from.
    pub spectrogram: image::RgbImage,
    /// Seed of the run.
    pub seed: u64,
}

/// The Music tab's state.
pub struct MusicPanel {
    /// The model, controls and runs.
    pub tab: DiffusionTab<Riffusion, MusicResult>,
    /// Clip length in seconds (0: one window).
    pub seconds: f64,
    texture: Option<(usize, egui::TextureHandle)>,
    /// Where "Save" writes.
    pub save: SaveTarget,
    playback: Playback,
}

impl MusicPanel {
    /// A panel loading `model` (when given) on `device`.
    pub fn new(model: Option<&Path>, device: Device, wake: Waker) -> Self {
        let empty = "no music model: give a Riffusion-layout diffusers folder (e.g. a download of riffusion/riffusion-model-v1) and press Load";
        let controls = DiffusionControls::new("piano chords in c major, 110 bpm, with drums", 30, 7.5);
        Self { tab: DiffusionTab::new(model, device, wake, empty, controls), seconds: 0.0, texture: None, save: SaveTarget::new("stipple-music.wav"), playback: Playback::default() }
    }

    /// Starts a generation with the current settings.
    pub fn generate(&mut self, wake: Waker) {
        let Some((riff, sampler, seed)) = self.tab.prepare_run() else { return };
        let c = &self.tab.controls;
        let req = MusicRequest {
            prompt: c.prompt.clone(),
            negative_prompt: c.negative(),
            seconds: (self.seconds > 0.0).then_some(self.seconds),
            steps: Some(c.steps),
            guidance: Some(c.guidance),
            sampler,
            seed,
            ..MusicRequest::default()
        };
        self.playback.stop();
        self.tab.runs.start(Job::spawn(wake, move |reporter, cancel| {
            reporter.stage("denoising");
            let mut progress = |e: &StepEvent<'_, Tensor>| reporter.step(e.step, e.total, None);
            let out = riff.generate(&req, &mut progress, cancel)?;
            Ok(MusicResult { audio: out.audio, sample_rate: out.sample_rate, spectrogram: out.spectrogram, seed })
        }));
    }

    /// Writes the clip as 16-bit WAV to the save path (never over an existing file).
    pub fn save(&mut self) {
        let Some(r) = &self.tab.runs.result else { return };
        self.save.save(|path| Ok(wav::write_mono(path, &r.audio, r.sample_rate, WavFormat::Pcm16, false)?));
    }

    /// Draws the tab.
    pub fn ui(&mut self, ui: &mut egui::Ui, wake: &Waker) {
        self.tab.poll();
        self.tab.model_ui(ui, wake);
        let running = self.tab.is_running();
        self.tab.controls.ui(ui, "music-controls", !running);
        ui.add_enabled_ui(!running, |ui| {
            ui.horizontal(|ui| {
                let l = ui.label("Seconds (0: one window)");
                ui.add(egui::Slider::new(&mut self.seconds, 0.0..=30.0).max_decimals(1)).labelled_by(l.id);
            });
        });
        if self.tab.runs.bar(ui, self.tab.slot.ready().is_some()) {
            self.generate(wake.clone());
        }
        let runs = &self.tab.runs;
        let status = runs.status();
        ui.separator();
        let mut save = false;
        if let (None, Some(r)) = (&status, &runs.result) {
            if self.texture.as_ref().is_none_or(|(k, _)| *k != runs.finished) {
                self.texture = Some((runs.finished, widgets::texture(ui.ctx(), "music-spectrogram", &r.spectrogram)));
            }
            if let Some((_, tex)) = &self.texture {
                widgets::picture(ui, tex, 256.0);
            }
            let secs = r.audio.len() as f64 / r.sample_rate.max(1) as f64;
            if let Some(t) = runs.last_time {
                ui.weak(format!("{secs:.2} s at {} Hz, seed {}: made in {:.1} s", r.sample_rate, r.seed, t.as_secs_f64()));
            }
            ui.horizontal(|ui| {
                if ui.button("Play").clicked() {
                    self.playback.play(&r.audio, r.sample_rate);
                }
                if ui.button("Stop").clicked() {
                    self.playback.stop();
                }
                if let Some(m) = self.playback.message() {
                    ui.weak(m);
                }
            });
            save = self.save.ui(ui);
        }
        if save {
            self.save();
        }
        self.tab.runs.error_ui(ui);
    }
}
