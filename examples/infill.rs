//! Constrained infilling from Rust: fixed text, holes with lengths and constraints.
//!
//! cargo run --release --example infill -- [MODEL] [TEMPLATE]
//! (defaults: the tiny test fixture and a template with every kind of hole)

use stipple::text::TextModel;
use stipple::text::infill::{Hole, InfillOptions, Template, infill};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let model_path = args.next().unwrap_or_else(|| "text/tests/fixtures/llada-tiny".into());
    let model = TextModel::load(&model_path, &candle_core::Device::Cpu, candle_core::DType::F32)?;
    let template = match args.next() {
        Some(t) => Template::parse(&t)?,
        None => Template::new()
            .text("The ")
            .hole(Hole::new(1).one_of(&["cat", "dog", "bird"]).named("animal"))
            .text(" sat on the ")
            .hole(Hole::range(1, 3).named("place"))
            .text(" in ")
            .hole(Hole::range(1, 4).regex("(19|20)[0-9]{2}").named("year"))
            .text("."),
    };
    let out = infill(&model, &template, &InfillOptions::default(), None)?;
    println!("{}", out.text);
    for h in &out.holes {
        let conf: Vec<String> = h.confidences.iter().map(|c| format!("{c:.2}")).collect();
        println!("  {:>8}: {:?} (ids {:?}, confidence {})", h.name, h.text, h.ids, conf.join(" "));
    }
    println!("{} model calls, {:.1} ms", out.nfe, out.elapsed_ms);
    Ok(())
}
