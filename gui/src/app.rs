//! The studio window: one tab per modality over the shared diffusion core, one job queue
//! for all of them, and the history of every result beside them. Models load in the
//! background from the moment it opens.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Device;
use egui::{Key, Modifiers};
use stipple_image::metadata::GenerationInfo;

use crate::gallery::Gallery;
use crate::image_panel::ImagePanel;
use crate::job::Waker;
use crate::music_panel::MusicPanel;
use crate::params::Params;
use crate::history::History;
use crate::queue::Queue;
use crate::text_panel::TextPanel;
use crate::widgets;
use crate::work::{Output, StudioQueue, Ticket};

/// What the studio opens with.
#[derive(Clone, Debug)]
pub struct StudioOptions {
    /// Text model folder (the embedded stipple-mini text model by default).
    pub text: Option<PathBuf>,
    /// Image pipeline folder.
    pub image: Option<PathBuf>,
    /// Music (Riffusion-layout) folder.
    pub music: Option<PathBuf>,
    /// Where the models run.
    pub device: Device,
    /// The history folder (`None`: [`History::default_dir`]).
    pub history: Option<PathBuf>,
}

/// The tabs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    /// Text generation and infilling.
    Text,
    /// Pictures.
    Image,
    /// Music.
    Music,
}

/// The studio's state: every tab keeps its settings and results while another is shown.
pub struct Studio {
    /// The tab shown.
    pub tab: Tab,
    /// Text tab.
    pub text: TextPanel,
    /// Image tab.
    pub image: ImagePanel,
    /// Music tab.
    pub music: MusicPanel,
    /// The job queue all tabs share.
    pub queue: StudioQueue,
    /// Every result so far, on disk.
    pub history: History,
    /// The history panel and the result viewer.
    pub gallery: Gallery,
    /// What the last dropped file did, or why it could not be used.
    pub notice: Option<String>,
}

impl Studio {
    /// Opens the studio and starts loading its models; `wake` asks for a repaint when
    /// background work has news.
    pub fn new(opts: &StudioOptions, wake: Waker) -> Self {
        let history_dir = opts.history.clone().unwrap_or_else(History::default_dir);
        Self {
            tab: Tab::Text,
            text: TextPanel::new(opts.text.as_deref(), opts.device.clone(), wake.clone()),
            image: ImagePanel::new(opts.image.as_deref(), opts.device.clone(), wake.clone()),
            music: MusicPanel::new(opts.music.as_deref(), opts.device.clone(), wake.clone()),
            queue: Queue::new(wake),
            history: History::open(&history_dir),
            gallery: Gallery::default(),
            notice: None,
        }
    }

    /// Whether a job runs or waits.
    pub fn is_busy(&self) -> bool {
        !self.queue.is_idle()
    }

    /// Queues a run of the shown tab (the Generate button, Ctrl+Enter).
    pub fn generate(&mut self) {
        match self.tab {
            Tab::Text => self.text.generate(&mut self.queue),
            Tab::Image => self.image.generate(&mut self.queue),
            Tab::Music => self.music.generate(&mut self.queue, None),
        }
    }

    /// Collects finished jobs: results go into the history and their tab, errors (a
    /// cancelled run says "cancelled") to their tab, which keeps its last result.
    pub fn collect(&mut self) {
        while let Some(f) = self.queue.poll() {
            let seconds = f.took.as_secs_f64();
            let output = match f.result {
                Ok(o) => o,
                Err(e) => {
                    let why = format!("{e:#}");
                    match f.meta.tab {
                        Tab::Text => self.text.last.failed(why),
                        Tab::Image => self.image.tab.last.failed(why),
                        Tab::Music => self.music.tab.last.failed(why),
                    }
                    continue;
                }
            };
            let id = self.record(&f.meta, &output, seconds);
            match output {
                Output::Text(r) => self.text.finish(r, seconds, id),
                Output::Image(p) => self.image.finish(p, seconds, id),
                Output::Music(c) => self.music.finish(c, seconds, id),
            }
        }
    }

