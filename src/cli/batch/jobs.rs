//! A batch's jobs, read from a job file: JSON Lines (one job object per line) or command
//! lines (one `stipple` command per line). Every job gets a stable id, its parameters as
//! recorded in the manifest, and its parsed command line, or the reason it cannot run.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use clap::{CommandFactory, Parser};
use serde_json::{Map, Value};

use crate::cli::{Cli, Command};

/// The kinds of JSON job, named as their commands.
pub const KINDS: [&str; 4] = ["text", "infill", "image", "audio"];

/// One job of the file.
#[derive(Debug)]
pub struct Job {
    /// Stable id: the `"id"` field, else the line number. Names the job's default outputs.
    pub id: String,
    /// 1-based line in the job file.
    pub line: usize,
    /// What the manifest records as the job's parameters (its JSON with the defaults
    /// applied, or `{"command": LINE}`): a resumed batch checks a done job still matches.
    pub params: Value,
    /// The seed the job runs with: its own, else derived from the batch seed and its id.
    pub seed: u64,
    /// The command line it stands for, or why it cannot run.
    pub command: std::result::Result<Cli, String>,
}

/// What every job inherits from the batch's own command line.
pub struct Inherited<'a> {
    /// The batch's global options (device, dtype, seed, memory limit).
    pub cli: &'a Cli,
    /// The folder every job writes inside.
    pub out_dir: &'a Path,
    /// Defaults for every job (`--defaults`), by kind.
    pub defaults: &'a Defaults,
}

/// Reads the jobs of `file` (JSON Lines when it ends in `.jsonl`/`.ndjson` or its first
/// job line is a JSON object; command lines otherwise). Blank lines and lines starting with
/// `#` are skipped. A line that cannot run is still a job (its `command` says why), so it
/// is recorded as failed while the others run.
pub fn read(file: &Path, inherited: &Inherited<'_>) -> Result<Vec<Job>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading the job file {}", file.display()))?;
    let jsonl = matches!(file.extension().and_then(|e| e.to_str()), Some("jsonl" | "ndjson"));
    let jobs = from_text(&text, jsonl, inherited);
    if jobs.is_empty() {
        bail!("{} holds no jobs", file.display());
    }
    Ok(jobs)
}

/// The jobs of a job file's text (JSON Lines when `jsonl` or when the first job line is
/// a JSON object).
pub fn from_text(text: &str, jsonl: bool, inherited: &Inherited<'_>) -> Vec<Job> {
    let lines: Vec<(usize, &str)> = text.lines().enumerate().map(|(i, l)| (i + 1, l.trim())).filter(|(_, l)| !l.is_empty() && !l.starts_with('#')).collect();
    let json = jsonl || lines.first().is_some_and(|(_, l)| l.starts_with('{'));
    let mut jobs: Vec<Job> = lines.iter().map(|&(n, l)| if json { json_job(n, l, inherited) } else { line_job(n, l, inherited) }).collect();
    // an id names outputs and manifest records: the second use of one cannot run, and is
    // recorded under ID@lineN so the first one's record stands
    let mut first: HashMap<String, usize> = HashMap::new();
    for job in &mut jobs {
        if let Some(&line) = first.get(&job.id) {
            job.command = Err(format!("duplicate id {:?} (line {line} has it too)", job.id));
            job.id = format!("{}@line{}", job.id, job.line);
        } else {
            first.insert(job.id.clone(), job.line);
        }
    }
    jobs
}

/// A job id usable as a file name: letters, digits, `.`, `_`, `-`, not starting with `.`.
fn check_id(id: &str) -> std::result::Result<(), String> {
    let ok = !id.is_empty() && id.len() <= 128 && !id.starts_with('.') && id.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok { Ok(()) } else { Err(format!("id {id:?}: use 1 to 128 letters, digits, '.', '_' or '-', not starting with '.' (it names the job's output files)")) }
}

