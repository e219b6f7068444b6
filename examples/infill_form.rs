//! Filling a JSON form with the Rust infilling API: a date by regular expression, choices
//! from lists, a name and a note as free text with length ranges. The holes fill together,
//! each under its constraint, so the result is valid JSON whatever the model writes.
//!
//! cargo run --release --example infill_form -- [MODEL] [SEED]
//! (defaults: the embedded stipple-mini text model, seed 0)

use anyhow::{Context, Result};
use stipple::text::infill::{Hole, InfillOptions, InfillResult, Template, infill};
use stipple::text::{GenerateConfig, TextModel};

/// A ship's-register entry as a JSON template: fixed keys and punctuation, typed holes.
pub fn register_entry() -> Template {
    Template::new()
        .text("{\"name\": \"")
        .hole(Hole::range(1, 4).chars("[A-Za-z]").named("name"))
        .text("\", \"born\": \"")
        .hole(Hole::range(4, 10).regex(BORN).named("born"))
        .text("\", \"role\": \"")
        .hole(Hole::range(1, 4).one_of(&ROLES).named("role"))
        .text("\", \"ship\": \"")
        .hole(Hole::range(1, 4).one_of(&SHIPS).named("ship"))
        .text("\", \"note\": \"")
        .hole(Hole::range(2, 12).chars("[a-z ,.]").named("note"))
        .text("\"}")
}

/// Dates of birth, 1800-01-01 to 1899-12-31.
pub const BORN: &str = "18[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])";
/// The roles a register knows.
pub const ROLES: [&str; 4] = ["captain", "mate", "harpooneer", "cook"];
/// The ships.
pub const SHIPS: [&str; 3] = ["Pequod", "Rachel", "Delight"];

/// Fills the entry with `model`, sampling at temperature 0.7 from `seed`.
pub fn fill(model: &TextModel, seed: u64) -> Result<InfillResult> {
    let decode = GenerateConfig { temperature: 0.7, seed, ..GenerateConfig::default() };
    Ok(infill(model, &register_entry(), &InfillOptions { decode, ..InfillOptions::default() }, None)?)
}

fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let model_path = match args.next() {
        Some(m) => m,
        None => stipple::defaults::model("text")?.display().to_string(),
    };
    let seed = args.next().map(|s| s.parse()).transpose().context("SEED: a whole number")?.unwrap_or(0);
    let model = TextModel::load(&model_path, &candle_core::Device::Cpu, candle_core::DType::F32)?;
    let out = fill(&model, seed)?;
    println!("{}", out.text);
    let entry: serde_json::Value = serde_json::from_str(&out.text).context("the filled form is not JSON")?;
    println!("{}", serde_json::to_string_pretty(&entry)?);
    for h in &out.holes {
        let mean = h.confidences.iter().sum::<f64>() / h.confidences.len().max(1) as f64;
        println!("  {:>5}: {:?} ({} tokens, mean confidence {mean:.2})", h.name, h.text, h.ids.len());
    }
    println!("{} model calls, {:.1} ms", out.nfe, out.elapsed_ms);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every seed gives a JSON object whose fields satisfy their constraints, checked here
    /// with an independent regex engine.
    #[test]
    fn the_form_is_valid_json_with_every_field_in_its_constraint() {
        let dir = stipple::defaults::model("text").unwrap();
        let model = TextModel::load(&dir.display().to_string(), &candle_core::Device::Cpu, candle_core::DType::F32).unwrap();
        let born = regex::Regex::new(&format!("^{BORN}$")).unwrap();
        let (name, note) = (regex::Regex::new("^[A-Za-z]+$").unwrap(), regex::Regex::new("^[a-z ,.]*$").unwrap());
        for seed in 0..3 {
            let out = fill(&model, seed).unwrap();
            let entry: serde_json::Value = serde_json::from_str(&out.text).unwrap_or_else(|e| panic!("{}: {e}", out.text));
            let field = |k: &str| entry[k].as_str().unwrap_or_else(|| panic!("{k} in {entry}")).to_string();
            assert!(name.is_match(&field("name")), "{entry}");
            assert!(born.is_match(&field("born")), "{entry}");
            assert!(ROLES.contains(&field("role").as_str()), "{entry}");
            assert!(SHIPS.contains(&field("ship").as_str()), "{entry}");
            assert!(note.is_match(&field("note")), "{entry}");
            for (h, (min, max)) in out.holes.iter().zip([(1, 4), (4, 10), (1, 4), (1, 4), (2, 12)]) {
                assert!((min..=max).contains(&h.ids.len()), "{} has {} tokens", h.name, h.ids.len());
                assert_eq!(h.text, field(&h.name));
            }
        }
    }
}
