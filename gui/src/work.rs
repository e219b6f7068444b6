//! What the studio's queue carries: a ticket (which tab, the parameters, the inputs such
//! as an init image), the previews a run shows while it works, and what it produces.

use crate::app::Tab;
use crate::image_panel::ImageResult;
use crate::music_panel::MusicResult;
use crate::params::Params;
use crate::queue::Queue;
use crate::text_panel::{CanvasPreview, TextResult};

/// A job's description.
#[derive(Clone, Debug)]
pub struct Ticket {
    /// The tab that asked for it (and shows its progress and result).
    pub tab: Tab,
    /// Its settings (recorded in the history).
    pub params: Params,
    /// Inputs that are not settings: saved into the history with the result.
    pub inputs: Inputs,
}

/// A run's inputs besides its settings.
#[derive(Clone, Debug, Default)]
pub struct Inputs {
    /// img2img / inpainting source picture.
    pub init_image: Option<image::RgbImage>,
    /// Inpainting mask (white: repaint), the init image's size.
    pub mask: Option<image::GrayImage>,
    /// Audio to transform (mono, at the model's rate).
    pub init_audio: Option<Vec<f32>>,
    /// The clip a music run continue_from (mono, at the model's rate).
    pub continue_from: Option<Vec<f32>>,
    /// The rate of that audio.
    pub sample_rate: u32,
}

/// What a running job shows.
#[derive(Clone, Debug)]
pub enum Preview {
    /// The text canvas: decided tokens with their confidences, undecided ones.
    Text(CanvasPreview),
    /// The picture so far.
    Image(image::RgbImage),
    /// The spectrogram so far.
    Music(image::RgbImage),
}

/// What a job produced.
#[derive(Clone, Debug)]
pub enum Output {
    /// Text.
    Text(TextResult),
    /// Pictures (a batch).
    Image(Vec<ImageResult>),
    /// A clip.
    Music(MusicResult),
}

/// The studio's queue.
pub type StudioQueue = Queue<Output, Preview, Ticket>;

/// How the running job of a tab is doing, for its progress bar.
#[derive(Clone, Debug)]
pub struct Progress {
    /// The job's number.
    pub id: u64,
    /// Steps done.
    pub step: usize,
    /// Steps in all.
    pub total: usize,
    /// Seconds since it started.
    pub elapsed: f64,
    /// Whether cancel was asked.
    pub cancelling: bool,
    /// Its newest preview.
    pub preview: Option<Preview>,
}

impl Progress {
    /// Seconds per step so far.
    pub fn per_step(&self) -> Option<f64> {
        (self.step > 0).then(|| self.elapsed / self.step as f64)
    }

    /// Seconds left at the pace so far.
    pub fn eta(&self) -> Option<f64> {
        self.per_step().map(|s| s * self.total.saturating_sub(self.step) as f64)
    }

    /// "step 5 / 20 · 0.12 s/step · 1.8 s left".
    pub fn describe(&self) -> String {
        let mut s = format!("step {} / {}", self.step, self.total);
        if let (Some(per), Some(eta)) = (self.per_step(), self.eta()) {
            s.push_str(&format!(" · {per:.2} s/step · {eta:.1} s left"));
        }
        if self.cancelling {
            s.push_str(" · cancelling");
        }
        s
    }
}

/// The running job's progress when it belongs to `tab`.
pub fn progress_of(queue: &StudioQueue, tab: Tab) -> Option<Progress> {
    let r = queue.running().filter(|r| r.meta.tab == tab)?;
    let s = r.status();
    Some(Progress { id: r.id, step: s.step, total: s.total, elapsed: r.elapsed().as_secs_f64(), cancelling: r.is_cancelling(), preview: s.preview })
}

/// Jobs of `tab` waiting in the queue.
pub fn waiting_for(queue: &StudioQueue, tab: Tab) -> usize {
    queue.waiting().filter(|w| w.meta.tab == tab).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_reports_pace_and_time_left() {
        let p = Progress { id: 1, step: 5, total: 20, elapsed: 1.0, cancelling: false, preview: None };
        assert_eq!(p.describe(), "step 5 / 20 · 0.20 s/step · 3.0 s left");
        let start = Progress { step: 0, ..p };
        assert_eq!(start.describe(), "step 0 / 20");
    }
}
