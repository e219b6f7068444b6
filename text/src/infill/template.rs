//! Templates of fixed text and holes.
//!
//! Syntax of [`Template::parse`]: text with holes in square brackets.
//! * `[4]`: exactly 4 tokens; `[1..3]`: 1 to 3 tokens (unused positions become
//!   end-of-text and are deleted).
//! * After the length, optionally one constraint:
//!   `[4 /[0-9]+/]` a regular expression the hole's text must match;
//!   `[1 {cat,dog,bird}]` one of these words; `[3 chars:[a-z]]` only these characters.
//! * `\[` and `\]` are literal brackets.
//!
//! A single space just before a hole belongs to the hole (BPE tokenizers attach spaces to
//! the following word): `"The [1 {cat,dog}] sat"` fills as `"The cat sat"`, and the
//! hole's text is `"cat"`.

use crate::error::{Error, Result};

/// What a hole's text must satisfy.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Constraint {
    /// Anything the model likes.
    #[default]
    Free,
    /// A regular expression matching the whole hole text.
    Regex(String),
    /// One of these words.
    OneOf(Vec<String>),
    /// Only characters of this class (regex class syntax, e.g. `[a-z0-9]`).
    Chars(String),
    /// Only these token ids.
    Tokens(Vec<u32>),
}

impl Constraint {
    /// The regular expression this constraint stands for (`None`: no text constraint).
    pub fn pattern(&self) -> Option<String> {
        match self {
            Constraint::Free | Constraint::Tokens(_) => None,
            Constraint::Regex(r) => Some(r.clone()),
            Constraint::OneOf(words) => Some(format!(
                "(?:{})",
                words.iter().map(|w| regex_syntax::escape(w)).collect::<Vec<_>>().join("|")
            )),
            Constraint::Chars(class) => Some(format!("{class}*")),
        }
    }
}

/// A hole: a number of token positions and a constraint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hole {
    /// Fewest tokens.
    pub min: usize,
    /// Most tokens (positions on the canvas).
    pub max: usize,
    /// The constraint.
    pub constraint: Constraint,
    /// A name for the result (defaults to the hole's index).
    pub name: Option<String>,
}

impl Hole {
    /// Exactly `n` tokens.
    pub fn new(n: usize) -> Self {
        Self::range(n, n)
    }

    /// Between `min` and `max` tokens (inclusive).
    pub fn range(min: usize, max: usize) -> Self {
        Self {
            min,
            max,
            constraint: Constraint::Free,
            name: None,
        }
    }

    /// The text must match `re` entirely.
    pub fn regex(mut self, re: impl Into<String>) -> Self {
        self.constraint = Constraint::Regex(re.into());
        self
    }

    /// The text must be one of `words`.
    pub fn one_of(mut self, words: &[&str]) -> Self {
        self.constraint = Constraint::OneOf(words.iter().map(|w| w.to_string()).collect());
        self
    }

    /// The text may only use characters of `class` (e.g. `"[0-9]"`).
    pub fn chars(mut self, class: impl Into<String>) -> Self {
        self.constraint = Constraint::Chars(class.into());
        self
    }

    /// Only these token ids.
    pub fn tokens(mut self, ids: &[u32]) -> Self {
        self.constraint = Constraint::Tokens(ids.to_vec());
        self
    }

    /// Name the hole.
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    fn check(&self) -> Result<()> {
        if self.max == 0 || self.min > self.max {
            return Err(Error::Infill(format!(
                "a hole needs 1 or more positions and min <= max (got {}..{})",
                self.min, self.max
            )));
        }
        let most = crate::generate::params::MAX_GEN_LEN as usize;
        if self.max > most {
            return Err(Error::Infill(format!("a hole holds at most {most} positions (got {})", self.max)));
        }
        if let Constraint::OneOf(w) = &self.constraint
            && w.is_empty()
        {
            return Err(Error::Infill("an empty word list can never be matched".into()));
        }
        if let Constraint::Tokens(t) = &self.constraint
            && t.is_empty()
        {
            return Err(Error::Infill("an empty token set can never be matched".into()));
        }
        Ok(())
    }
}

/// A piece of a template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Part {
    /// Fixed text, pinned.
    Text(String),
    /// A hole to fill.
    Hole(Hole),
}

/// Fixed text and holes, in order.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
}

impl Template {
    /// An empty template (use the builder methods).
    pub fn new() -> Self {
        Self::default()
    }

    /// Append fixed text.
    pub fn text(mut self, t: impl Into<String>) -> Self {
        let t = t.into();
        if !t.is_empty() {
            self.parts.push(Part::Text(t));
        }
        self
    }

    /// Append a hole.
    pub fn hole(mut self, h: Hole) -> Self {
        self.parts.push(Part::Hole(h));
        self
    }

    /// The parts.
    pub fn parts(&self) -> &[Part] {
        &self.parts
    }

