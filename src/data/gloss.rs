//! Gloss vocabularies (`gloss2ids*.pkl`) and the Sign2Gloss gloss tokenizer (slrt-spec §3).
//!
//! The reference's `GlossTokenizer_S2G` splits a gloss string with Python's `str.split()`,
//! lower-cases every token, maps unknown tokens to `<unk>`, and pads a batch with `<pad>`; the
//! CTC blank is `<s>` if the vocabulary has it, else `<si>`, and must have id 0.
//!
//! ```no_run
//! use slt::data::gloss::S2GGlossTokenizer;
//! let tok = S2GGlossTokenizer::from_file("data/phoenix-2014t/gloss2ids_old.pkl".as_ref(), true)?;
//! let batch = tok.encode_batch(&["JETZT WETTER", "DRUCK TIEF KOMMEN"]);
//! assert_eq!((batch.max_len, batch.lengths.clone()), (3, vec![2, 3]));
//! # Ok::<(), slt::data::gloss::GlossError>(())
//! ```

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde_pickle::{DeOptions, HashableValue, Value};
use thiserror::Error;

use super::annotation::describe;

/// Why a vocabulary could not be read or used.
#[derive(Debug, Error)]
pub enum GlossError {
    /// The file could not be opened or read.
    #[error("{}: cannot read: {source}", .path.display())]
    Io {
        /// The vocabulary file.
        path: PathBuf,
        /// The underlying I/O error.
        source: io::Error,
    },
    /// The bytes are not a pickle serde-pickle can parse.
    #[error("{}: not a readable pickle: {source}", .path.display())]
    Pickle {
        /// The vocabulary file.
        path: PathBuf,
        /// The parser's error.
        source: serde_pickle::Error,
    },
    /// The pickle is not a dict.
    #[error("{}: expected a dict gloss → id, found {found}", .path.display())]
    NotADict {
        /// The vocabulary file.
        path: PathBuf,
        /// What the top level was instead.
        found: String,
    },
    /// A key is not a string or a value is not an integer.
    #[error("{}: entry {entry}: expected {expected}, found {found}", .path.display())]
    BadEntry {
        /// The vocabulary file.
        path: PathBuf,
        /// The entry, as `'gloss' → value` or the key's description.
        entry: String,
        /// What was expected.
        expected: &'static str,
        /// What was found.
        found: String,
    },
    /// The same gloss appears twice (only possible through [`GlossVocab::from_entries`]).
    #[error("{}: gloss '{gloss}' appears twice", .path.display())]
    DuplicateGloss {
        /// The vocabulary source.
        path: PathBuf,
        /// The repeated gloss.
        gloss: String,
    },
    /// Two glosses share an id.
    #[error("{}: entries '{first}' and '{second}' share id {id}", .path.display())]
    DuplicateId {
        /// The vocabulary file.
        path: PathBuf,
        /// The shared id.
        id: i64,
        /// One gloss with that id.
        first: String,
        /// Another gloss with that id.
        second: String,
    },
    /// An id outside `0..len`, so the ids cannot be contiguous.
    #[error(
        "{}: entry '{gloss}' → {id}: ids must be contiguous 0..{len} (one per entry)",
        .path.display()
    )]
    IdOutOfRange {
        /// The vocabulary file.
        path: PathBuf,
        /// The offending gloss.
        gloss: String,
        /// Its id.
        id: i64,
        /// Number of entries.
        len: usize,
    },
    /// Neither `<s>` nor `<si>` is in the vocabulary.
    #[error("{}: no blank/silence token: neither '<s>' nor '<si>' is in the vocabulary", .path.display())]
    NoBlank {
        /// The vocabulary file.
        path: PathBuf,
    },
    /// The blank token exists but does not have id 0 (CTC uses blank = 0).
    #[error("{}: blank token '{token}' has id {id}, but the CTC blank must have id 0", .path.display())]
    BlankNotZero {
        /// The vocabulary file.
        path: PathBuf,
        /// `<s>` or `<si>`.
        token: &'static str,
        /// Its id.
        id: i64,
    },
    /// A special token the tokenizer needs is absent.
    #[error("{}: the vocabulary has no '{token}' token", .path.display())]
    MissingToken {
        /// The vocabulary file.
        path: PathBuf,
        /// The absent token.
        token: &'static str,
    },
    /// Decoding met an id outside the vocabulary.
    #[error("{}: id {id} is outside the vocabulary (0..{len})", .path.display())]
    UnknownId {
        /// The vocabulary file.
        path: PathBuf,
        /// The offending id.
        id: i64,
        /// Vocabulary size.
        len: usize,
    },
}

