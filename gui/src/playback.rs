//! Playing a clip on the default sound device (rodio), once or looped, with the position
//! for the waveform's playhead. The device opens on the first Play; without one, the
//! studio says so and goes on.

use std::num::NonZero;

use rodio::Source;

/// The sound output and what is playing on it.
#[derive(Default)]
pub struct Playback {
    sink: Option<rodio::MixerDeviceSink>,
    player: Option<rodio::Player>,
    message: Option<String>,
    seconds: f64,
    looped: bool,
}

impl Playback {
    /// Plays mono `samples` at `rate`, over and over when `looped` (stopping what played).
    pub fn play(&mut self, samples: &[f32], rate: u32, looped: bool) {
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
        let (Some(sink), Some(nz_rate)) = (&self.sink, NonZero::new(rate)) else { return };
        let player = rodio::Player::connect_new(sink.mixer());
        let clip = rodio::buffer::SamplesBuffer::new(NonZero::<u16>::MIN, nz_rate, samples.to_vec());
        if looped {
            player.append(clip.repeat_infinite());
        } else {
            player.append(clip);
        }
        self.player = Some(player);
        self.seconds = samples.len() as f64 / rate as f64;
        self.looped = looped;
        self.message = Some(if looped { "playing (looped)".into() } else { "playing".into() });
    }

    /// Stops playing.
    pub fn stop(&mut self) {
        if let Some(p) = self.player.take() {
            p.stop();
        }
        self.message = None;
    }

    /// Where the playhead is, in seconds into the clip, while playing.
    pub fn position(&self) -> Option<f64> {
        let p = self.player.as_ref().filter(|p| !p.empty())?;
        let at = p.get_pos().as_secs_f64();
        Some(if self.looped && self.seconds > 0.0 { at % self.seconds } else { at.min(self.seconds) })
    }

    /// What happened on the last Play (none while idle).
    pub fn message(&self) -> Option<&str> {
        if self.player.as_ref().is_some_and(rodio::Player::empty) {
            return Some("finished");
        }
        self.message.as_deref()
    }
}
