//! The numeric parameters of every request, in one table per request type.
//!
//! Each [`Param`] names a field (its request name and its command-line flag), its allowed
//! range, and how to read and write it; each [`Rule`] checks parameters against each other
//! (gen-len against block length and steps, a mask without an init image...). A request's
//! `validate` walks its tables, so the CLI, batch files, the studio, the server and the
//! Rust API all refuse the same values with the same message; `docs/parameters.md` is
//! rendered from the same tables ([`Table::markdown`]), and a test walks every table with a value
//! just inside and just outside each range ([`Range::probes`]).

use crate::error::{Error, Result};

/// An allowed interval of values, with its ends open or closed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Range {
    /// Lower end.
    pub min: f64,
    /// Whether `min` itself is excluded.
    pub min_open: bool,
    /// Upper end.
    pub max: f64,
    /// Whether `max` itself is excluded.
    pub max_open: bool,
    /// Whether only whole numbers are allowed.
    pub integer: bool,
}

impl Range {
    /// Whole numbers in `[min, max]`.
    pub const fn int(min: u64, max: u64) -> Self {
        Self { min: min as f64, min_open: false, max: max as f64, max_open: false, integer: true }
    }

    /// Real numbers in `[min, max]`.
    pub const fn closed(min: f64, max: f64) -> Self {
        Self { min, min_open: false, max, max_open: false, integer: false }
    }

    /// Real numbers in `(min, max]`.
    pub const fn open_closed(min: f64, max: f64) -> Self {
        Self { min, min_open: true, max, max_open: false, integer: false }
    }

    /// Real numbers in `(min, max)`.
    pub const fn open(min: f64, max: f64) -> Self {
        Self { min, min_open: true, max, max_open: true, integer: false }
    }

    /// Whether `v` is allowed (never NaN or infinite).
    pub fn contains(&self, v: f64) -> bool {
        v.is_finite()
            && (!self.integer || v.fract() == 0.0)
            && if self.min_open { v > self.min } else { v >= self.min }
            && if self.max_open { v < self.max } else { v <= self.max }
    }

    /// The range as a person reads it: `in (0, 1]`, `a whole number in [1, 8192]`.
    pub fn describe(&self) -> String {
        let (l, r) = (if self.min_open { '(' } else { '[' }, if self.max_open { ')' } else { ']' });
        let kind = if self.integer { "a whole number in " } else { "in " };
        format!("{kind}{l}{}, {}{r}", self.min, self.max)
    }

    /// Values just inside the range (at or next to each end) and just outside it (the next
    /// representable step beyond each end, and NaN for real numbers): what the table test
    /// feeds every parameter. Whole-number ranges are those of unsigned fields, so nothing
    /// below 0 is probed.
    pub fn probes(&self) -> (Vec<f64>, Vec<f64>) {
        let step = |v: f64| if self.integer { 1.0 } else { (v.abs() * 1e-9).max(1e-9) };
        let lo_in = if self.min_open { self.min + step(self.min) } else { self.min };
        let hi_in = if self.max_open { self.max - step(self.max) } else { self.max };
        let lo_out = if self.min_open { self.min } else { self.min - step(self.min) };
        let hi_out = if self.max_open { self.max } else { self.max + step(self.max) };
        let mut outside = vec![hi_out];
        if !(self.integer && lo_out < 0.0) {
            outside.insert(0, lo_out);
        }
        if !self.integer {
            outside.push(f64::NAN);
        }
        (vec![lo_in, hi_in], outside)
    }
}

/// One numeric parameter of a request type `R`.
pub struct Param<R> {
    /// The field's name in requests (snake_case, as in batch files and server JSON).
    pub name: &'static str,
    /// The command-line flag that sets it (empty: set only in requests or files).
    pub flag: &'static str,
    /// Allowed values.
    pub range: Range,
    /// What it does, for the parameter table.
    pub help: &'static str,
    /// Its value in a request (`None`: not set, the default applies).
    pub get: fn(&R) -> Option<f64>,
    /// Sets it, moving any field it must agree with (a window no longer than its FFT...),
    /// so that the table test probes this range alone.
    pub set: fn(&mut R, f64),
}

impl<R> Param<R> {
    /// Checks the parameter's value in `req`.
    pub fn check(&self, req: &R) -> Result<()> {
        match (self.get)(req) {
            Some(v) if !self.range.contains(v) => {
                let flag = if self.flag.is_empty() { String::new() } else { format!(" ({})", self.flag) };
                Err(Error::InvalidArgument(format!("{}{flag} must be {}, got {v}", self.name, self.range.describe())))
            }
            _ => Ok(()),
        }
    }
}

/// A condition between parameters of `R` (an interaction the ranges alone cannot say).
pub struct Rule<R> {
    /// The parameters involved, for the table.
    pub params: &'static str,
    /// The condition in words.
    pub help: &'static str,
    /// `Err(message)` when `req` breaks it.
    pub check: fn(&R) -> std::result::Result<(), String>,
    /// Changes a valid request so that it breaks the rule (the table test checks the rule
    /// fires).
    pub break_it: fn(&mut R),
}

/// The parameters and rules of one request type, as a request's `validate` walks them.
pub struct Table<R: 'static> {
    /// The command(s) whose requests these are, for the parameter table.
    pub commands: &'static str,
    /// Ranges.
    pub params: &'static [Param<R>],
    /// Interactions.
    pub rules: &'static [Rule<R>],
}

