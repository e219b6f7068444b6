//! Mutation fuzzing of the parsers that read untrusted bytes, on stable Rust.
//!
//! Each [`Target`] feeds bytes to one of stipple's real entry points (a safetensors header,
//! a config.json, a tokenizer, a chat template, a WAV or PNG file, a GGUF file...) through
//! the file it would read. The [`fuzz`] loop starts from the target's seed corpus
//! (`fuzz/corpus/<target>/` plus fixtures of the real layouts), stacks random mutations
//! (bit flips, interesting integers and numbers, inserted dictionary tokens, deleted or
//! repeated ranges, splices with other corpus inputs), and runs each input. An `Err` is the
//! expected answer to bad bytes; a panic, or an input that takes more than
//! [`SLOW_INPUT`], is a finding: the input is saved under `target/fuzz-findings/<target>/`
//! and reported. Without coverage instrumentation the loop keeps, as extra seeds, inputs
//! that draw an error message not seen before, which steers it into deeper states of the
//! parser.
//!
//! Budget: `STIPPLE_FUZZ_SECONDS` per target when set (what `tools/fuzz.sh` uses for long
//! runs), else `STIPPLE_FUZZ_EXECS` executions (default [`DEFAULT_EXECS`], the short run
//! of `cargo test`). The same seed gives the same inputs. `STIPPLE_FUZZ_REPLAY=TARGET:FILE`
//! runs one saved input, panicking as the target does.

pub mod targets;

use std::collections::HashSet;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Executions per target in the short run of `cargo test`.
pub const DEFAULT_EXECS: u64 = 2000;

/// An input slower than this is a finding (a parser that can be made to hang).
pub const SLOW_INPUT: Duration = Duration::from_secs(5);

/// Longest input the mutations produce.
const MAX_LEN: usize = 256 << 10;

/// Longest input kept as a new seed, and the most seeds and error shapes kept: a long run
/// must not grow without bound (a 10-minute run once met tens of millions of messages).
const MAX_SEED_LEN: usize = 64 << 10;
const MAX_CORPUS: usize = 4096;
const MAX_SHAPES: usize = 1_000_000;

/// One fuzzed entry point.
pub struct Target {
    /// Name (the corpus folder under `fuzz/corpus/`).
    pub name: &'static str,
    /// Seed files beyond the corpus folder (fixtures in the real layouts), relative to the
    /// workspace root.
    pub seeds: &'static [&'static str],
    /// Tokens worth inserting (keys, magic numbers, syntax).
    pub dictionary: &'static [&'static [u8]],
    /// Feeds the bytes to the entry point; `Err` is a clean refusal.
    pub run: fn(&[u8]) -> Result<(), String>,
}

/// What one run found.
#[derive(Debug)]
pub struct Report {
    /// The target.
    pub target: &'static str,
    /// Inputs run.
    pub execs: u64,
    /// Wall time.
    pub seconds: f64,
    /// Distinct error messages seen (a rough measure of the states reached; counting stops
    /// at a million).
    pub distinct_errors: usize,
    /// Inputs that panicked or hung: (saved file, what happened).
    pub findings: Vec<(PathBuf, String)>,
}

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("fuzz/ sits in the workspace").to_path_buf()
}

enum Budget {
    Execs(u64),
    Time(Duration),
}

fn budget() -> Budget {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<f64>().ok()).filter(|v| *v > 0.0);
    match (env("STIPPLE_FUZZ_SECONDS"), env("STIPPLE_FUZZ_EXECS")) {
        (Some(s), _) => Budget::Time(Duration::from_secs_f64(s)),
        (None, Some(n)) => Budget::Execs(n as u64),
        (None, None) => Budget::Execs(DEFAULT_EXECS),
    }
}

thread_local! {
    /// Set while a target runs: its panics are findings, not test failures to print.
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn install_quiet_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                default(info);
            }
        }));
    });
}

/// The seed inputs: the corpus folder's files, then the target's fixtures.
pub fn corpus(target: &Target) -> Vec<Vec<u8>> {
    let root = root();
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("fuzz/corpus").join(target.name))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files.extend(target.seeds.iter().map(|s| root.join(s)));
    files.iter().filter_map(|p| std::fs::read(p).ok()).collect()
}

