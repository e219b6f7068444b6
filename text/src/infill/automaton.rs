//! A hole's constraint as an automaton over *tokens* (DINGO-style constrained decoding
//! for diffusion LMs): the regular expression's DFA run over each token's bytes, plus the
//! hole's length rules. Because masked diffusion commits positions in any order, the
//! question "may token `t` go at position `j`?" is answered with a forward pass (states
//! reachable from the hole's start through the positions before `j`) and a backward
//! pass (states from which the positions after `j` can still reach acceptance), so a
//! committed token never makes the hole impossible to complete.

use std::collections::HashMap;
use std::rc::Rc;

use regex_automata::dfa::{Automaton, StartKind, dense};
use regex_automata::util::primitives::StateID;
use regex_automata::util::start;
use regex_automata::{Anchored, MatchKind};

use super::token_bytes::TokenBytes;
use crate::error::{Error, Result};

/// What may fill one masked position of a hole.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allowed {
    /// Token ids, sorted.
    pub tokens: Vec<u32>,
    /// Whether end-of-text (deletion) is allowed.
    pub eos: bool,
}

/// One position of a hole as the decoder sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// Still `[MASK]`.
    Masked,
    /// Committed to end-of-text: deleted from the text.
    Eos,
    /// Committed to this token.
    Token(u32),
}

/// Token-level automaton of one hole.
pub struct HoleAutomaton {
    min: usize,
    max: usize,
    /// Whether end-of-text (a deleted position) may appear.
    eos_ok: bool,
    /// Per state: (token, next state), sorted by token.
    trans: Vec<Vec<(u32, u32)>>,
    /// Per state: the distinct next states (what a masked position can lead to).
    succ: Vec<Vec<u32>>,
    /// Per state: the text may end here.
    accept: Vec<bool>,
}

/// Sets of (state, count) pairs, count = committed non-EOS tokens capped at `min`.
type PairSet = Vec<bool>;

const MAX_STATES: usize = 4096;

/// An error with its causes (the regex builder's own message is only "error building NFA";
/// the syntax error that caused it is its source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut msg = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        msg = format!("{msg}: {c}");
        cause = c.source();
    }
    msg
}