/// A validated gloss vocabulary: glosses with unique ids `0..len`.
#[derive(Debug, Clone)]
pub struct GlossVocab {
    source: PathBuf,
    id2gloss: Vec<String>,
    gloss2id: HashMap<String, i64>,
}

impl GlossVocab {
    /// Reads a plain pickle of a dict `{gloss: id}` (the reference's `gloss2ids*.pkl`).
    pub fn read(path: &Path) -> Result<Self, GlossError> {
        let bytes = std::fs::read(path).map_err(|source| GlossError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let value = serde_pickle::value_from_slice(&bytes, DeOptions::new()).map_err(|source| {
            GlossError::Pickle {
                path: path.to_path_buf(),
                source,
            }
        })?;
        let dict = match value {
            Value::Dict(dict) => dict,
            other => {
                return Err(GlossError::NotADict {
                    path: path.to_path_buf(),
                    found: describe(&other),
                })
            }
        };
        let mut entries = Vec::with_capacity(dict.len());
        for (key, value) in dict {
            let bad = |entry: String, expected, found: &Value| GlossError::BadEntry {
                path: path.to_path_buf(),
                entry,
                expected,
                found: describe(found),
            };
            let gloss = match key {
                HashableValue::String(gloss) => gloss,
                other => {
                    let key = other.into_value();
                    return Err(bad(describe(&key), "a string key", &key));
                }
            };
            match value {
                Value::I64(id) => entries.push((gloss, id)),
                other => return Err(bad(format!("'{gloss}'"), "an integer id", &other)),
            }
        }
        Self::from_entries(path, entries)
    }

    /// Builds a vocabulary from `(gloss, id)` pairs; `source` names it in messages. Glosses must
    /// be unique and the ids exactly `0..n` in some order.
    pub fn from_entries(
        source: impl Into<PathBuf>,
        entries: impl IntoIterator<Item = (String, i64)>,
    ) -> Result<Self, GlossError> {
        let source = source.into();
        let entries: Vec<(String, i64)> = entries.into_iter().collect();
        let len = entries.len();
        let mut slots: Vec<Option<String>> = vec![None; len];
        let mut gloss2id = HashMap::with_capacity(len);
        for (gloss, id) in entries {
            let Some(slot) = usize::try_from(id).ok().and_then(|i| slots.get_mut(i)) else {
                return Err(GlossError::IdOutOfRange {
                    path: source,
                    gloss,
                    id,
                    len,
                });
            };
            if gloss2id.insert(gloss.clone(), id).is_some() {
                return Err(GlossError::DuplicateGloss {
                    path: source,
                    gloss,
                });
            }
            if let Some(first) = slot {
                let (first, second) = ordered(first.clone(), gloss);
                return Err(GlossError::DuplicateId {
                    path: source,
                    id,
                    first,
                    second,
                });
            }
            *slot = Some(gloss);
        }
        // n unique ids, all in 0..n: every slot is filled.
        let id2gloss = slots.into_iter().flatten().collect();
        Ok(Self {
            source,
            id2gloss,
            gloss2id,
        })
    }

    /// Where the vocabulary came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Number of glosses (including special tokens).
    pub fn len(&self) -> usize {
        self.id2gloss.len()
    }

    /// Whether the vocabulary is empty.
    pub fn is_empty(&self) -> bool {
        self.id2gloss.is_empty()
    }

    /// Id of `gloss` (exact match, no case folding).
    pub fn id(&self, gloss: &str) -> Option<i64> {
        self.gloss2id.get(gloss).copied()
    }

    /// Gloss with id `id`.
    pub fn gloss(&self, id: i64) -> Option<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.id2gloss.get(i))
            .map(String::as_str)
    }

    /// All glosses in id order.
    pub fn glosses(&self) -> &[String] {
        &self.id2gloss
    }
}

/// Sorts two names so that error messages do not depend on hash or pickle order.
fn ordered(a: String, b: String) -> (String, String) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

/// Whether Python's `str.isspace()` holds: Unicode `White_Space` plus the separators U+001C..U+001F.
pub fn is_python_whitespace(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's `str.split()` with no argument: runs of whitespace separate, no empty tokens.
pub fn split_python_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_python_whitespace).filter(|t| !t.is_empty())
}

