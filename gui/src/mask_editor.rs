//! The inpainting mask, painted with a round brush over the init image: white marks what
//! to repaint. Drawn as a red veil; brush size, erase and clear, as in A1111's canvas.

use image::{GrayImage, Luma};

/// A mask being painted over a picture of the same size.
pub struct MaskEditor {
    /// The mask (255: repaint, 0: keep).
    pub mask: GrayImage,
    /// Brush radius in picture pixels.
    pub brush: f32,
    /// Paint "keep" instead of "repaint".
    pub erase: bool,
    last: Option<(f32, f32)>,
    overlay: Option<egui::TextureHandle>,
    dirty: bool,
}

impl MaskEditor {
    /// An empty mask for a `width` x `height` picture.
    pub fn new(width: u32, height: u32) -> Self {
        let brush = (width.max(height) as f32 / 12.0).clamp(1.0, 64.0);
        Self { mask: GrayImage::new(width, height), brush, erase: false, last: None, overlay: None, dirty: true }
    }

    /// Whether nothing is marked for repainting.
    pub fn is_empty(&self) -> bool {
        self.mask.pixels().all(|p| p.0[0] == 0)
    }

    /// Replaces the mask (a reused run's), scaled to the picture's size.
    pub fn set(&mut self, mask: &GrayImage) {
        self.mask = image::imageops::resize(mask, self.mask.width(), self.mask.height(), image::imageops::FilterType::Nearest);
        self.dirty = true;
    }

    /// Clears the mask.
    pub fn clear(&mut self) {
        self.mask.pixels_mut().for_each(|p| p.0[0] = 0);
        self.dirty = true;
    }

    /// Paints one dab of the brush centred on picture coordinates `(x, y)`.
    pub fn dab(&mut self, x: f32, y: f32) {
        let r = self.brush.max(0.5);
        let value = if self.erase { 0 } else { 255 };
        let (w, h) = (self.mask.width() as i64, self.mask.height() as i64);
        let (x0, x1) = (((x - r).floor() as i64).max(0), ((x + r).ceil() as i64).min(w - 1));
        let (y0, y1) = (((y - r).floor() as i64).max(0), ((y + r).ceil() as i64).min(h - 1));
        for py in y0..=y1 {
            for px in x0..=x1 {
                let (dx, dy) = (px as f32 + 0.5 - x, py as f32 + 0.5 - y);
                if dx * dx + dy * dy <= r * r {
                    self.mask.put_pixel(px as u32, py as u32, Luma([value]));
                }
            }
        }
        self.dirty = true;
    }

    /// Paints a stroke from the last point (dabs every half radius), or a dab to start one.
    pub fn stroke_to(&mut self, x: f32, y: f32) {
        match self.last {
            Some((lx, ly)) => {
                let dist = ((x - lx).powi(2) + (y - ly).powi(2)).sqrt();
                let n = (dist / (self.brush * 0.5).max(0.5)).ceil().max(1.0) as usize;
                for i in 1..=n {
                    let t = i as f32 / n as f32;
                    self.dab(lx + (x - lx) * t, ly + (y - ly) * t);
                }
            }
            None => self.dab(x, y),
        }
        self.last = Some((x, y));
    }

    /// Ends a stroke.
    pub fn lift(&mut self) {
        self.last = None;
    }

    /// The brush controls: size, erase, clear.
    pub fn controls_ui(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let l = ui.label("Brush size");
            let max = (self.mask.width().max(self.mask.height()) as f32 / 2.0).max(2.0);
            ui.add(egui::Slider::new(&mut self.brush, 1.0..=max).max_decimals(0)).labelled_by(l.id);
            ui.checkbox(&mut self.erase, "Erase");
            if ui.button("Clear mask").clicked() {
                self.clear();
            }
        });
    }

    /// Draws `picture` at `size` points with the mask over it, and paints where the pointer
    /// drags (or clicks) on it.
    pub fn canvas_ui(&mut self, ui: &mut egui::Ui, picture: &egui::TextureHandle, size: egui::Vec2) -> egui::Response {
        let (rect, response) = ui.allocate_exact_size(size, egui::Sense::click_and_drag());
        response.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Canvas, true, "Mask canvas"));
        let response = response.on_hover_text("paint what to repaint; tick Erase to take it back");
        if response.is_pointer_button_down_on() || response.clicked() {
            if let Some(pos) = response.interact_pointer_pos() {
                let sx = self.mask.width() as f32 / rect.width();
                let sy = self.mask.height() as f32 / rect.height();
                self.stroke_to((pos.x - rect.min.x) * sx, (pos.y - rect.min.y) * sy);
            }
        } else {
            self.lift();
        }
        if self.dirty || self.overlay.is_none() {
            let rgba: Vec<egui::Color32> = self.mask.pixels().map(|p| if p.0[0] > 127 { egui::Color32::from_rgba_unmultiplied(255, 40, 40, 140) } else { egui::Color32::TRANSPARENT }).collect();
            let img = egui::ColorImage::new([self.mask.width() as usize, self.mask.height() as usize], rgba);
            self.overlay = Some(ui.ctx().load_texture("inpaint-mask", img, egui::TextureOptions::NEAREST));
            self.dirty = false;
        }
        let uv = egui::Rect::from_min_max(egui::pos2(0.0, 0.0), egui::pos2(1.0, 1.0));
        ui.painter().image(picture.id(), rect, uv, egui::Color32::WHITE);
        if let Some(o) = &self.overlay {
            ui.painter().image(o.id(), rect, uv, egui::Color32::WHITE);
        }
        if let Some(pos) = response.hover_pos() {
            let r = self.brush * rect.width() / self.mask.width() as f32;
            ui.painter().circle_stroke(pos, r, egui::Stroke::new(1.0, ui.visuals().strong_text_color()));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strokes_paint_a_band_and_erase_takes_it_back() {
        let mut m = MaskEditor::new(32, 32);
        assert!(m.is_empty());
        m.brush = 2.0;
        m.stroke_to(4.0, 16.0);
        m.stroke_to(28.0, 16.0);
        m.lift();
        // a continuous band along the stroke, nothing far from it
        assert!((4..28).all(|x| m.mask.get_pixel(x, 16).0[0] == 255));
        assert_eq!(m.mask.get_pixel(16, 2).0[0], 0);
        m.erase = true;
        m.stroke_to(16.0, 16.0);
        assert_eq!(m.mask.get_pixel(16, 16).0[0], 0);
        assert_eq!(m.mask.get_pixel(6, 16).0[0], 255);
        m.clear();
        assert!(m.is_empty());
    }
}