impl HoleAutomaton {
    /// Build for `pattern` (the whole hole text must match it; `None`: any text),
    /// restricted to `allowed` ids when given, with `min..=max` tokens.
    pub fn new(pattern: Option<&str>, allowed: Option<&[u32]>, min: usize, max: usize, vocab: &TokenBytes) -> Result<Self> {
        let pattern = pattern.unwrap_or("(?s:.*)");
        let dfa = dense::Builder::new()
            .configure(
                dense::DFA::config()
                    .match_kind(MatchKind::All)
                    .start_kind(StartKind::Anchored)
                    .dfa_size_limit(Some(64 << 20))
                    .determinize_size_limit(Some(64 << 20)),
            )
            .build(pattern)
            .map_err(|e| Error::Infill(format!("regular expression /{pattern}/: {}", error_chain(&e))))?;
        let s0 = dfa
            .start_state(&start::Config::new().anchored(Anchored::Yes))
            .map_err(|e| Error::Infill(format!("regular expression /{pattern}/: {}", error_chain(&e))))?;
        let allowed: Option<std::collections::HashSet<u32>> = allowed.map(|a| a.iter().copied().collect());
        let tokens: Vec<(u32, &[u8])> = vocab
            .ids()
            .filter(|(id, b)| !b.is_empty() && allowed.as_ref().is_none_or(|a| a.contains(id)))
            .collect();
        let mut ids: std::collections::HashMap<StateID, u32> = std::collections::HashMap::new();
        let mut order = vec![s0];
        ids.insert(s0, 0);
        let mut trans = Vec::new();
        let mut i = 0;
        while i < order.len() {
            let s = order[i];
            let mut out = Vec::new();
            'tok: for &(id, bytes) in &tokens {
                let mut t = s;
                for &b in bytes {
                    t = dfa.next_state(t, b);
                    if dfa.is_dead_state(t) || dfa.is_quit_state(t) {
                        continue 'tok;
                    }
                }
                let next = match ids.get(&t) {
                    Some(&n) => n,
                    None => {
                        if order.len() >= MAX_STATES {
                            return Err(Error::Infill(format!("regular expression /{pattern}/ is too complex")));
                        }
                        let n = order.len() as u32;
                        ids.insert(t, n);
                        order.push(t);
                        n
                    }
                };
                out.push((id, next));
            }
            trans.push(out);
            i += 1;
        }
        let accept = order.iter().map(|&s| dfa.is_match_state(dfa.next_eoi_state(s))).collect();
        let succ = trans
            .iter()
            .map(|tr: &Vec<(u32, u32)>| {
                let mut next: Vec<u32> = tr.iter().map(|&(_, s)| s).collect();
                next.sort_unstable();
                next.dedup();
                next
            })
            .collect();
        // the reachability tables hold (positions + 1) x states x (min + 1) flags
        let cells = (max + 1).saturating_mul(order.len()).saturating_mul(min + 1);
        if cells > 64 << 20 {
            return Err(Error::Infill(format!(
                "a hole of {min}..{max} tokens with /{pattern}/ ({} automaton states) is too large to check; use shorter holes",
                order.len()
            )));
        }
        Ok(Self {
            min,
            max,
            eos_ok: min < max,
            trans,
            succ,
            accept,
        })
    }

    /// Positions of the hole.
    pub fn len(&self) -> usize {
        self.max
    }

    /// Never true: a hole has at least one position.
    pub fn is_empty(&self) -> bool {
        self.max == 0
    }

    /// Whether end-of-text may fill a position.
    pub fn eos_allowed(&self) -> bool {
        self.eos_ok
    }

    fn width(&self) -> usize {
        self.min + 1
    }

    fn next_of(&self, s: usize, tok: u32) -> Option<usize> {
        let tr = &self.trans[s];
        tr.binary_search_by_key(&tok, |&(t, _)| t).ok().map(|i| tr[i].1 as usize)
    }

    /// F[j]: pairs reachable after positions `0..j`.
    fn forward(&self, cells: &[Cell]) -> Vec<PairSet> {
        let w = self.width();
        let n = self.trans.len();
        let mut sets = Vec::with_capacity(cells.len() + 1);
        let mut cur = vec![false; n * w];
        cur[0] = true;
        sets.push(cur.clone());
        for cell in cells {
            let mut next = vec![false; n * w];
            for s in 0..n {
                for c in 0..w {
                    if !cur[s * w + c] {
                        continue;
                    }
                    let c2 = (c + 1).min(self.min);
                    match *cell {
                        Cell::Eos => {
                            if self.eos_ok {
                                next[s * w + c] = true;
                            }
                        }
                        Cell::Token(t) => {
                            if let Some(s2) = self.next_of(s, t) {
                                next[s2 * w + c2] = true;
                            }
                        }
                        Cell::Masked => {
                            if self.eos_ok {
                                next[s * w + c] = true;
                            }
                            for &s2 in &self.succ[s] {
                                next[s2 as usize * w + c2] = true;
                            }
                        }
                    }
                }
            }
            cur = next;
            sets.push(cur.clone());
        }
        sets
    }

    /// B[j]: pairs from which positions `j..` can still end in acceptance.
    fn backward(&self, cells: &[Cell]) -> Vec<PairSet> {
        let w = self.width();
        let n = self.trans.len();
        let mut sets = vec![Vec::new(); cells.len() + 1];
        let mut cur = vec![false; n * w];
        for s in 0..n {
            cur[s * w + self.min] = self.accept[s];
        }
        sets[cells.len()] = cur.clone();
        for (j, cell) in cells.iter().enumerate().rev() {
            let mut prev = vec![false; n * w];
            for s in 0..n {
                for c in 0..w {
                    let c2 = (c + 1).min(self.min);
                    let ok = match *cell {
                        Cell::Eos => self.eos_ok && cur[s * w + c],
                        Cell::Token(t) => self.next_of(s, t).is_some_and(|s2| cur[s2 * w + c2]),
                        Cell::Masked => {
                            (self.eos_ok && cur[s * w + c]) || self.succ[s].iter().any(|&s2| cur[s2 as usize * w + c2])
                        }
                    };
                    prev[s * w + c] = ok;
                }
            }
            cur = prev;
            sets[j] = cur.clone();
        }
        sets
    }

    /// Can the hole still be completed?
    pub fn feasible(&self, cells: &[Cell]) -> bool {
        self.backward(cells)[0][0]
    }

    /// For every masked position: the tokens allowed there, and whether end-of-text is.
    /// Positions with the same reachable sets on both sides share one answer (the middle
    /// of a long hole), so a long hole costs little more than a short one.
    pub fn allowed(&self, cells: &[Cell]) -> Vec<Option<Rc<Allowed>>> {
        let w = self.width();
        let fwd = self.forward(cells);
        let bwd = self.backward(cells);
        let mut memo: HashMap<(&[bool], &[bool]), Rc<Allowed>> = HashMap::new();
        cells
            .iter()
            .enumerate()
            .map(|(j, cell)| {
                if *cell != Cell::Masked {
                    return None;
                }
                let (f, b) = (&fwd[j], &bwd[j + 1]);
                if let Some(hit) = memo.get(&(f.as_slice(), b.as_slice())) {
                    return Some(hit.clone());
                }
                let mut tokens = Vec::new();
                let mut eos = false;
                for s in 0..self.trans.len() {
                    let counts: Vec<usize> = (0..w).filter(|&c| f[s * w + c]).collect();
                    if counts.is_empty() {
                        continue;
                    }
                    if self.eos_ok && counts.iter().any(|&c| b[s * w + c]) {
                        eos = true;
                    }
                    for &(t, s2) in &self.trans[s] {
                        if counts.iter().any(|&c| b[s2 as usize * w + (c + 1).min(self.min)]) {
                            tokens.push(t);
                        }
                    }
                }
                tokens.sort_unstable();
                tokens.dedup();
                let a = Rc::new(Allowed { tokens, eos });
                memo.insert((f.as_slice(), b.as_slice()), a.clone());
                Some(a)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ids: 0 "a", 1 "b", 2 "c", 3 "d", 4 "ab", 5 special
    fn vocab() -> TokenBytes {
        let mut v: Vec<Option<Vec<u8>>> = ["a", "b", "c", "d", "ab"].iter().map(|s| Some(s.as_bytes().to_vec())).collect();
        v.push(None);
        TokenBytes::from_bytes(v)
    }

    #[test]
    fn commits_on_either_side_narrow_the_choice() {
        let a = HoleAutomaton::new(Some("ab|cd"), None, 2, 2, &vocab()).unwrap();
        let m = Cell::Masked;
        assert!(a.feasible(&[m, m]));
        // "b" committed second: only "a" may come first (order-free: the right side counts)
        let allowed = a.allowed(&[m, Cell::Token(1)]);
        assert_eq!(allowed[0].as_ref().unwrap().tokens, vec![0]);
        assert!(!a.feasible(&[Cell::Token(2), Cell::Token(1)]));
        // with nothing committed, "ab" as one token would leave the second position unfillable
        let allowed = a.allowed(&[m, m]);
        assert_eq!(allowed[0].as_ref().unwrap().tokens, vec![0, 2]);
        assert!(!allowed[0].as_ref().unwrap().eos);
    }

    #[test]
    fn length_ranges_and_deletion() {
        // 1..2 tokens of "ab": either "ab" + deleted, or "a" "b"
        let a = HoleAutomaton::new(Some("ab"), None, 1, 2, &vocab()).unwrap();
        let m = Cell::Masked;
        let allowed = a.allowed(&[m, m]);
        assert_eq!(allowed[0].as_ref().unwrap().tokens, vec![0, 4]);
        assert!(allowed[0].as_ref().unwrap().eos);
        assert!(a.feasible(&[Cell::Token(4), Cell::Eos]));
        assert!(a.feasible(&[Cell::Eos, Cell::Token(4)]));
        assert!(!a.feasible(&[Cell::Eos, Cell::Eos]), "at least one token");
        // an exact length forbids deletion; specials are never allowed
        let exact = HoleAutomaton::new(None, None, 2, 2, &vocab()).unwrap();
        assert!(!exact.feasible(&[Cell::Eos, m]));
        assert!(!exact.allowed(&[m, m])[0].as_ref().unwrap().tokens.contains(&5));
        // impossible: three tokens can't spell "ab"
        assert!(!HoleAutomaton::new(Some("ab"), None, 3, 3, &vocab()).unwrap().feasible(&[m, m, m]));
        // a token-set restriction
        let only_c = HoleAutomaton::new(None, Some(&[2]), 1, 1, &vocab()).unwrap();
        assert_eq!(only_c.allowed(&[m])[0].as_ref().unwrap().tokens, vec![2]);
    }
}
