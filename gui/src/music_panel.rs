//! The Music tab: text-to-music with a Riffusion-layout model; shows the spectrogram, plays
//! the clip, saves a WAV. A machine without a sound card gets a message, not a crash.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use stipple_audio::pipeline::{MusicRequest, Riffusion};
use stipple_audio::wav::{self, WavFormat};
use stipple_core::progress::StepEvent;

use crate::diffusion_controls::DiffusionControls;
use crate::job::{Job, Waker};
use crate::model_slot::ModelSlot;
use crate::playback::Playback;
use crate::run::Runs;
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
    /// The model.
    pub slot: ModelSlot<Riffusion>,
    device: Device,
    /// Prompt and sampling settings.
    pub controls: DiffusionControls,
    /// Clip length in seconds (0: one window).
    pub seconds: f64,
    defaults_applied: bool,
    /// Runs and their results.
    pub runs: Runs<MusicResult>,
    texture: Option<(usize, egui::TextureHandle)>,
    /// Where "Save" writes.
    pub save: SaveTarget,
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
            runs: Runs::default(),
            texture: None,
            save: SaveTarget::new("stipple-music.wav"),
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
        self.runs.is_running()
    }

    /// Moves finished work along; called once per frame.
    pub fn poll(&mut self) {
        self.slot.poll();
        if !self.defaults_applied {
            if let Some(riff) = self.slot.ready() {
                self.controls.adopt_defaults(&riff.pipeline);
                self.defaults_applied = true;
            }
        }
        self.runs.poll();
    }

    /// Starts a generation with the current settings.
    pub fn generate(&mut self, wake: Waker) {
        let Some(riff) = self.slot.ready().cloned() else {
            return self.runs.refuse(self.slot.describe());
        };
        let sampler = match self.controls.sampler_spec() {
            Ok(s) => s,
            Err(e) => return self.runs.refuse(format!("{e:#}")),
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
        self.playback.stop();
        self.runs.start(Job::spawn(wake, move |reporter, cancel| {
            reporter.stage("denoising");
            let mut progress = |e: &StepEvent<'_, Tensor>| reporter.step(e.step, e.total, None);
            let out = riff.generate(&req, &mut progress, cancel)?;
            Ok(MusicResult { audio: out.audio, sample_rate: out.sample_rate, spectrogram: out.spectrogram, seed })
        }));
    }

    /// Writes the clip as 16-bit WAV to the save path (never over an existing file).
    pub fn save(&mut self) {
        let Some(r) = &self.runs.result else { return };
        self.save.save(|path| Ok(wav::write_mono(path, &r.audio, r.sample_rate, WavFormat::Pcm16, false)?));
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
        if self.runs.bar(ui, self.slot.ready().is_some()) {
            self.generate(wake.clone());
        }
        let status = self.runs.status();
        ui.separator();
        let mut save = false;
        if let (None, Some(r)) = (&status, &self.runs.result) {
            if self.texture.as_ref().is_none_or(|(k, _)| *k != self.runs.finished) {
                self.texture = Some((self.runs.finished, widgets::texture(ui.ctx(), "music-spectrogram", &r.spectrogram)));
            }
            if let Some((_, tex)) = &self.texture {
                widgets::picture(ui, tex, 256.0);
            }
            let secs = r.audio.len() as f64 / r.sample_rate.max(1) as f64;
            if let Some(t) = self.runs.last_time {
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
        self.runs.error_ui(ui);
    }
}