/// A line of a command-line job file.
fn line_job(line: usize, text: &str, inherited: &Inherited<'_>) -> Job {
    let id = line.to_string();
    let params = serde_json::json!({ "command": text });
    let seed = stipple_core::noise::derive_seed(inherited.cli.seed.unwrap_or(0), &id);
    let command = shlex::split(text).ok_or_else(|| "unbalanced quotes".to_string()).and_then(|words| parse(words, seed, inherited));
    // a line's own --seed wins over the derived one
    let seed = command.as_ref().ok().and_then(|c| c.seed).unwrap_or(seed);
    Job { id, line, params, seed, command }
}

/// A line of a JSON Lines job file.
fn json_job(line: usize, text: &str, inherited: &Inherited<'_>) -> Job {
    let fallback_id = line.to_string();
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => o,
        Ok(_) => return failed(line, fallback_id, text, "a job is a JSON object such as {\"kind\": \"image\", \"prompt\": \"a red fox\"}".into()),
        Err(e) => return failed(line, fallback_id, text, format!("invalid JSON: {e}")),
    };
    let id = match object.get("id") {
        None => fallback_id,
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) if n.is_u64() => n.to_string(),
        Some(other) => return failed(line, fallback_id, text, format!("\"id\" must be a string or a whole number, got {other}")),
    };
    let mut params = object.clone();
    params.remove("id");
    let kind = match params.get("kind") {
        Some(Value::String(k)) if KINDS.contains(&k.as_str()) => k.clone(),
        Some(k) => return failed(line, id, text, format!("unknown kind {k} (kinds: {})", KINDS.join(", "))),
        None => return failed(line, id, text, format!("no \"kind\" ({})", KINDS.join(", "))),
    };
    // the batch's defaults for this kind, under the job's own fields
    let mut merged = inherited.defaults.for_kind(&kind);
    merged.extend(params);
    let seed = match merged.get("seed") {
        Some(Value::Number(n)) if n.is_u64() => n.as_u64().expect("u64"),
        Some(other) => return failed(line, id, text, format!("\"seed\" must be a whole number, got {other}")),
        None => stipple_core::noise::derive_seed(inherited.cli.seed.unwrap_or(0), &id),
    };
    let command = check_id(&id).and_then(|()| fields_to_words(&kind, &merged)).and_then(|words| parse(words, seed, inherited));
    Job { id, line, params: Value::Object(merged), seed, command }
}

/// A job that cannot run, recorded with the line it came from.
fn failed(line: usize, id: String, text: &str, why: String) -> Job {
    Job { id, line, params: serde_json::json!({ "line": text }), seed: 0, command: Err(why) }
}

/// A job object's fields as the command line they stand for: `{"kind": "image", "steps": 20,
/// "negative_prompt": "blur"}` is `image --steps=20 --negative-prompt=blur`. Field names
/// are the command's flags in snake_case; lists repeat the flag; `true` gives a switch.
pub fn fields_to_words(kind: &str, fields: &Map<String, Value>) -> std::result::Result<Vec<String>, String> {
    let flags = known_flags(kind);
    let mut words = vec![kind.to_string()];
    for (name, value) in fields {
        if name == "kind" {
            continue;
        }
        let flag = name.replace('_', "-");
        let Some(&takes_value) = flags.get(flag.as_str()) else {
            let mut names: Vec<String> = flags.keys().map(|f| f.replace('-', "_")).collect();
            names.sort();
            return Err(format!("unknown field {name:?} for {kind} jobs (fields: {})", names.join(", ")));
        };
        let scalar = |v: &Value| match v {
            Value::String(s) => Ok(s.clone()),
            Value::Number(n) => Ok(n.to_string()),
            other => Err(format!("field {name:?}: expected a string or a number, got {other}")),
        };
        match (value, takes_value) {
            (Value::Null, _) | (Value::Bool(false), false) => {}
            (Value::Bool(true), false) => words.push(format!("--{flag}")),
            (other, false) => return Err(format!("field {name:?} is a switch: give true or false, got {other}")),
            (Value::Array(items), true) => {
                for item in items {
                    words.push(format!("--{flag}={}", scalar(item)?));
                }
            }
            (v, true) => words.push(format!("--{flag}={}", scalar(v)?)),
        }
    }
    Ok(words)
}

