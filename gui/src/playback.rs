//! Playing a clip on the default sound device (rodio). The device opens on the first
//! Play; without one, the studio says so and goes on.

use std::num::NonZero;

/// The sound output and what is playing on it.
#[derive(Default)]
pub struct Playback {
    sink: Option<rodio::MixerDeviceSink>,
    player: Option<rodio::Player>,
    message: Option<String>,
}

impl Playback {
    /// Plays mono `samples` at `rate` (stopping what played before).
    pub fn play(&mut self, samples: &[f32], rate: u32) {
        self.stop();
        if self.sink.is_none() {
            match rodio::DeviceSinkBuilder::open_default_sink() {
                Ok(mut s) => {
                    s.log_on_drop(false);
                    self.sink = Some(s);
                }
                Err(e) => {
                    self.message = Some(format!("no audio output: {e}"));
                    return;
                }
            }
        }
        let (Some(sink), Some(rate)) = (&self.sink, NonZero::new(rate)) else { return };
        let player = rodio::Player::connect_new(sink.mixer());
        player.append(rodio::buffer::SamplesBuffer::new(NonZero::<u16>::MIN, rate, samples.to_vec()));
        self.player = Some(player);
        self.message = Some("playing".into());
    }

    /// Stops playing.
    pub fn stop(&mut self) {
        if let Some(p) = self.player.take() {
            p.stop();
        }
        self.message = None;
    }

    /// What happened on the last Play (none while idle).
    pub fn message(&self) -> Option<&str> {
        if self.player.as_ref().is_some_and(rodio::Player::empty) {
            return Some("finished");
        }
        self.message.as_deref()
    }
}