/// Runs `target` once on `input`: `Ok(Err(message))` for a refusal, `Err(what)` for a panic.
pub fn run_one(target: &Target, input: &[u8]) -> Result<Result<(), String>, String> {
    install_quiet_hook();
    QUIET.with(|q| q.set(true));
    let outcome = catch_unwind(AssertUnwindSafe(|| (target.run)(input)));
    QUIET.with(|q| q.set(false));
    outcome.map_err(|p| {
        let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_else(|| "non-string panic".into());
        format!("panicked: {msg}")
    })
}

/// A hash of the error's shape: its words, with numbers, punctuation and quoted parts
/// (paths, the offending text, a /regex/) left out, to tell new messages from old.
fn error_shape(msg: &str) -> u64 {
    let mut hash = 0xcbf2_9ce4_8422_2325u64;
    let mut in_quote = false;
    for c in msg.chars().take(160) {
        match c {
            '"' | '`' | '\'' | '/' => in_quote = !in_quote,
            _ if in_quote || !(c.is_alphabetic() || c == ' ') => {}
            _ => hash = (hash ^ c as u64).wrapping_mul(0x100_0000_01b3),
        }
    }
    hash
}

/// Fuzzes `target` for the budget; see the module documentation. With
/// `STIPPLE_FUZZ_REPLAY=TARGET:FILE` the target named runs that one input, its panic
/// printed with a backtrace (to debug a finding).
pub fn fuzz(target: &Target) -> Report {
    let started = Instant::now();
    if let Some((name, file)) = std::env::var("STIPPLE_FUZZ_REPLAY").ok().as_deref().and_then(|r| r.split_once(':')) {
        if name == target.name {
            let input = std::fs::read(file).expect("the replayed input");
            let outcome = (target.run)(&input);
            eprintln!("replayed {file}: {outcome:?}");
        }
        return Report { target: target.name, execs: 1, seconds: started.elapsed().as_secs_f64(), distinct_errors: 0, findings: Vec::new() };
    }
    let budget = budget();
    let mut corpus = corpus(target);
    if corpus.is_empty() {
        corpus.push(Vec::new());
    }
    let seed = target.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen: HashSet<u64> = HashSet::new();
    let mut findings = Vec::new();
    let mut execs = 0u64;
    let seeds = corpus.len();
    loop {
        let done = match budget {
            Budget::Execs(n) => execs >= n.max(seeds as u64),
            Budget::Time(t) => started.elapsed() >= t && execs >= seeds as u64,
        };
        if done {
            break;
        }
        // every seed as it is first, then mutants
        let input = if (execs as usize) < seeds { corpus[execs as usize].clone() } else { mutate(&mut rng, &corpus, target.dictionary) };
        execs += 1;
        let t = Instant::now();
        let outcome = run_one(target, &input);
        let slow = t.elapsed() > SLOW_INPUT;
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => {
                let shape = error_shape(&msg);
                if seen.len() < MAX_SHAPES && seen.insert(shape) && corpus.len() < MAX_CORPUS && input.len() <= MAX_SEED_LEN {
                    corpus.push(input.clone());
                }
            }
            Err(what) => findings.push((save_finding(target.name, &input), what)),
        }
        if slow {
            findings.push((save_finding(target.name, &input), format!("took {:.1} s", t.elapsed().as_secs_f64())));
        }
    }
    Report { target: target.name, execs, seconds: started.elapsed().as_secs_f64(), distinct_errors: seen.len(), findings }
}

fn save_finding(target: &str, input: &[u8]) -> PathBuf {
    let hash = input.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    let dir = root().join("target/fuzz-findings").join(target);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{hash:016x}.bin"));
    let _ = std::fs::write(&path, input);
    path
}

/// Byte values and integers that break parsers more often than random ones.
const INTERESTING_BYTES: [u8; 16] = [0, 1, 0x7f, 0x80, 0xff, b'"', b'{', b'}', b'[', b']', b',', b':', b'\\', b'\n', b'-', b'0'];
const INTERESTING_INTS: [u64; 10] = [0, 1, 2, 0x7f, 0xff, 0xffff, 0x7fff_ffff, 0xffff_ffff, 1 << 40, u64::MAX];
const INTERESTING_NUMBERS: [&[u8]; 10] = [b"0", b"-1", b"1e308", b"-1e308", b"99999999999999999999", b"4294967296", b"NaN", b"0.0000001", b"18446744073709551615", b"65537"];

