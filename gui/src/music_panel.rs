//! The Music tab: text-to-music with a Riffusion-layout model. The spectrogram forms
//! step by step as images do; the clip shows as a spectrogram with time and frequency
//! axes and a waveform with a playhead; it plays once or looped; it can be continued,
//! and an opened WAV can be transformed (audio-to-audio).

use std::path::Path;

use candle_core::{Device, Tensor};
use stipple_audio::SpectrogramParams;
use stipple_audio::pipeline::{MusicRequest, Riffusion};
use stipple_audio::wav::{self, WavFormat};
use stipple_core::progress::StepEvent;
use stipple_image::preview::Previewer;

use crate::app::Tab;
use crate::dialogs::{Dialog, Pick};
use crate::diffusion_controls::DiffusionControls;
use crate::diffusion_tab::DiffusionTab;
use crate::job::Waker;
use crate::music_views;
use crate::params::{MusicParams, Params};
use crate::playback::Playback;
use crate::run::run_bar;
use crate::widgets::{self, SaveAction, SaveTarget};
use crate::work::{Inputs, Output, Preview, StudioQueue, Ticket, progress_of};

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
    /// The model's spectrogram parameters (the axes).
    pub params: SpectrogramParams,
}

/// Audio the next run transforms.
pub struct SourceAudio {
    /// Mono samples at the model's rate.
    pub samples: Vec<f32>,
    /// Where it came from.
    pub source: String,
}

/// The Music tab's state.
pub struct MusicPanel {
    /// The model, controls and last clip.
    pub tab: DiffusionTab<Riffusion, MusicResult>,
    /// Clip length in seconds (0: one window, or the source audio's length).
    pub seconds: f64,
    /// Make a seamless loop.
    pub looped: bool,
    /// How much of the source audio to repaint.
    pub strength: f64,
    /// Audio to transform (audio-to-audio).
    pub source: Option<SourceAudio>,
    /// Play clips over and over.
    pub loop_playback: bool,
    /// A message about the last opened file.
    pub notice: Option<String>,
    /// Where "Save" writes.
    pub save: SaveTarget,
    texture: Option<((usize, usize), egui::TextureHandle)>,
    playback: Playback,
    open: Dialog,
}

impl MusicPanel {
    /// A panel loading `model` (when given) on `device`.
    pub fn new(model: Option<&Path>, device: Device, wake: Waker) -> Self {
        let empty = "no music model: choose a Riffusion-layout diffusers folder (e.g. a download of riffusion/riffusion-model-v1) and press Load";
        let controls = DiffusionControls::new("piano chords in c major, 110 bpm, with drums", 30, 7.5);
        Self {
            tab: DiffusionTab::new(model, device, wake, empty, controls),
            seconds: 0.0,
            looped: false,
            strength: 0.6,
            source: None,
            loop_playback: false,
            notice: None,
            save: SaveTarget::new("stipple-music.wav", "WAV audio", &["wav"]),
            texture: None,
            playback: Playback::default(),
            open: Dialog::default(),
        }
    }

    /// The loaded model's sample rate.
    pub fn rate(&self) -> Option<u32> {
        self.tab.slot.ready().map(|m| m.codec().params().sample_rate)
    }

    /// Opens a WAV to transform (resampled to the model's rate).
    pub fn open_source(&mut self, path: &Path) {
        let Some(rate) = self.rate() else {
            self.notice = Some("load a music model before opening audio (its sample rate is needed)".into());
            return;
        };
        match wav::read_mono(path, rate) {
            Ok(w) => {
                self.notice = Some(format!("opened {} ({:.1} s) for audio-to-audio", path.display(), w.samples.len() as f64 / rate as f64));
                self.source = Some(SourceAudio { samples: w.samples, source: path.display().to_string() });
            }
            Err(e) => self.notice = Some(format!("could not open {}: {e}", path.display())),
        }
    }

    /// Takes a recorded run's settings; `init` and `continued` are its audio, read back.
    pub fn apply(&mut self, p: &MusicParams, init: Option<Vec<f32>>) {
        self.tab.apply(&p.run);
        (self.seconds, self.looped, self.strength) = (p.seconds, p.looped, p.strength);
        self.source = init.map(|samples| SourceAudio { samples, source: "reused".into() });
    }

