//! Every request type's parameter table in one list ([`stipple_core::params`]): what
//! `docs/parameters.md` is rendered from and what the table test walks.

use stipple_core::params::{Probe, Probed};

/// The tables of every request type, each with a valid request to probe from.
pub fn tables() -> Vec<Box<dyn Probe>> {
    vec![
        Box::new(Probed { table: &stipple_text::generate::params::PARAMS, base: || stipple_text::GenerateConfig { gen_len: 32, steps: 32, block_len: 65_536, ..Default::default() } }),
        Box::new(Probed { table: &stipple_image::request::PARAMS, base: stipple_image::ImageRequest::default }),
        Box::new(Probed { table: &stipple_audio::pipeline::PARAMS, base: stipple_audio::MusicRequest::default }),
        Box::new(Probed { table: &stipple_audio::params::PARAMS, base: || stipple_audio::SpectrogramParams { max_frequency: 400.0, ..stipple_audio::SpectrogramParams::riffusion() } }),
        #[cfg(feature = "train")]
        Box::new(Probed { table: &stipple_core::training::run::PARAMS, base: stipple_core::training::run::RunSettings::default }),
    ]
}

/// `docs/parameters.md`: every table as Markdown.
pub fn markdown() -> String {
    let mut s = String::from(
        "# Parameters\n\n\
         Every numeric parameter of every request, with its allowed range and the rules between\n\
         parameters. The CLI, batch files, the studio, the server and the Rust API check the same\n\
         tables (`validate` on each request type), so they refuse the same values with the same\n\
         message. Limits that depend on the model (its context length, vocabulary, VAE factor,\n\
         sample rate) are checked when a run starts. This file is generated from the tables\n\
         (`cargo run -- params > docs/parameters.md`); a test checks it is up to date.\n",
    );
    for t in tables() {
        s.push('\n');
        s.push_str(&t.markdown());
    }
    s
}