    /// The holes, in order.
    pub fn holes(&self) -> impl Iterator<Item = &Hole> {
        self.parts.iter().filter_map(|p| match p {
            Part::Hole(h) => Some(h),
            Part::Text(_) => None,
        })
    }

    /// Check every hole; at least one is needed.
    pub fn validate(&self) -> Result<()> {
        if self.holes().next().is_none() {
            return Err(Error::Infill("the template has no holes ([n] or [min..max])".into()));
        }
        self.holes().try_for_each(Hole::check)
    }

    /// Parse the bracket syntax (see the module docs).
    pub fn parse(s: &str) -> Result<Self> {
        let mut t = Template::new();
        let mut text = String::new();
        let mut chars = s.char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' if matches!(chars.peek(), Some((_, '[' | ']' | '\\'))) => {
                    text.push(chars.next().unwrap().1);
                }
                '[' => {
                    // the hole runs to the matching ']' (brackets inside /regex/, {..} and
                    // chars:[..] nest)
                    let mut depth = 1;
                    let mut in_regex = false;
                    let mut end = None;
                    let mut prev = '\0';
                    for (j, d) in chars.by_ref() {
                        match d {
                            '/' if prev != '\\' => in_regex = !in_regex,
                            '[' if !in_regex && prev != '\\' => depth += 1,
                            ']' if !in_regex && prev != '\\' => {
                                depth -= 1;
                                if depth == 0 {
                                    end = Some(j);
                                    break;
                                }
                            }
                            _ => {}
                        }
                        prev = if prev == '\\' && d == '\\' { '\0' } else { d };
                    }
                    let end = end.ok_or_else(|| Error::Infill(format!("unclosed '[' at byte {i}")))?;
                    let hole = parse_hole(&s[i + 1..end])?;
                    t = t.text(std::mem::take(&mut text)).hole(hole);
                }
                ']' => return Err(Error::Infill(format!("unmatched ']' at byte {i} (write \\] for a literal one)"))),
                _ => text.push(c),
            }
        }
        t = t.text(text);
        t.validate()?;
        Ok(t)
    }
}

fn parse_count(s: &str) -> Result<usize> {
    s.trim()
        .parse()
        .map_err(|_| Error::Infill(format!("{s:?} is not a token count")))
}

fn parse_hole(body: &str) -> Result<Hole> {
    let body = body.trim();
    let (len, rest) = match body.find(char::is_whitespace) {
        Some(k) => (&body[..k], body[k..].trim()),
        None => (body, ""),
    };
    let mut hole = match len.split_once("..") {
        Some((a, b)) => Hole::range(parse_count(a)?, parse_count(b)?),
        None => Hole::new(parse_count(len)?),
    };
    if rest.is_empty() {
        return Ok(hole);
    }
    hole = if let Some(re) = rest.strip_prefix('/').and_then(|r| r.strip_suffix('/')) {
        hole.regex(re)
    } else if let Some(words) = rest.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
        let list: Vec<&str> = words.split(',').map(str::trim).filter(|w| !w.is_empty()).collect();
        hole.one_of(&list)
    } else if let Some(class) = rest.strip_prefix("chars:") {
        hole.chars(class.trim())
    } else {
        return Err(Error::Infill(format!(
            "unknown hole constraint {rest:?}: use /regex/, {{word,word}} or chars:[class]"
        )));
    };
    Ok(hole)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lengths_and_constraints() {
        let t = Template::parse(r"The [4] sat on the [1..3]. Year [4 /(19|20)[0-9]{2}/], pet [1 {cat, dog}] \[x\] [2 chars:[a-z]]").unwrap();
        let holes: Vec<&Hole> = t.holes().collect();
        assert_eq!(holes.len(), 5);
        assert_eq!((holes[0].min, holes[0].max), (4, 4));
        assert_eq!((holes[1].min, holes[1].max), (1, 3));
        assert_eq!(holes[2].constraint, Constraint::Regex("(19|20)[0-9]{2}".into()));
        assert_eq!(holes[3].constraint, Constraint::OneOf(vec!["cat".into(), "dog".into()]));
        assert_eq!(holes[4].constraint, Constraint::Chars("[a-z]".into()));
        assert_eq!(t.parts()[0], Part::Text("The ".into()));
        assert!(t.parts().iter().any(|p| *p == Part::Text(" [x] ".into())));
    }

    #[test]
    fn builder_equals_parse() {
        let built = Template::new().text("The ").hole(Hole::new(4).one_of(&["cat", "dog"])).text(" sat.");
        assert_eq!(built, Template::parse("The [4 {cat,dog}] sat.").unwrap());
    }

    #[test]
    fn bad_templates_are_errors() {
        for bad in ["no holes", "[", "a ] b", "[0]", "[3..1]", "[x]", "[2 ?what]", "[1 {}]"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }
}