    /// Writes a result into the history; a failure is shown, the result still is.
    fn record(&mut self, ticket: &Ticket, output: &Output, seconds: f64) -> Option<u64> {
        let summary = match output {
            Output::Text(r) => format!("{} tokens, {} model calls", r.tokens, r.nfe),
            Output::Image(p) => p.first().map_or(String::new(), |r| format!("{}x{}, {} picture(s)", r.info.width, r.info.height, p.len())),
            Output::Music(c) => format!("{:.2} s at {} Hz", c.audio.len() as f64 / c.sample_rate.max(1) as f64, c.sample_rate),
        };
        let inputs = &ticket.inputs;
        let added = self.history.add(ticket.params.clone(), seconds, summary, |dir, stem, params| match output {
            Output::Text(r) => TextPanel::record(dir, stem, r),
            Output::Image(p) => ImagePanel::record(dir, stem, params, p, inputs),
            Output::Music(c) => MusicPanel::record(dir, stem, params, c, inputs),
        });
        match added {
            Ok(id) => Some(id),
            Err(e) => {
                self.history.error = Some(format!("could not record the result in {}: {e:#}", self.history.dir().display()));
                None
            }
        }
    }

    /// Loads a history entry's settings into its tab ("Reuse parameters"), or only its
    /// seed, and shows that tab.
    pub fn reuse(&mut self, id: u64, seed_only: bool) {
        let Some(entry) = self.history.get(id).cloned() else { return };
        match &entry.params {
            Params::Text(p) => {
                if seed_only {
                    (self.text.seed, self.text.new_seed_each_run) = (p.seed, false);
                } else {
                    self.text.apply(p);
                }
                self.tab = Tab::Text;
            }
            Params::Image(p) => {
                if seed_only {
                    (self.image.tab.controls.seed, self.image.tab.controls.new_seed_each_run) = (p.run.seed, false);
                } else {
                    let read = |name: &Option<String>| name.as_ref().and_then(|n| image::open(self.history.path(n)).ok());
                    let init = read(&p.init_image).map(|i| i.to_rgb8());
                    let mask = read(&p.mask).map(|m| m.to_luma8());
                    self.image.apply(p, init, mask);
                }
                self.tab = Tab::Image;
            }
            Params::Music(p) => {
                if seed_only {
                    (self.music.tab.controls.seed, self.music.tab.controls.new_seed_each_run) = (p.run.seed, false);
                } else {
                    let rate = self.music.rate().unwrap_or(0);
                    let init = p.init_audio.as_ref().and_then(|n| stipple_audio::wav::read_mono(&self.history.path(n), rate).ok()).map(|w| w.samples);
                    self.music.apply(p, init);
                }
                self.tab = Tab::Music;
            }
        }
        self.notice = Some(format!("{} of result #{id}", if seed_only { "reused the seed" } else { "reused the parameters" }));
    }

    /// Sends a recorded picture to img2img or inpainting.
    pub fn send_to_image(&mut self, id: u64, index: usize, inpaint: bool) {
        let Some(name) = self.history.get(id).and_then(|e| e.outputs.get(index)).cloned() else { return };
        match image::open(self.history.path(&name)) {
            Ok(img) => {
                self.image.set_init(img.to_rgb8(), format!("result #{id}"), inpaint);
                self.tab = Tab::Image;
            }
            Err(e) => self.notice = Some(format!("could not open {name}: {e}")),
        }
    }

    /// Uses a file dropped on the window: a PNG with generation parameters (stipple's or
    /// AUTOMATIC1111's) sets the Image tab's settings; another picture opens for img2img;
    /// a WAV opens for audio-to-audio.
    pub fn open_dropped(&mut self, path: &Path) {
        let ext = path.extension().map(|e| e.to_string_lossy().to_lowercase()).unwrap_or_default();
        match ext.as_str() {
            "png" | "jpg" | "jpeg" | "webp" => {
                self.tab = Tab::Image;
                match GenerationInfo::from_png(path) {
                    Ok(info) => {
                        self.image.apply_info(&info);
                        self.notice = Some(format!("loaded the parameters of {} (seed {})", path.display(), info.seed.map_or("none".into(), |s| s.to_string())));
                    }
                    Err(_) => {
                        self.image.open_init(path);
                        self.notice = Some(format!("{} has no generation parameters: opened it for img2img", path.display()));
                    }
                }
            }
            "wav" => {
                self.tab = Tab::Music;
                self.music.open_source(path);
                self.notice = self.music.notice.clone();
            }
            _ => self.notice = Some(format!("{}: drop a PNG (its parameters, or a picture for img2img) or a WAV (audio-to-audio)", path.display())),
        }
    }

