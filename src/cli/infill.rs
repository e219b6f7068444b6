//! `stipple infill`: fill a template's holes under constraints.

use anyhow::Result;
use clap::Args;
use stipple_core::progress::Progress;
use stipple_text::generate::CanvasView;
use stipple_text::infill::{InfillOptions, Template, infill};
use stipple_text::GenerateConfig;

use super::Global;
use super::text::{DecodeArgs, text_outputs, write_text};

/// `stipple infill` arguments.
#[derive(Args, Debug)]
pub struct InfillArgs {
    /// Model folder, hub id, or GGUF file (default: the embedded stipple-mini text model).
    #[arg(long)]
    pub model: Option<String>,
    /// Quantize the weights as they load: q8_0, q6_k, q5_k, q5_0, q4_k or q4_0 (llama.cpp's
    /// types; activations stay f32). Smaller, and q8_0 runs llama.cpp's Q8_0 file exactly.
    #[arg(long, value_parser = super::text::parse_quantize)]
    pub quantize: Option<candle_core::quantized::GgmlDType>,
    /// Template: fixed text with holes such as [4], [1..3], [4 /regex/], [1 {cat,dog}], [3 chars:[a-z]].
    #[arg(long)]
    pub template: String,
    /// Text the model sees before the template (not part of the result).
    #[arg(long)]
    pub context: Option<String>,
    /// Model calls (default: one per hole position).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Write the filled text to this file instead of stdout.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// Replace an existing file.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub decode: DecodeArgs,
}

/// Run `stipple infill`; returns the JSON summary.
pub fn run(g: &Global, args: &InfillArgs) -> Result<serde_json::Value> {
    let template = Template::parse(&args.template)?;
    let paths = text_outputs(g, args.out.as_deref(), 1, args.overwrite)?;
    let mut decode = GenerateConfig { seed: g.seed.unwrap_or(0), ..GenerateConfig::default() };
    args.decode.apply(&mut decode);
    let opts = InfillOptions { steps: args.steps, decode, context: args.context.clone(), ..InfillOptions::default() };
    let source = match &args.model {
        Some(m) => m.clone(),
        None => stipple::defaults::model("text")?.display().to_string(),
    };
    let model = g.models.text(&source, &g.device, g.dtype, args.quantize)?;
    let mut bar = g.step_bar("infill");
    let out = infill(&model, &template, &opts, Some(&mut bar as &mut dyn Progress<CanvasView>))?;
    bar.finish();
    if let Some(path) = paths.first() {
        write_text(path, &out.text, args.overwrite)?;
    }
    let mut summary = serde_json::to_value(&out)?;
    if !paths.is_empty() {
        summary["paths"] = serde_json::json!(paths);
    }
    if !g.quiet() {
        match paths.first() {
            Some(p) => eprintln!("wrote {}", p.display()),
            None => println!("{}", out.text),
        }
        for h in &out.holes {
            eprintln!("  hole {}: {:?}", h.name, h.text);
        }
        eprintln!("{} model calls, {:.1} ms", out.nfe, out.elapsed_ms);
    }
    Ok(summary)
}