/// The long flags a job of `kind` may set (its command's and the per-job global ones),
/// and whether each takes a value; read once from the command-line definition.
fn known_flags(kind: &str) -> &'static HashMap<String, bool> {
    static FLAGS: std::sync::OnceLock<HashMap<String, HashMap<String, bool>>> = std::sync::OnceLock::new();
    static NONE: std::sync::OnceLock<HashMap<String, bool>> = std::sync::OnceLock::new();
    let all = FLAGS.get_or_init(|| {
        let root = Cli::command();
        KINDS
            .iter()
            .map(|kind| {
                let globals = root.get_arguments().filter(|a| matches!(a.get_long(), Some("device" | "dtype" | "seed" | "max-memory")));
                let own = root.find_subcommand(kind).into_iter().flat_map(|c| c.get_arguments());
                let flags = globals.chain(own).filter_map(|a| a.get_long().map(|l| (l.to_string(), a.get_action().takes_values()))).collect();
                (kind.to_string(), flags)
            })
            .collect()
    });
    all.get(kind).unwrap_or_else(|| NONE.get_or_init(HashMap::new))
}

/// A job's words as a parsed command line with the batch's global options: its outputs
/// confined to the batch's folder, its seed fixed.
fn parse(words: Vec<String>, seed: u64, inherited: &Inherited<'_>) -> std::result::Result<Cli, String> {
    let cli = inherited.cli;
    let given = |flag: &str| words.iter().any(|w| w == flag || w.starts_with(&format!("{flag}=")));
    if given("--out-dir") {
        return Err("--out-dir is the batch's own option (every job writes inside the batch's folder)".into());
    }
    if given("--json") {
        return Err("--json is the batch's own option (`stipple batch --json` prints a line per job)".into());
    }
    let mut argv = vec!["stipple".to_string()];
    if !given("--device") {
        argv.extend(["--device".into(), cli.device.to_string()]);
    }
    if !given("--dtype") {
        argv.extend(["--dtype".into(), cli.dtype.to_string()]);
    }
    if !given("--seed") {
        argv.extend(["--seed".into(), seed.to_string()]);
    }
    if let (Some(stipple_core::memory::MemoryLimit::Bytes(b)), false) = (cli.max_memory, given("--max-memory")) {
        argv.extend(["--max-memory".into(), b.to_string()]);
    }
    argv.extend(["--out-dir".into(), inherited.out_dir.display().to_string()]);
    argv.extend(words);
    let job = Cli::try_parse_from(&argv).map_err(|e| e.to_string().trim_start_matches("error: ").trim_end().to_string())?;
    match job.command {
        Command::Batch(_) | Command::Studio(_) => Err("`batch` and `studio` cannot run inside a batch".into()),
        #[cfg(feature = "train")]
        Command::Train(_) => Err("`train` writes model folders and data sets: run it directly, not inside a batch".into()),
        _ => Ok(job),
    }
}

/// Defaults for every job (`--defaults FILE`, TOML or JSON): fields at the top level apply
/// to every kind that has them, and a table named after a kind (`[image]`) to that kind.
#[derive(Debug, Default)]
pub struct Defaults {
    all: Map<String, Value>,
    by_kind: HashMap<String, Map<String, Value>>,
}

