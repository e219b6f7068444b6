//! The full settings of one run: saved beside every result in the history, read back by
//! "Reuse parameters", and shown in the queue. Field names are the CLI's (snake_case), so
//! a history entry reads like a line of a `stipple batch` job file.

use serde::{Deserialize, Serialize};

/// What a run was asked to do, by kind.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Params {
    /// A text generation or infilling.
    Text(TextParams),
    /// Pictures.
    Image(ImageParams),
    /// A music clip.
    Music(MusicParams),
}

impl Params {
    /// Its prompt (the template, when infilling).
    pub fn prompt(&self) -> &str {
        match self {
            Self::Text(p) => &p.prompt,
            Self::Image(p) => &p.run.prompt,
            Self::Music(p) => &p.run.prompt,
        }
    }

    /// One line for the queue and the history: kind, a short prompt, the main settings.
    pub fn label(&self) -> String {
        let short: String = {
            let p = self.prompt().split_whitespace().collect::<Vec<_>>().join(" ");
            if p.chars().count() > 32 { format!("{}…", p.chars().take(31).collect::<String>()) } else { p }
        };
        match self {
            Self::Text(p) => format!("{} \"{short}\", {} steps", if p.mode == TextMode::Infill { "infill" } else { "text" }, p.steps),
            Self::Image(p) => format!("image \"{short}\", {}x{}, {} steps{}", p.width, p.height, p.run.steps, if p.batch > 1 { format!(", {} pictures", p.batch) } else { String::new() }),
            Self::Music(p) => format!("music \"{short}\", {} steps", p.run.steps),
        }
    }

    /// The parameters as `name: value` rows for the result viewer.
    pub fn rows(&self) -> Vec<(String, String)> {
        let value = serde_json::to_value(self).unwrap_or_default();
        let mut rows = Vec::new();
        if let serde_json::Value::Object(map) = value {
            for (k, v) in map {
                let shown = match v {
                    serde_json::Value::Null => continue,
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                };
                rows.push((k, shown));
            }
        }
        rows
    }
}

/// Plain generation after a prompt, or filling a template's holes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TextMode {
    /// Continue the prompt.
    #[default]
    Generate,
    /// Fill the holes of a template (`stipple infill`'s syntax).
    Infill,
}

/// A text run's settings (`stipple text` / `stipple infill`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TextParams {
    /// Model folder.
    pub model: String,
    /// Generate or infill.
    pub mode: TextMode,
    /// The prompt, or the template when infilling.
    pub prompt: String,
    /// Wrap the prompt in the model's chat template (instruct models).
    pub chat: bool,
    /// Tokens to generate (generation only; a template sets its own length).
    pub gen_len: usize,
    /// Semi-autoregressive block length.
    pub block_len: usize,
    /// Model calls.
    pub steps: usize,
    /// Sampling temperature (0: greedy).
    pub temperature: f64,
    /// Nucleus filter (1: off).
    pub top_p: f64,
    /// LLaDA's classifier-free guidance weight (0: off).
    pub guidance: f64,
    /// Confidence measure: low-confidence, random, margin or entropy.
    pub remasking: String,
    /// Fast-dLLM parallel decoding: commit every token at least this confident.
    pub threshold: Option<f64>,
    /// Fast-dLLM KV cache: none, prefix or dual.
    pub cache: String,
    /// Seed.
    pub seed: u64,
}

/// What the Image and Music tabs share: the settings of a latent-diffusion run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DiffusionParams {
    /// Model folder.
    pub model: String,
    /// Prompt.
    pub prompt: String,
    /// Negative prompt (empty: none).
    pub negative_prompt: String,
    /// Denoising steps (per window, for music).
    pub steps: usize,
    /// Guidance scale.
    pub guidance: f64,
    /// Sampler (`None`: the model's own scheduler).
    pub sampler: Option<String>,
    /// Seed (picture `k` of an image batch uses `seed + k`, as A1111 does).
    pub seed: u64,
}

/// An image run's settings (`stipple image`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageParams {
    /// Model, prompt, steps, guidance, sampler, seed.
    #[serde(flatten)]
    pub run: DiffusionParams,
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Pictures per run.
    pub batch: usize,
    /// How much of the init image to repaint (img2img and inpainting).
    pub strength: f64,
    /// The init image, a file in the history folder (set when the run is recorded).
    pub init_image: Option<String>,
    /// The inpainting mask (white: repaint), a file in the history folder.
    pub mask: Option<String>,
}

/// A music run's settings (`stipple audio`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MusicParams {
    /// Model, prompt, steps, guidance, sampler, seed.
    #[serde(flatten)]
    pub run: DiffusionParams,
    /// Clip length in seconds (0: one window, or the source audio's length).
    pub seconds: f64,
    /// Make the end flow into the start.
    pub looped: bool,
    /// How much of the source audio to repaint (audio-to-audio).
    pub strength: f64,
    /// Audio to transform, a WAV in the history folder.
    pub init_audio: Option<String>,
    /// The clip this one continues, a WAV in the history folder.
    pub continue_from: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_round_trip_through_json_with_the_cli_names() {
        let run = DiffusionParams {
            model: "models/sd".into(),
            prompt: "a red apple on a wooden table, photograph".into(),
            negative_prompt: String::new(),
            steps: 20,
            guidance: 5.0,
            sampler: Some("euler-a".into()),
            seed: 7,
        };
        let p = Params::Image(ImageParams {
            run,
            width: 64,
            height: 48,
            batch: 2,
            strength: 0.75,
            init_image: None,
            mask: None,
        });
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""kind":"image""#) && json.contains(r#""negative_prompt":"""#), "{json}");
        assert_eq!(serde_json::from_str::<Params>(&json).unwrap(), p);
        assert_eq!(p.label(), "image \"a red apple on a wooden table, …\", 64x48, 20 steps, 2 pictures");
        assert!(p.rows().contains(&("sampler".into(), "euler-a".into())));
        assert!(!p.rows().iter().any(|(k, _)| k == "mask"));
    }
}
