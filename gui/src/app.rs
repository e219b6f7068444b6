//! The studio window: one tab per modality over the shared diffusion core, the models
//! loading in the background from the moment it opens.

use std::path::PathBuf;
use std::sync::Arc;

use candle_core::Device;

use crate::image_panel::ImagePanel;
use crate::job::Waker;
use crate::music_panel::MusicPanel;
use crate::text_panel::TextPanel;

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
}

/// The tabs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tab {
    /// Text generation.
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
    wake: Waker,
}

impl Studio {
    /// Opens the studio and starts loading its models; `wake` asks for a repaint when
    /// background work has news.
    pub fn new(opts: &StudioOptions, wake: Waker) -> Self {
        Self {
            tab: Tab::Text,
            text: TextPanel::new(opts.text.as_deref(), opts.device.clone(), wake.clone()),
            image: ImagePanel::new(opts.image.as_deref(), opts.device.clone(), wake.clone()),
            music: MusicPanel::new(opts.music.as_deref(), opts.device.clone(), wake.clone()),
            wake,
        }
    }

    /// Whether any tab has work running.
    pub fn is_busy(&self) -> bool {
        self.text.is_running() || self.image.tab.is_running() || self.music.tab.is_running()
    }

    /// Draws the whole window (eframe calls it each frame; the UI tests too).
    pub fn ui_contents(&mut self, ui: &mut egui::Ui) {
        egui::Panel::top("tabs").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.heading("stipple studio");
                ui.separator();
                ui.selectable_value(&mut self.tab, Tab::Text, "Text");
                ui.selectable_value(&mut self.tab, Tab::Image, "Image");
                ui.selectable_value(&mut self.tab, Tab::Music, "Music");
            });
        });
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| match self.tab {
                Tab::Text => self.text.ui(ui, &self.wake),
                Tab::Image => self.image.ui(ui, &self.wake),
                Tab::Music => self.music.ui(ui, &self.wake),
            });
        });
        // finished work in a hidden tab is collected too
        self.text.poll();
        self.image.tab.poll();
        self.music.tab.poll();
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
        viewport: egui::ViewportBuilder::default().with_title("stipple studio").with_inner_size([920.0, 760.0]),
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
