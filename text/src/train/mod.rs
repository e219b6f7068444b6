//! Training and measuring text models (the `train` feature): [`corpus`] (cleaning
//! sources, training tokenizers), [`objective`] (LLaDA's masked-diffusion objective on
//! the inference network), [`recipe`] (the `stipple train` text runs on the core's run
//! driver) and [`eval`] (held-out accuracy and likelihood bound).

pub mod corpus;
pub mod eval;
pub mod objective;
pub mod recipe;