/// Padded gloss labels of a batch (the reference's `gloss_labels` and `gls_lengths`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlossBatch {
    /// Row-major `[batch, max_len]` ids, each row padded with the pad id.
    pub labels: Vec<i64>,
    /// Number of glosses of each sequence, `[batch]`.
    pub lengths: Vec<i64>,
    /// Row length: the longest sequence (0 when all are empty).
    pub max_len: usize,
}

impl GlossBatch {
    /// Number of sequences.
    pub fn batch_size(&self) -> usize {
        self.lengths.len()
    }

    /// Row `i` including padding.
    pub fn row(&self, i: usize) -> Option<&[i64]> {
        if i >= self.batch_size() {
            return None;
        }
        self.labels.get(i * self.max_len..(i + 1) * self.max_len)
    }
}

/// The Sign2Gloss tokenizer: gloss strings → CTC targets, and CTC outputs → glosses.
#[derive(Debug, Clone)]
pub struct S2GGlossTokenizer {
    vocab: GlossVocab,
    lower_case: bool,
    blank_id: i64,
    pad_id: i64,
    unk_id: i64,
}

impl S2GGlossTokenizer {
    /// Wraps a vocabulary. The blank token is `<s>` if present, else `<si>`; it must have id 0.
    /// `<pad>` and `<unk>` must be present (the reference would silently fall back or fail later).
    pub fn new(vocab: GlossVocab, lower_case: bool) -> Result<Self, GlossError> {
        let path = || vocab.source().to_path_buf();
        let (token, blank_id) = ["<s>", "<si>"]
            .into_iter()
            .find_map(|t| vocab.id(t).map(|id| (t, id)))
            .ok_or_else(|| GlossError::NoBlank { path: path() })?;
        if blank_id != 0 {
            return Err(GlossError::BlankNotZero {
                path: path(),
                token,
                id: blank_id,
            });
        }
        let required = |token| {
            vocab.id(token).ok_or_else(|| GlossError::MissingToken {
                path: path(),
                token,
            })
        };
        let pad_id = required("<pad>")?;
        let unk_id = required("<unk>")?;
        Ok(Self {
            vocab,
            lower_case,
            blank_id,
            pad_id,
            unk_id,
        })
    }

    /// Reads the vocabulary at `path` and wraps it (see [`S2GGlossTokenizer::new`]).
    pub fn from_file(path: &Path, lower_case: bool) -> Result<Self, GlossError> {
        Self::new(GlossVocab::read(path)?, lower_case)
    }

    /// The vocabulary.
    pub fn vocab(&self) -> &GlossVocab {
        &self.vocab
    }

    /// Number of classes of the recognition head (vocabulary size).
    pub fn len(&self) -> usize {
        self.vocab.len()
    }

    /// Always false: a valid tokenizer has at least the blank, pad and unk tokens.
    pub fn is_empty(&self) -> bool {
        self.vocab.is_empty()
    }

    /// Whether tokens are lower-cased before lookup.
    pub fn lower_case(&self) -> bool {
        self.lower_case
    }

    /// Id of the CTC blank (`<s>` or `<si>`), always 0.
    pub fn blank_id(&self) -> i64 {
        self.blank_id
    }

    /// Id of `<pad>`.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// Id of `<unk>`, used for out-of-vocabulary glosses.
    pub fn unk_id(&self) -> i64 {
        self.unk_id
    }

    /// Id of one token (lower-cased first if configured); `<unk>` when unknown.
    pub fn token_id(&self, token: &str) -> i64 {
        let id = if self.lower_case {
            self.vocab.id(&token.to_lowercase())
        } else {
            self.vocab.id(token)
        };
        id.unwrap_or(self.unk_id)
    }

    /// Ids of a whitespace-separated gloss string (empty string → no ids).
    pub fn encode(&self, glosses: &str) -> Vec<i64> {
        split_python_whitespace(glosses)
            .map(|t| self.token_id(t))
            .collect()
    }

    /// Encodes a batch, padding every row to the longest with `<pad>`.
    pub fn encode_batch(&self, batch: &[&str]) -> GlossBatch {
        let rows: Vec<Vec<i64>> = batch.iter().map(|g| self.encode(g)).collect();
        let max_len = rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut labels = Vec::with_capacity(rows.len() * max_len);
        let mut lengths = Vec::with_capacity(rows.len());
        for row in rows {
            lengths.push(row.len() as i64);
            labels.extend_from_slice(&row);
            labels.resize(labels.len() + (max_len - row.len()), self.pad_id);
        }
        GlossBatch {
            labels,
            lengths,
            max_len,
        }
    }

