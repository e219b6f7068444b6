//! The Music tab: text-to-music with a Riffusion-layout model; shows the spectrogram, plays
//! the clip, saves a WAV. A machine without a sound card gets a message, not a crash.

use std::path::{Path, PathBuf};
use std::time::Duration;

use candle_core::{DType, Device, Tensor};
use stipple_audio::pipeline::{MusicRequest, Riffusion};
use stipple_audio::wav::{self, WavFormat};
use stipple_core::progress::StepEvent;

use crate::diffusion_controls::DiffusionControls;
use crate::job::{Job, Outcome, Waker};
use crate::model_slot::ModelSlot;
use crate::playback::Playback;
use crate::widgets::{self, RunAction};

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
    /// The model.
    pub slot: ModelSlot<Riffusion>,
    device: Device,
    /// Prompt and sampling settings.
    pub controls: DiffusionControls,
    /// Clip length in seconds (0: one window).
    pub seconds: f64,
    defaults_applied: bool,
    job: Option<Job<MusicResult, ()>>,
    /// The last result.
    pub result: Option<MusicResult>,
    texture: Option<(usize, egui::TextureHandle)>,
    shown: usize,
    /// The last error (or "cancelled").
    pub error: Option<String>,
    /// Wall time of the last run.
    pub last_time: Option<Duration>,
    /// Where "Save" writes.
    pub save_path: String,
    /// What the last save did.
    pub save_message: Option<String>,
    /// The folder typed into "Model folder".
    pub model_path: String,
    playback: Playback,
}

impl MusicPanel {
    /// A panel loading `model` (when given) on `device`.
    pub fn new(model: Option<&Path>, device: Device, wake: Waker) -> Self {
        let slot = match model {
            Some(p) => Self::load_slot(p, &device, wake),
            None => ModelSlot::Empty("no music model: give a Riffusion-layout diffusers folder (e.g. a download of riffusion/riffusion-model-v1) and press Load".into()),
        };
        Self {
            slot,
            device,
            controls: DiffusionControls::new("flute melody in d minor, 110 bpm, with drums", 30, 7.5),
            seconds: 0.0,
            defaults_applied: false,
            job: None,
            result: None,
            texture: None,
            shown: 0,
            error: None,
            last_time: None,
            save_path: "stipple-music.wav".into(),
            save_message: None,
            model_path: model.map(|p| p.display().to_string()).unwrap_or_default(),
            playback: Playback::default(),
        }
    }

    fn load_slot(path: &Path, device: &Device, wake: Waker) -> ModelSlot<Riffusion> {
        let device = device.clone();
        ModelSlot::load(path, wake, move |p| Ok(Riffusion::load(p, &device, DType::F32)?))
    }

    /// Switches to the model in `path`.
    pub fn load(&mut self, path: &Path, wake: Waker) {
        self.slot = Self::load_slot(path, &self.device, wake);
        self.defaults_applied = false;
    }

    /// Whether a generation is running.
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    /// Moves finished work along; called once per frame.
    pub fn poll(&mut self) {
        self.slot.poll();
        if !self.defaults_applied {
            if let Some(riff) = self.slot.ready() {
                self.controls.steps = riff.pipeline.default_steps().min(100);
                self.controls.guidance = riff.pipeline.default_guidance();
                self.defaults_applied = true;
            }
        }
        if let Some(job) = &mut self.job {
            if let Outcome::Done(result, took) = job.poll() {
                self.job = None;
                self.last_time = Some(took);
                match result {
                    Ok(r) => {
                        self.result = Some(r);
                        self.shown += 1;
                        self.error = None;
                    }
                    Err(e) => self.error = Some(format!("{e:#}")),
                }
            }
        }
    }

    /// Starts a generation with the current settings.
    pub fn generate(&mut self, wake: Waker) {
        let Some(riff) = self.slot.ready().cloned() else {
            self.error = Some(self.slot.describe());
            return;
        };
        let sampler = match self.controls.sampler_spec() {
            Ok(s) => s,
            Err(e) => {
                self.error = Some(format!("{e:#}"));
                return;
            }
        };
        let seed = self.controls.next_seed();
        let c = &self.controls;
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
        self.error = None;
        self.playback.stop();
        self.job = Some(Job::spawn(wake, move |reporter, cancel| {
            reporter.stage("denoising");
            let mut progress = |e: &StepEvent<'_, Tensor>| reporter.step(e.step, e.total, None);
            let out = riff.generate(&req, &mut progress, cancel)?;
            Ok(MusicResult { audio: out.audio, sample_rate: out.sample_rate, spectrogram: out.spectrogram, seed })
        }));
    }

    /// Asks the running generation to stop.
    pub fn cancel(&self) {
        if let Some(j) = &self.job {
            j.cancel();
        }
    }

    /// Writes the clip as 16-bit WAV to `save_path` (never over an existing file).
    pub fn save(&mut self) {
        let Some(r) = &self.result else { return };
        let path = PathBuf::from(&self.save_path);
        self.save_message = Some(match wav::write_mono(&path, &r.audio, r.sample_rate, WavFormat::Pcm16, false) {
            Ok(()) => format!("saved {}", path.display()),
            Err(e) => format!("{e:#}"),
        });
    }

    /// Draws the tab.
    pub fn ui(&mut self, ui: &mut egui::Ui, wake: &Waker) {
        self.poll();
        widgets::model_line(ui, &self.slot.describe());
        let running = self.is_running();
        ui.horizontal(|ui| {
            widgets::singleline(ui, "Model folder", &mut self.model_path);
            if ui.add_enabled(!running && !self.model_path.trim().is_empty(), egui::Button::new("Load")).clicked() {
                let p = PathBuf::from(self.model_path.trim());
                self.load(&p, wake.clone());
            }
        });
        self.controls.ui(ui, "music-controls", !running);
        ui.add_enabled_ui(!running, |ui| {
            ui.horizontal(|ui| {
                let l = ui.label("Seconds (0: one window)");
                ui.add(egui::Slider::new(&mut self.seconds, 0.0..=30.0).max_decimals(1)).labelled_by(l.id);
            });
        });
        let status = self.job.as_ref().map(|j| j.status());
        match widgets::run_bar(ui, running, self.slot.ready().is_some(), status.as_ref().map(|s| (s.step, s.total))) {
            RunAction::Start => self.generate(wake.clone()),
            RunAction::Cancel => self.cancel(),
            RunAction::None => {}
        }
        ui.separator();
        let mut save = false;
        if let (None, Some(r)) = (&status, &self.result) {
            if self.texture.as_ref().is_none_or(|(k, _)| *k != self.shown) {
                self.texture = Some((self.shown, widgets::texture(ui.ctx(), "music-spectrogram", &r.spectrogram)));
            }
            if let Some((_, tex)) = &self.texture {
                widgets::picture(ui, tex, 256.0);
            }
            let secs = r.audio.len() as f64 / r.sample_rate.max(1) as f64;
            if let Some(t) = self.last_time {
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
            save = widgets::save_row(ui, &mut self.save_path, &self.save_message);
        }
        if save {
            self.save();
        }
        if let Some(e) = &self.error {
            widgets::error(ui, e);
        }
    }
}
