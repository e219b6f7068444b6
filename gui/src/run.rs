//! What a tab shows of its runs: the last result with its statistics (kept when a later
//! run fails or is cancelled), the error of the last run, and the Generate / Cancel bar
//! over the shared queue. Every tab uses these, so runs behave the same everywhere.

use crate::app::Tab;
use crate::widgets;
use crate::work::{Progress, StudioQueue, waiting_for};

/// A tab's last result (`T`) and what became of its newest run.
pub struct LastRun<T> {
    /// The last result.
    pub result: Option<T>,
    /// Its statistics line.
    pub stats: Option<String>,
    /// Why the newest run failed ("cancelled" when it was), or could not start.
    pub error: Option<String>,
    /// Results so far (tells the UI when to redraw a picture).
    pub finished: usize,
    /// The result's history entry.
    pub history_id: Option<u64>,
}

impl<T> Default for LastRun<T> {
    fn default() -> Self {
        Self { result: None, stats: None, error: None, finished: 0, history_id: None }
    }
}

impl<T> LastRun<T> {
    /// Shows a new result.
    pub fn done(&mut self, result: T, stats: String, history_id: Option<u64>) {
        self.result = Some(result);
        self.stats = Some(stats);
        self.error = None;
        self.finished += 1;
        self.history_id = history_id;
    }

    /// Records why a run failed or could not start; the last result stays.
    pub fn failed(&mut self, why: impl std::fmt::Display) {
        self.error = Some(why.to_string());
    }

    /// The error line, when there is one.
    pub fn error_ui(&self, ui: &mut egui::Ui) {
        if let Some(e) = &self.error {
            widgets::error(ui, e);
        }
    }

    /// The statistics line, when there is a result.
    pub fn stats_ui(&self, ui: &mut egui::Ui) {
        if let Some(s) = &self.stats {
            ui.weak(s);
        }
    }
}

/// Generate, Cancel and `progress`, the running job of `tab` (step, time per step, time
/// left), and how many jobs wait. Cancel stops only this tab's running job. True when
/// Generate was clicked (the tab then queues a job).
pub fn run_bar(ui: &mut egui::Ui, queue: &mut StudioQueue, progress: Option<&Progress>, tab: Tab, ready: bool) -> bool {
    let busy = !queue.is_idle();
    let mut start = false;
    ui.horizontal(|ui| {
        let hint = if busy { "adds a job to the queue (Ctrl+Enter)" } else { "start (Ctrl+Enter)" };
        if ui.add_enabled(ready, egui::Button::new("Generate")).on_hover_text(hint).clicked() {
            start = true;
        }
        if ui.add_enabled(progress.is_some(), egui::Button::new("Cancel")).on_hover_text("stop this tab's running job (Esc)").clicked()
            && let Some(p) = progress
        {
            queue.cancel(p.id);
        }
        if let Some(p) = progress {
            let f = if p.total > 0 { p.step as f32 / p.total as f32 } else { 0.0 };
            ui.add(egui::ProgressBar::new(f).text(p.describe()).animate(true));
        } else if let Some(r) = queue.running() {
            ui.weak(format!("waiting: job #{} ({}) is running", r.id, r.meta.params.label()));
        }
    });
    let waiting = waiting_for(queue, tab);
    if waiting > 0 {
        ui.weak(format!("{waiting} queued in this tab"));
    }
    start
}
