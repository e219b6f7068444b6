//! The exact bytes each vocabulary entry contributes to decoded text, so constraints
//! can be checked token by token (decoding ids one at a time loses the bytes of
//! characters split across tokens).

use std::collections::HashMap;

use serde_json::Value;

use crate::tokenizer::TextTokenizer;

/// How the tokenizer's vocabulary strings map to text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    /// GPT-2 byte-level BPE: every byte is drawn as a printable character.
    ByteLevel,
    /// SentencePiece: `▁` is a space, `<0xNN>` a raw byte.
    Metaspace,
    /// WordPiece: `##x` continues a word, anything else starts one after a space.
    WordPiece,
    /// Whatever single-token decoding gives.
    Plain,
}

fn scheme_of(decoder: &Value) -> Scheme {
    let ty = decoder.get("type").and_then(Value::as_str).unwrap_or("");
    match ty {
        "ByteLevel" => Scheme::ByteLevel,
        "Metaspace" | "ByteFallback" => Scheme::Metaspace,
        "WordPiece" => Scheme::WordPiece,
        "Replace" if decoder.to_string().contains('▁') => Scheme::Metaspace,
        "Sequence" => decoder
            .get("decoders")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(scheme_of)
            .find(|s| *s != Scheme::Plain)
            .unwrap_or(Scheme::Plain),
        _ => Scheme::Plain,
    }
}

/// GPT-2's printable stand-in for each byte, inverted.
fn byte_level_table() -> HashMap<char, u8> {
    let mut bs: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut cs = bs.clone();
    let mut n = 0;
    for b in 0..=255u32 {
        if !bs.contains(&b) {
            bs.push(b);
            cs.push(256 + n);
            n += 1;
        }
    }
    bs.into_iter()
        .zip(cs)
        .map(|(b, c)| (char::from_u32(c).expect("valid char"), b as u8))
        .collect()
}

/// Bytes of every id below `vocab`; `None` for special tokens and ids the tokenizer
/// doesn't know (never allowed inside a hole).
pub struct TokenBytes {
    bytes: Vec<Option<Vec<u8>>>,
}

impl TokenBytes {
    /// Build for a model with `vocab` logit rows.
    pub fn new(tok: &TextTokenizer, vocab: usize) -> Self {
        let inner = tok.inner();
        let decoder = inner
            .get_decoder()
            .and_then(|d| serde_json::to_value(d).ok())
            .unwrap_or(Value::Null);
        let scheme = scheme_of(&decoder);
        let specials: std::collections::HashSet<u32> = inner
            .get_added_tokens_decoder()
            .into_iter()
            .filter(|(_, t)| t.special)
            .map(|(id, _)| id)
            .collect();
        let table = (scheme == Scheme::ByteLevel).then(byte_level_table);
        let bytes = (0..vocab as u32)
            .map(|id| {
                if specials.contains(&id) {
                    return None;
                }
                let piece = inner.id_to_token(id)?;
                Some(match scheme {
                    Scheme::ByteLevel => {
                        let t = table.as_ref().expect("table");
                        piece.chars().map(|c| t.get(&c).copied()).collect::<Option<Vec<u8>>>()?
                    }
                    Scheme::Metaspace => {
                        if let Some(hex) = piece.strip_prefix("<0x").and_then(|s| s.strip_suffix('>')) {
                            vec![u8::from_str_radix(hex, 16).ok()?]
                        } else {
                            piece.replace('▁', " ").into_bytes()
                        }
                    }
                    Scheme::WordPiece => match piece.strip_prefix("##") {
                        Some(rest) => rest.as_bytes().to_vec(),
                        None => format!(" {piece}").into_bytes(),
                    },
                    Scheme::Plain => tok.decode(&[id], false).ok()?.into_bytes(),
                })
            })
            .collect();
        Self { bytes }
    }

    /// From explicit byte strings (`None`: never allowed), e.g. for tests or custom vocabularies.
    pub fn from_bytes(bytes: Vec<Option<Vec<u8>>>) -> Self {
        Self { bytes }
    }

    /// The bytes of `id`, if it may appear inside a hole.
    pub fn get(&self, id: u32) -> Option<&[u8]> {
        self.bytes.get(id as usize)?.as_deref()
    }

    /// Number of ids covered.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// True when no id is covered.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Ids with bytes, in order.
    pub fn ids(&self) -> impl Iterator<Item = (u32, &[u8])> {
        self.bytes
            .iter()
            .enumerate()
            .filter_map(|(i, b)| Some((i as u32, b.as_deref()?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_table_is_a_bijection() {
        let t = byte_level_table();
        assert_eq!(t.len(), 256);
        assert_eq!(t[&'Ġ'], b' ');
        assert_eq!(t[&'Ċ'], b'\n');
        assert_eq!(t[&'a'], b'a');
    }
}