    fn shortcuts(&mut self, ui: &mut egui::Ui) {
        for (key, tab) in [(Key::Num1, Tab::Text), (Key::Num2, Tab::Image), (Key::Num3, Tab::Music)] {
            if ui.input_mut(|i| i.consume_key(Modifiers::COMMAND, key)) {
                self.tab = tab;
            }
        }
        if ui.input_mut(|i| i.consume_key(Modifiers::COMMAND, Key::Enter)) {
            self.generate();
        }
        if let Some(id) = self.queue.running().map(|r| r.id)
            && ui.input_mut(|i| i.consume_key(Modifiers::NONE, Key::Escape))
        {
            self.queue.cancel(id);
        }
        let dropped: Vec<PathBuf> = ui.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect());
        for p in dropped {
            self.open_dropped(&p);
        }
    }

    /// Draws the whole window (eframe calls it each frame; the UI tests too).
    pub fn ui_contents(&mut self, ui: &mut egui::Ui) {
        // every tab's model loads move along here, hidden tabs too
        self.text.poll();
        self.image.poll();
        self.music.tab.poll();
        self.collect();
        self.shortcuts(ui);
        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading("stipple studio");
                ui.separator();
                ui.selectable_value(&mut self.tab, Tab::Text, "Text");
                ui.selectable_value(&mut self.tab, Tab::Image, "Image");
                ui.selectable_value(&mut self.tab, Tab::Music, "Music");
                ui.separator();
                theme_ui(ui);
            });
        });
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                if let Some(n) = &self.notice {
                    ui.label(n);
                } else {
                    ui.weak("Ctrl+Enter generates · Esc cancels · Ctrl+1/2/3 switch tabs · drop a PNG or WAV on the window");
                }
            });
        });
        let mut action = None;
        egui::Panel::right("side").default_size(280.0).show(ui, |ui| {
            action = self.gallery.side_ui(ui, &mut self.queue, &mut self.history);
        });
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| match self.tab {
                Tab::Text => self.text.ui(ui, &mut self.queue),
                Tab::Image => self.image.ui(ui, &mut self.queue),
                Tab::Music => self.music.ui(ui, &mut self.queue),
            });
        });
        if let Some(a) = self.gallery.viewer_ui(ui.ctx(), &mut self.history).or(action) {
            self.act(a);
        }
        if ui.input(|i| !i.raw.hovered_files.is_empty()) {
            widgets::drop_hint(ui);
        }
    }

    fn act(&mut self, a: crate::gallery::Action) {
        use crate::gallery::Action;
        match a {
            Action::Reuse(id) => self.reuse(id, false),
            Action::ReuseSeed(id) => self.reuse(id, true),
            Action::SendToImage(id, k, inpaint) => self.send_to_image(id, k, inpaint),
        }
    }
}

/// The theme: the system's by default, or light or dark.
fn theme_ui(ui: &mut egui::Ui) {
    let mut pref = ui.ctx().options(|o| o.theme_preference);
    let before = pref;
    let l = ui.label("Theme");
    egui::ComboBox::from_id_salt("theme")
        .selected_text(format!("{pref:?}"))
        .show_ui(ui, |ui| {
            ui.selectable_value(&mut pref, egui::ThemePreference::System, "System");
            ui.selectable_value(&mut pref, egui::ThemePreference::Light, "Light");
            ui.selectable_value(&mut pref, egui::ThemePreference::Dark, "Dark");
        })
        .response
        .labelled_by(l.id);
    if pref != before {
        ui.ctx().set_theme(pref);
    }
}

impl eframe::App for Studio {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.ui_contents(ui);
    }
}

/// Opens the studio window and returns when it is closed.
pub fn run(opts: StudioOptions) -> anyhow::Result<()> {
    let native = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default().with_title("stipple studio").with_inner_size([1200.0, 820.0]).with_drag_and_drop(true),
        ..Default::default()
    };
    eframe::run_native(
        "stipple studio",
        native,
        Box::new(move |cc| {
            let ctx = cc.egui_ctx.clone();
            let wake: Waker = Arc::new(move || ctx.request_repaint());
            Ok(Box::new(Studio::new(&opts, wake)))
        }),
    )
    .map_err(|e| anyhow::anyhow!("could not open the studio window: {e} (is there a display? set DISPLAY or WAYLAND_DISPLAY)"))
}