    /// Glosses of `ids` (as stored in the vocabulary, i.e. lower-case for the shipped files).
    pub fn decode(&self, ids: &[i64]) -> Result<Vec<String>, GlossError> {
        ids.iter()
            .map(|&id| {
                self.vocab
                    .gloss(id)
                    .map(str::to_owned)
                    .ok_or_else(|| GlossError::UnknownId {
                        path: self.vocab.source().to_path_buf(),
                        id,
                        len: self.vocab.len(),
                    })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_pickle::SerOptions;
    use std::collections::BTreeMap;

    fn vocab_value(entries: &[(&str, i64)]) -> Value {
        let map: BTreeMap<HashableValue, Value> = entries
            .iter()
            .map(|(g, id)| (HashableValue::String(g.to_string()), Value::I64(*id)))
            .collect();
        Value::Dict(map)
    }

    /// Pickles `value` into `<tmp>/gloss2ids.pkl`; returns the dir guard and the path.
    fn write(value: &Value) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("gloss2ids.pkl");
        let bytes = serde_pickle::value_to_vec(value, SerOptions::new()).expect("pickle");
        std::fs::write(&path, bytes).expect("write");
        (dir, path)
    }

    const OLD_STYLE: &[(&str, i64)] = &[
        ("<si>", 0),
        ("<unk>", 1),
        ("<pad>", 2),
        ("</s>", 3),
        ("regen", 4),
        ("morgen", 5),
        ("mäßig", 6),
    ];

    fn tokenizer(lower_case: bool) -> S2GGlossTokenizer {
        let (_dir, path) = write(&vocab_value(OLD_STYLE));
        S2GGlossTokenizer::from_file(&path, lower_case).expect("valid vocab")
    }

    #[test]
    fn reads_vocab_and_looks_up_both_ways() {
        let (_dir, path) = write(&vocab_value(OLD_STYLE));
        let vocab = GlossVocab::read(&path).expect("valid");
        assert_eq!(vocab.len(), 7);
        assert_eq!(vocab.id("regen"), Some(4));
        assert_eq!(vocab.id("REGEN"), None);
        assert_eq!(vocab.gloss(6), Some("mäßig"));
        assert_eq!(vocab.gloss(7), None);
        assert_eq!(vocab.gloss(-1), None);
        assert_eq!(
            vocab.glosses()[..2],
            ["<si>".to_string(), "<unk>".to_string()]
        );
        assert_eq!(vocab.source(), path.as_path());
    }

    #[test]
    fn vocab_errors_name_file_and_entry() {
        let (_dir, path) = write(&vocab_value(&[("<si>", 0), ("a", 1), ("b", 1)]));
        let msg = GlossVocab::read(&path).expect_err("dup").to_string();
        assert_eq!(
            msg,
            format!("{}: entries 'a' and 'b' share id 1", path.display())
        );

        let (_dir, path) = write(&vocab_value(&[("<si>", 0), ("a", 1), ("gap", 3)]));
        let msg = GlossVocab::read(&path).expect_err("gap").to_string();
        assert!(msg.starts_with(&path.display().to_string()), "{msg}");
        assert!(
            msg.contains("entry 'gap' → 3: ids must be contiguous 0..3"),
            "{msg}"
        );

        let mut bad = vocab_value(&[("<si>", 0)]);
        if let Value::Dict(map) = &mut bad {
            map.insert(
                HashableValue::String("zwei".into()),
                Value::String("2".into()),
            );
        }
        let (_dir, path) = write(&bad);
        let msg = GlossVocab::read(&path).expect_err("str id").to_string();
        let expected = ": entry 'zwei': expected an integer id, found a string ('2')";
        assert_eq!(msg, format!("{}{expected}", path.display()));

        let (_dir, path) = write(&Value::List(vec![]));
        let msg = GlossVocab::read(&path).expect_err("list").to_string();
        assert!(
            msg.contains("expected a dict gloss → id, found a list"),
            "{msg}"
        );

        let entries = [("a".to_string(), 0), ("a".to_string(), 1)];
        let msg = GlossVocab::from_entries("mem", entries)
            .expect_err("dup gloss")
            .to_string();
        assert_eq!(msg, "mem: gloss 'a' appears twice");
    }

    #[test]
    fn blank_must_exist_and_be_zero() {
        let (_dir, path) = write(&vocab_value(&[("<unk>", 0), ("<pad>", 1)]));
        let err = S2GGlossTokenizer::from_file(&path, true).expect_err("no blank");
        assert!(matches!(err, GlossError::NoBlank { .. }), "{err:?}");
        assert!(err.to_string().starts_with(&path.display().to_string()));

        let (_dir, path) = write(&vocab_value(&[("<unk>", 0), ("<si>", 1), ("<pad>", 2)]));
        let msg = S2GGlossTokenizer::from_file(&path, true)
            .expect_err("blank 1")
            .to_string();
        let expected = ": blank token '<si>' has id 1, but the CTC blank must have id 0";
        assert_eq!(msg, format!("{}{expected}", path.display()));

        // `<s>` wins over `<si>` (mBART-style vocabulary).
        let (_dir, path) = write(&vocab_value(&[
            ("<si>", 3),
            ("<s>", 0),
            ("<pad>", 1),
            ("<unk>", 2),
        ]));
        let tok = S2GGlossTokenizer::from_file(&path, true).expect("<s> is blank");
        assert_eq!((tok.blank_id(), tok.pad_id(), tok.unk_id()), (0, 1, 2));

        let (_dir, path) = write(&vocab_value(&[("<si>", 0), ("<unk>", 1)]));
        let msg = S2GGlossTokenizer::from_file(&path, true)
            .expect_err("no pad")
            .to_string();
        assert!(
            msg.ends_with("the vocabulary has no '<pad>' token"),
            "{msg}"
        );
    }

    #[test]
    fn encode_matches_python_split_and_lower() {
        let tok = tokenizer(true);
        assert_eq!((tok.blank_id(), tok.pad_id(), tok.unk_id()), (0, 2, 1));
        assert_eq!(tok.encode("REGEN MORGEN"), vec![4, 5]);
        // Runs of whitespace (incl. tab, newline, NBSP, U+001C) separate; no empty tokens.
        assert_eq!(
            tok.encode("  REGEN \t\n MORGEN\u{a0}MäSSIG\u{1c}MÄßIG "),
            vec![4, 5, 1, 6]
        );
        assert_eq!(tok.encode(""), Vec::<i64>::new());
        assert_eq!(tok.encode("   "), Vec::<i64>::new());
        assert_eq!(tok.encode("SCHNEE"), vec![1]);
        let exact = tokenizer(false);
        assert_eq!(exact.encode("REGEN regen"), vec![1, 4]);
    }

    #[test]
    fn python_whitespace_set_is_exact() {
        // `[c for c in range(0x110000) if chr(c).isspace()]` in CPython 3.11.
        let python: Vec<u32> = [
            0x9..=0xd,
            0x1c..=0x20,
            0x85..=0x85,
            0xa0..=0xa0,
            0x1680..=0x1680,
        ]
        .into_iter()
        .flatten()
        .chain(0x2000..=0x200a)
        .chain([0x2028, 0x2029, 0x202f, 0x205f, 0x3000])
        .collect();
        let ours: Vec<u32> = (0..0x110000u32)
            .filter(|&c| char::from_u32(c).is_some_and(is_python_whitespace))
            .collect();
        assert_eq!(ours, python);
    }

    #[test]
    fn batch_is_padded_row_major() {
        let tok = tokenizer(true);
        let batch = tok.encode_batch(&["REGEN", "", "MORGEN REGEN SCHNEE"]);
        assert_eq!(batch.max_len, 3);
        assert_eq!(batch.lengths, vec![1, 0, 3]);
        assert_eq!(batch.labels, vec![4, 2, 2, 2, 2, 2, 5, 4, 1]);
        assert_eq!(batch.batch_size(), 3);
        assert_eq!(batch.row(2), Some(&[5, 4, 1][..]));
        assert_eq!(batch.row(3), None);

        let empty = tok.encode_batch(&["", " "]);
        assert_eq!((empty.row(1), empty.row(2)), (Some(&[][..]), None));
        assert_eq!(
            (empty.max_len, empty.lengths, empty.labels.len()),
            (0, vec![0, 0], 0)
        );
        assert_eq!(tok.encode_batch(&[]).batch_size(), 0);
    }

    #[test]
    fn decode_maps_ids_and_rejects_unknown() {
        let tok = tokenizer(true);
        assert_eq!(
            tok.decode(&[4, 6, 1]).expect("valid ids"),
            ["regen", "mäßig", "<unk>"]
        );
        let msg = tok.decode(&[4, 7]).expect_err("7 is outside").to_string();
        assert!(
            msg.ends_with("gloss2ids.pkl: id 7 is outside the vocabulary (0..7)"),
            "{msg}"
        );
    }
}