impl Defaults {
    /// Reads a defaults file; every field must belong to some kind (a typo is an error,
    /// not a default that silently applies to nothing).
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the defaults file {}", path.display()))?;
        let value: Value = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(&text).with_context(|| format!("{}: invalid JSON", path.display()))?
        } else {
            let table: toml::Table = toml::from_str(&text).with_context(|| format!("{}: invalid TOML", path.display()))?;
            serde_json::to_value(table)?
        };
        let Value::Object(top) = value else { bail!("{}: expected a table of fields", path.display()) };
        let mut defaults = Defaults::default();
        for (name, value) in top {
            match value {
                Value::Object(fields) if KINDS.contains(&name.as_str()) => {
                    let known = known_flags(&name);
                    if let Some(bad) = fields.keys().find(|f| !known.contains_key(&f.replace('_', "-"))) {
                        bail!("{}: [{name}] {bad:?} is not a field of {name} jobs", path.display());
                    }
                    defaults.by_kind.insert(name, fields);
                }
                value => {
                    if matches!(name.as_str(), "id" | "kind") || !KINDS.iter().any(|k| known_flags(k).contains_key(&name.replace('_', "-"))) {
                        bail!("{}: {name:?} is not a field of any job kind ({})", path.display(), KINDS.join(", "));
                    }
                    defaults.all.insert(name, value);
                }
            }
        }
        Ok(defaults)
    }

    /// The defaults a job of `kind` starts from.
    fn for_kind(&self, kind: &str) -> Map<String, Value> {
        let known = known_flags(kind);
        let mut fields: Map<String, Value> = self.all.iter().filter(|(k, _)| known.contains_key(&k.replace('_', "-"))).map(|(k, v)| (k.clone(), v.clone())).collect();
        if let Some(own) = self.by_kind.get(kind) {
            fields.extend(own.clone());
        }
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inherited_parse(words: &str) -> std::result::Result<Cli, String> {
        let cli = Cli::try_parse_from(["stipple", "batch", "jobs.jsonl"]).unwrap();
        let defaults = Defaults::default();
        let inherited = Inherited { cli: &cli, out_dir: Path::new("."), defaults: &defaults };
        json_job(1, words, &inherited).command
    }

    #[test]
    fn json_fields_become_flags() {
        let fields: Map<String, Value> = serde_json::from_str(r#"{"kind":"image","prompt":"-a fox","steps":4,"guidance":7.5,"overwrite":true,"no_metadata":false,"negative_prompt":null}"#).unwrap();
        // (fields in name order: serde_json keeps objects sorted)
        assert_eq!(fields_to_words("image", &fields).unwrap(), ["image", "--guidance=7.5", "--overwrite", "--prompt=-a fox", "--steps=4"]);
        let text: Map<String, Value> = serde_json::from_str(r#"{"kind":"text","prompt":["a","b"],"gen_len":8}"#).unwrap();
        assert_eq!(fields_to_words("text", &text).unwrap(), ["text", "--gen-len=8", "--prompt=a", "--prompt=b"]);
    }

    #[test]
    fn bad_jobs_say_what_is_wrong() {
        for (line, needle) in [
            (r#"{"kind":"image","stepz":4}"#, "unknown field \"stepz\" for image jobs"),
            (r#"{"kind":"video"}"#, "unknown kind \"video\""),
            (r#"{"prompt":"x"}"#, "no \"kind\""),
            (r#"{"kind":"image","overwrite":"yes"}"#, "is a switch"),
            (r#"{"kind":"image","steps":"many"}"#, "invalid value 'many'"),
            (r#"{"kind":"image","prompt":{"a":1}}"#, "expected a string or a number"),
            (r#"{"kind":"image","id":"../x"}"#, "id \"../x\""),
            (r#"{"kind":"image","seed":-1}"#, "\"seed\" must be a whole number"),
            (r#"[1,2]"#, "a job is a JSON object"),
            (r#"{"kind":"image""#, "invalid JSON"),
        ] {
            let e = inherited_parse(line).unwrap_err();
            assert!(e.contains(needle), "{line}: {e}");
        }
        assert!(inherited_parse(r#"{"kind":"image","prompt":"a fox","steps":4}"#).is_ok());
    }

    #[test]
    fn a_job_without_a_seed_gets_one_from_its_id() {
        let cli = Cli::try_parse_from(["stipple", "--seed", "5", "batch", "jobs.jsonl"]).unwrap();
        let defaults = Defaults::default();
        let inherited = Inherited { cli: &cli, out_dir: Path::new("."), defaults: &defaults };
        let a = json_job(1, r#"{"kind":"image","id":"fox"}"#, &inherited);
        let b = json_job(9, r#"{"kind":"image","id":"fox"}"#, &inherited);
        assert_eq!(a.seed, b.seed);
        assert_eq!(a.seed, stipple_core::noise::derive_seed(5, "fox"));
        assert_eq!(a.command.unwrap().seed, Some(a.seed));
        assert_eq!(json_job(1, r#"{"kind":"image","seed":3}"#, &inherited).seed, 3);
    }
}
