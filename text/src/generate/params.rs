//! The decoding parameters' table: the ranges and interactions [`GenerateConfig::validate`]
//! enforces for `stipple text`, `stipple infill`, batch jobs, the studio, the server and
//! the API alike. Limits that depend on the model (its context length, its vocabulary)
//! are checked when decoding starts.

use stipple_core::discrete::{CommitRule, Remasking};
use stipple_core::params::{Param, Range, Rule, Table};

use super::GenerateConfig;

/// The longest canvas a request may ask to generate (tokens); models with a shorter
/// context refuse earlier.
pub const MAX_GEN_LEN: u64 = 65_536;

fn threshold(c: &GenerateConfig) -> Option<f64> {
    if let CommitRule::Threshold(t) = c.commit { Some(t) } else { None }
}

fn factor(c: &GenerateConfig) -> Option<f64> {
    if let CommitRule::Factor(f) = c.commit { Some(f) } else { None }
}

/// `GenerateConfig`'s table.
pub static PARAMS: Table<GenerateConfig> = Table {
    commands: "text, infill (GenerateConfig)",
    params: &[
        Param { name: "gen_len", flag: "--gen-len", range: Range::int(1, MAX_GEN_LEN), help: "tokens generated after the prompt", get: |c| Some(c.gen_len as f64), set: |c, v| c.gen_len = v as usize },
        Param { name: "steps", flag: "--steps", range: Range::int(1, MAX_GEN_LEN), help: "model calls, split evenly over the blocks", get: |c| Some(c.steps as f64), set: |c, v| c.steps = v as usize },
        Param { name: "block_len", flag: "--block-len", range: Range::int(1, MAX_GEN_LEN), help: "semi-autoregressive block length", get: |c| Some(c.block_len as f64), set: |c, v| c.block_len = v as usize },
        Param { name: "temperature", flag: "--temperature", range: Range::closed(0.0, 100.0), help: "sampling temperature (0: greedy)", get: |c| Some(c.temperature), set: |c, v| c.temperature = v },
        Param { name: "top_p", flag: "--top-p", range: Range::open_closed(0.0, 1.0), help: "nucleus filter", get: |c| c.top_p, set: |c, v| c.top_p = Some(v) },
        Param { name: "top_k", flag: "--top-k", range: Range::int(1, 1 << 24), help: "top-k filter (at most the vocabulary)", get: |c| c.top_k.map(|k| k as f64), set: |c, v| c.top_k = Some(v as usize) },
        Param { name: "alg_temp", flag: "--alg-temp", range: Range::open_closed(0.0, 100.0), help: "sample the positions to commit (Dream alg_temp)", get: |c| c.alg_temp, set: |c, v| c.alg_temp = Some(v) },
        Param { name: "guidance", flag: "--cfg", range: Range::closed(0.0, 100.0), help: "LLaDA classifier-free guidance weight (0: off)", get: |c| Some(c.guidance), set: |c, v| c.guidance = v },
        Param { name: "threshold", flag: "--threshold", range: Range::closed(0.0, 1.0), help: "Fast-dLLM: commit every proposal at least this confident", get: threshold, set: |c, v| c.commit = CommitRule::Threshold(v) },
        Param { name: "factor", flag: "--factor", range: Range::open_closed(0.0, 1000.0), help: "Fast-dLLM factor-based parallel decoding", get: factor, set: |c, v| c.commit = CommitRule::Factor(v) },
        Param { name: "eps", flag: "", range: Range::open(0.0, 1.0), help: "Dream's schedule epsilon", get: |c| Some(c.eps), set: |c, v| c.eps = v },
    ],
    rules: &[
        Rule {
            params: "gen_len, block_len",
            help: "gen_len is a whole number of blocks (block_len at most gen_len)",
            check: |c| {
                let b = c.block_len.min(c.gen_len).max(1);
                if c.gen_len % b != 0 { Err(format!("gen_len {} must be a multiple of block_len {}", c.gen_len, c.block_len)) } else { Ok(()) }
            },
            break_it: |c| (c.gen_len, c.block_len, c.steps) = (10, 4, 10),
        },
        Rule {
            params: "steps, gen_len, block_len",
            help: "steps is a multiple of the number of blocks (gen_len / block_len)",
            check: |c| {
                let blocks = c.gen_len / c.block_len.min(c.gen_len).max(1);
                if blocks > 0 && c.steps % blocks != 0 { Err(format!("steps {} must be a multiple of the number of blocks {blocks} (gen_len / block_len)", c.steps)) } else { Ok(()) }
            },
            break_it: |c| (c.gen_len, c.block_len, c.steps) = (8, 4, 3),
        },
        Rule {
            params: "origin, remasking",
            help: "origin reveals positions at random already: it takes low-confidence remasking",
            check: |c| {
                if c.commit == CommitRule::Origin && c.remasking == Remasking::Random { Err("origin reveals positions at random already; use low-confidence remasking".into()) } else { Ok(()) }
            },
            break_it: |c| (c.commit, c.remasking) = (CommitRule::Origin, Remasking::Random),
        },
    ],
};