impl<R> Table<R> {
    /// Every range, then every rule; the first failure is the error.
    pub fn validate(&self, req: &R) -> Result<()> {
        for p in self.params {
            p.check(req)?;
        }
        for r in self.rules {
            (r.check)(req).map_err(Error::InvalidArgument)?;
        }
        Ok(())
    }

    /// Only the ranges (before defaults fill a request in, when the rules cannot yet hold).
    pub fn check_ranges(&self, req: &R) -> Result<()> {
        self.params.iter().try_for_each(|p| p.check(req))
    }

    /// The parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&Param<R>> {
        self.params.iter().find(|p| p.name == name)
    }

    /// The table as Markdown (one row per parameter, then the rules).
    pub fn markdown(&self) -> String {
        let mut s = format!("### {}\n\n| parameter | flag | allowed | what |\n|---|---|---|---|\n", self.commands);
        for p in self.params {
            let flag = if p.flag.is_empty() { "—".to_string() } else { format!("`{}`", p.flag) };
            s.push_str(&format!("| `{}` | {flag} | {} | {} |\n", p.name, p.range.describe(), p.help));
        }
        if !self.rules.is_empty() {
            s.push_str("\n| between | rule |\n|---|---|\n");
            for r in self.rules {
                s.push_str(&format!("| {} | {} |\n", r.params, r.help));
            }
        }
        s
    }
}

/// A type-erased view of a [`Table`] with its request's default, so tests and docs can walk
/// the tables of every modality in one list.
pub trait Probe {
    /// The table's commands.
    fn commands(&self) -> &'static str;
    /// The table as Markdown.
    fn markdown(&self) -> String;
    /// For each parameter and each probe value: the parameter, the value, whether it is
    /// meant to pass, and what validating the default request with that value gave.
    fn walk(&self) -> Vec<ProbeResult>;
}

/// One probe of a range or rule.
#[derive(Debug)]
pub struct ProbeResult {
    /// The parameter (or rule) probed.
    pub what: String,
    /// The value set (NaN for a rule).
    pub value: f64,
    /// Whether a rule was broken (rather than a range probed).
    pub rule: bool,
    /// Whether the value is inside the range (the rule kept).
    pub inside: bool,
    /// What validation said.
    pub outcome: Result<()>,
}

/// A [`Table`] with a way to make the request it validates.
pub struct Probed<R: 'static> {
    /// The table.
    pub table: &'static Table<R>,
    /// A valid request that every probe starts from.
    pub base: fn() -> R,
}

impl<R> Probe for Probed<R> {
    fn commands(&self) -> &'static str {
        self.table.commands
    }

    fn markdown(&self) -> String {
        self.table.markdown()
    }

    fn walk(&self) -> Vec<ProbeResult> {
        let mut out = Vec::new();
        for p in self.table.params {
            let (inside, outside) = p.range.probes();
            for (values, ok) in [(inside, true), (outside, false)] {
                for v in values {
                    let mut req = (self.base)();
                    (p.set)(&mut req, v);
                    out.push(ProbeResult { what: p.name.into(), value: v, rule: false, inside: ok, outcome: self.table.validate(&req) });
                }
            }
        }
        for r in self.table.rules {
            let mut req = (self.base)();
            (r.break_it)(&mut req);
            out.push(ProbeResult { what: r.params.into(), value: f64::NAN, rule: true, inside: false, outcome: self.table.validate(&req) });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_describe_and_probe_their_edges() {
        let r = Range::open_closed(0.0, 1.0);
        assert_eq!(r.describe(), "in (0, 1]");
        assert!(!r.contains(0.0) && r.contains(1.0) && !r.contains(f64::NAN) && !r.contains(f64::INFINITY));
        let (inside, outside) = r.probes();
        assert!(inside.iter().all(|&v| r.contains(v)), "{inside:?}");
        assert!(outside.iter().all(|&v| !r.contains(v)), "{outside:?}");
        let n = Range::int(1, 8);
        assert_eq!(n.describe(), "a whole number in [1, 8]");
        let (inside, outside) = n.probes();
        assert_eq!(inside, vec![1.0, 8.0]);
        assert_eq!(outside, vec![0.0, 9.0]);
        assert!(outside.iter().all(|&v| !n.contains(v)));
    }

    struct Req {
        a: Option<f64>,
        b: usize,
    }

    static TABLE: Table<Req> = Table {
        commands: "demo",
        params: &[Param { name: "a", flag: "--a", range: Range::closed(0.0, 2.0), help: "a", get: |r| r.a, set: |r, v| r.a = Some(v) }],
        rules: &[Rule {
            params: "a, b",
            help: "a at most b",
            check: |r| if r.a.unwrap_or(0.0) > r.b as f64 { Err("a must be at most b".into()) } else { Ok(()) },
            break_it: |r| r.b = 0,
        }],
    };

    #[test]
    fn tables_name_the_parameter_and_walk_every_probe() {
        let err = TABLE.validate(&Req { a: Some(3.0), b: 9 }).unwrap_err().to_string();
        assert!(err.contains("a (--a) must be in [0, 2], got 3"), "{err}");
        let probed = Probed { table: &TABLE, base: || Req { a: Some(1.0), b: 5 } };
        let results = probed.walk();
        assert_eq!(results.len(), 2 + 3 + 1);
        for r in &results {
            assert_eq!(r.outcome.is_ok(), r.inside, "{} = {}", r.what, r.value);
        }
        assert!(probed.markdown().contains("| `a` | `--a` | in [0, 2] | a |"));
    }
}