/// A mutant of a corpus input: one to five stacked mutations.
fn mutate(rng: &mut ChaCha8Rng, corpus: &[Vec<u8>], dictionary: &[&[u8]]) -> Vec<u8> {
    let mut data = corpus[rng.random_range(0..corpus.len())].clone();
    for _ in 0..rng.random_range(1..=5) {
        let len = data.len();
        let at = |rng: &mut ChaCha8Rng, n: usize| if n == 0 { 0 } else { rng.random_range(0..n) };
        match rng.random_range(0..11) {
            0 if len > 0 => {
                let i = at(rng, len);
                data[i] ^= 1 << rng.random_range(0..8);
            }
            1 if len > 0 => {
                let i = at(rng, len);
                data[i] = INTERESTING_BYTES[rng.random_range(0..INTERESTING_BYTES.len())];
            }
            2 => {
                let i = at(rng, len + 1);
                let n = rng.random_range(1..=8);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                data.splice(i..i, bytes);
            }
            3 if len > 1 => {
                let i = at(rng, len);
                let n = rng.random_range(1..=(len - i).clamp(1, 64));
                data.drain(i..i + n);
            }
            4 if len > 1 => {
                let i = at(rng, len);
                let n = rng.random_range(1..=(len - i).clamp(1, 64));
                let piece = data[i..i + n].to_vec();
                let times = rng.random_range(1..=8);
                for _ in 0..times {
                    data.splice(i..i, piece.iter().copied());
                }
            }
            5 if !dictionary.is_empty() => {
                let i = at(rng, len + 1);
                let token = dictionary[rng.random_range(0..dictionary.len())];
                data.splice(i..i, token.iter().copied());
            }
            6 if len >= 8 => {
                let i = at(rng, len - 7);
                let v = INTERESTING_INTS[rng.random_range(0..INTERESTING_INTS.len())];
                let bytes = if rng.random() { v.to_le_bytes() } else { v.to_be_bytes() };
                let width = [1, 2, 4, 8][rng.random_range(0..4)];
                data[i..i + width].copy_from_slice(&bytes[..width]);
            }
            7 if len > 0 => {
                // an ASCII number run replaced by an extreme one
                let i = at(rng, len);
                if let Some(start) = (i..len).find(|&k| data[k].is_ascii_digit()) {
                    let end = (start..len).find(|&k| !data[k].is_ascii_digit()).unwrap_or(len);
                    let n = INTERESTING_NUMBERS[rng.random_range(0..INTERESTING_NUMBERS.len())];
                    data.splice(start..end, n.iter().copied());
                }
            }
            8 if corpus.len() > 1 => {
                let other = &corpus[rng.random_range(0..corpus.len())];
                let (i, j) = (at(rng, len + 1), at(rng, other.len() + 1));
                data.truncate(i);
                data.extend_from_slice(&other[j..]);
            }
            9 if len > 0 => {
                let n = at(rng, len);
                data.truncate(n);
            }
            _ => {
                let i = at(rng, len + 1);
                let b = INTERESTING_BYTES[rng.random_range(0..INTERESTING_BYTES.len())];
                data.insert(i, b);
            }
        }
        data.truncate(MAX_LEN);
    }
    data
}

#[cfg(test)]
mod tests {
    use super::*;

    fn picky(data: &[u8]) -> Result<(), String> {
        match data {
            [b'b', b'u', b'g', ..] => panic!("found the bug"),
            [] => Err("empty".into()),
            _ => Err(format!("not a bug: {} bytes", data.len())),
        }
    }

    /// The loop finds a planted panic from a nearby seed, saves it, and tells it apart.
    #[test]
    fn the_loop_finds_a_planted_panic() {
        let target = Target { name: "selftest", seeds: &[], dictionary: &[b"bug"], run: picky };
        let outcome = run_one(&target, b"bug!");
        assert!(matches!(&outcome, Err(m) if m.contains("found the bug")), "{outcome:?}");
        assert_eq!(run_one(&target, b"fine"), Ok(Err("not a bug: 4 bytes".into())));
        let report = fuzz(&target);
        assert!(report.execs >= DEFAULT_EXECS.min(300));
        assert!(!report.findings.is_empty(), "the dictionary token should reach the bug: {report:?}");
        assert!(report.findings[0].0.is_file());
    }
}