    fn params(&self, seed: u64) -> MusicParams {
        MusicParams {
            run: self.tab.controls.params(self.tab.model_name(), seed),
            seconds: self.seconds,
            looped: self.looped,
            strength: self.strength,
            init_audio: None,
            continue_from: None,
        }
    }

    /// Queues a run with the current settings; `continue_from` continues that clip.
    pub fn generate(&mut self, queue: &mut StudioQueue, continue_from: Option<Vec<f32>>) {
        let Some((riff, sampler, seed)) = self.tab.prepare_run() else { return };
        let rate = riff.codec().params().sample_rate;
        let c = &self.tab.controls;
        let req = MusicRequest {
            prompt: c.prompt.clone(),
            negative_prompt: c.negative(),
            seconds: (self.seconds > 0.0).then_some(self.seconds),
            steps: Some(c.steps),
            guidance: Some(c.guidance),
            sampler,
            seed,
            init_audio: if continue_from.is_none() { self.source.as_ref().map(|s| s.samples.clone()) } else { None },
            strength: self.strength,
            looped: self.looped && continue_from.is_none(),
            continue_from,
            ..MusicRequest::default()
        };
        if let Err(e) = req.validate() {
            self.tab.last.failed(e);
            return;
        }
        let inputs = Inputs { init_audio: req.init_audio.clone(), continue_from: req.continue_from.clone(), sample_rate: rate, ..Inputs::default() };
        let mut params = self.params(seed);
        params.looped = req.looped;
        self.playback.stop();
        queue.submit(Ticket { tab: Tab::Music, params: Params::Music(params), inputs }, move |reporter, cancel| {
            // each window's spectrogram as it forms, as the Image tab shows pictures
            let previewer = Previewer::for_pipeline(&riff.pipeline, None);
            reporter.stage("denoising");
            let mut progress = |e: &StepEvent<'_, Tensor>| {
                let picture = e.preview.and_then(|l| previewer.preview(l).ok()).map(Preview::Music);
                reporter.step(e.step, e.total, picture);
            };
            let out = riff.generate(&req, &mut progress, cancel)?;
            Ok(Output::Music(MusicResult { audio: out.audio, sample_rate: out.sample_rate, spectrogram: out.spectrogram, seed, params: riff.codec().params().clone() }))
        });
    }

    /// Writes a clip (16-bit WAV), its spectrogram and its source audio into the history
    /// folder; returns the file names.
    pub fn record(dir: &Path, stem: &str, params: &mut Params, clip: &MusicResult, inputs: &Inputs) -> anyhow::Result<Vec<String>> {
        let wav_name = format!("{stem}.wav");
        wav::write_mono(&dir.join(&wav_name), &clip.audio, clip.sample_rate, WavFormat::Pcm16, false)?;
        let png_name = format!("{stem}-spectrogram.png");
        stipple_image::metadata::write_png(&dir.join(&png_name), &clip.spectrogram, None, false)?;
        if let Params::Music(p) = params {
            for (audio, suffix, field) in [(&inputs.init_audio, "init", &mut p.init_audio), (&inputs.continue_from, "continued", &mut p.continue_from)] {
                if let Some(a) = audio {
                    let name = format!("{stem}-{suffix}.wav");
                    wav::write_mono(&dir.join(&name), a, inputs.sample_rate, WavFormat::Float32, false)?;
                    *field = Some(name);
                }
            }
        }
        Ok(vec![wav_name, png_name])
    }

    /// Shows a finished clip.
    pub fn finish(&mut self, clip: MusicResult, seconds: f64, history_id: Option<u64>) {
        let secs = clip.audio.len() as f64 / clip.sample_rate.max(1) as f64;
        let stats = format!("{secs:.2} s at {} Hz, seed {}: made in {seconds:.1} s", clip.sample_rate, clip.seed);
        self.tab.last.done(clip, stats, history_id);
    }

    fn source_ui(&mut self, ui: &mut egui::Ui) {
        if let Some(p) = self.open.take() {
            self.open_source(&p);
        }
        ui.horizontal(|ui| {
            if ui.button("Open WAV…").on_hover_text("transform a recording (audio-to-audio); or drop a WAV on the window").clicked() {
                self.open.start(Pick::Open("WAV audio", &["wav"]));
            }
            if self.source.is_some() && ui.button("Remove source audio").clicked() {
                self.source = None;
            }
        });
        if let Some(n) = &self.notice {
            ui.weak(n);
        }
        if let Some(s) = &self.source {
            ui.label(format!("audio-to-audio from {}", s.source));
            ui.horizontal(|ui| {
                let l = ui.label("Strength");
                ui.add(egui::Slider::new(&mut self.strength, 0.01..=1.0).max_decimals(2)).labelled_by(l.id).on_hover_text("how much to repaint: low keeps the recording, 1 ignores it");
            });
        }
    }

    /// Draws the tab.
    pub fn ui(&mut self, ui: &mut egui::Ui, queue: &mut StudioQueue) {
        self.tab.slot.ui(ui, true);
        self.tab.controls.ui(ui, "music-controls", true);
        ui.horizontal(|ui| {
            let l = ui.label("Seconds (0: one window)");
            ui.add(egui::Slider::new(&mut self.seconds, 0.0..=60.0).max_decimals(1)).labelled_by(l.id);
            ui.checkbox(&mut self.looped, "Seamless loop").on_hover_text("make the end flow into the start");
        });
        ui.collapsing("Audio-to-audio", |ui| self.source_ui(ui));
        let ready = self.tab.slot.ready().is_some();
        let progress = progress_of(queue, Tab::Music);
        if run_bar(ui, queue, progress.as_ref(), Tab::Music, ready) {
            self.generate(queue, None);
        }
        ui.separator();
        let width = ui.available_width().clamp(240.0, 720.0);
        if let Some(p) = &progress {
            if let Some(Preview::Music(img)) = &p.preview {
                if self.texture.as_ref().is_none_or(|(k, _)| *k != (usize::MAX, p.step)) {
                    self.texture = Some(((usize::MAX, p.step), widgets::texture(ui.ctx(), "music-spectrogram", img)));
                }
                if let Some((_, tex)) = &self.texture {
                    ui.weak("the current window's spectrogram, forming");
                    let size = widgets::fitted(img, 256.0);
                    ui.add(egui::Image::from_texture(tex).fit_to_exact_size(size));
                }
            }
        }
        let mut continue_clip = None;
        if let (None, Some(r)) = (&progress, &self.tab.last.result) {
            let key = (self.tab.last.finished, 0);
            if self.texture.as_ref().is_none_or(|(k, _)| *k != key) {
                self.texture = Some((key, widgets::texture(ui.ctx(), "music-spectrogram", &r.spectrogram)));
            }
            let secs = r.audio.len() as f64 / r.sample_rate.max(1) as f64;
            if let Some((_, tex)) = &self.texture {
                music_views::spectrogram(ui, tex, &r.params, secs, width, 160.0);
            }
            let playhead = self.playback.position();
            music_views::waveform(ui, &r.audio, r.sample_rate, playhead, width, 56.0);
            if playhead.is_some() {
                ui.ctx().request_repaint();
            }
            self.tab.last.stats_ui(ui);
            ui.horizontal(|ui| {
                if ui.button("Play").clicked() {
                    self.playback.play(&r.audio, r.sample_rate, self.loop_playback);
                }
                if ui.button("Stop").clicked() {
                    self.playback.stop();
                }
                ui.checkbox(&mut self.loop_playback, "Loop playback");
                if let Some(m) = self.playback.message() {
                    ui.weak(m);
                }
            });
            if ui.add_enabled(ready, egui::Button::new("Continue this clip")).on_hover_text("add Seconds (one window at 0) of new music after it").clicked() {
                continue_clip = Some(r.audio.clone());
            }
            if let SaveAction::Write(path, overwrite) = self.save.ui(ui) {
                let (audio, rate) = (r.audio.clone(), r.sample_rate);
                self.save.save(&path, overwrite, |p, o| Ok(wav::write_mono(p, &audio, rate, WavFormat::Pcm16, o)?));
            }
        }
        if let Some(clip) = continue_clip {
            self.generate(queue, Some(clip));
        }
        self.tab.last.error_ui(ui);
    }
}
