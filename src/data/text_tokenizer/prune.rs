//! The reference's vocabulary prune map (`map_ids.pkl`, `old2new_vocab.pkl`): a pickled dict
//! `{original_mbart_id: pruned_id}`; its inverse maps generated ids back for decoding.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_pickle::{DeOptions, HashableValue, Value};

use super::TextTokenizerError;
use crate::data::annotation::describe;

/// A validated prune map: original tokenizer ids ↔ model (pruned) ids, one-to-one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PruneMap {
    source: PathBuf,
    forward: HashMap<u32, i64>,
    reverse: HashMap<i64, u32>,
}

impl PruneMap {
    /// Reads a plain pickle of a dict `{int: int}`.
    pub fn read(path: &Path) -> Result<Self, TextTokenizerError> {
        let bad = |detail: String| TextTokenizerError::PruneMap {
            path: path.to_path_buf(),
            detail,
        };
        let bytes = std::fs::read(path).map_err(|source| TextTokenizerError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let value = serde_pickle::value_from_slice(&bytes, DeOptions::new())
            .map_err(|e| bad(format!("not a readable pickle: {e}")))?;
        let Value::Dict(dict) = value else {
            return Err(bad(format!(
                "expected a dict original id → pruned id, found {}",
                describe(&value)
            )));
        };
        let mut pairs = Vec::with_capacity(dict.len());
        for (key, value) in dict {
            let key = match key {
                HashableValue::I64(k) => k,
                other => {
                    let found = describe(&other.into_value());
                    return Err(bad(format!("expected integer keys, found {found}")));
                }
            };
            let Value::I64(new) = value else {
                return Err(bad(format!(
                    "entry {key}: expected an integer pruned id, found {}",
                    describe(&value)
                )));
            };
            pairs.push((key, new));
        }
        Self::from_pairs(path, pairs)
    }

    /// Builds a map from `(original, pruned)` pairs; `source` names it in messages. Both sides
    /// must be non-negative and unique (the inverse is used for decoding).
    pub fn from_pairs(
        source: impl Into<PathBuf>,
        pairs: impl IntoIterator<Item = (i64, i64)>,
    ) -> Result<Self, TextTokenizerError> {
        let source = source.into();
        let bad = |detail: String| TextTokenizerError::PruneMap {
            path: source.clone(),
            detail,
        };
        let mut forward = HashMap::new();
        let mut reverse = HashMap::new();
        for (old, new) in pairs {
            let old_u32 = u32::try_from(old)
                .map_err(|_| bad(format!("original id {old} is not a valid token id")))?;
            if new < 0 {
                return Err(bad(format!("entry {old} → {new}: negative pruned id")));
            }
            if forward.insert(old_u32, new).is_some() {
                return Err(bad(format!("original id {old} appears twice")));
            }
            if let Some(first) = reverse.insert(new, old_u32) {
                let (a, b) = (first.min(old_u32), first.max(old_u32));
                return Err(bad(format!("original ids {a} and {b} both map to {new}")));
            }
        }
        Ok(Self {
            source,
            forward,
            reverse,
        })
    }

    /// Where the map came from.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.forward.len()
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.forward.is_empty()
    }

    /// Size of the pruned vocabulary: largest pruned id + 1.
    pub fn pruned_vocab_size(&self) -> usize {
        self.reverse
            .keys()
            .max()
            .map_or(0, |&m| usize::try_from(m).map_or(usize::MAX, |m| m + 1))
    }

    /// Pruned id of an original id.
    pub fn prune(&self, original: u32) -> Option<i64> {
        self.forward.get(&original).copied()
    }

    /// Original id of a pruned id.
    pub fn original(&self, pruned: i64) -> Option<u32> {
        self.reverse.get(&pruned).copied()
    }

    /// All `(original, pruned)` pairs sorted by original id.
    pub fn pairs(&self) -> Vec<(u32, i64)> {
        let mut pairs: Vec<(u32, i64)> = self.forward.iter().map(|(&o, &n)| (o, n)).collect();
        pairs.sort_unstable();
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::pickle::{PickleValue, PickleWriter};

    fn write(dir: &Path, value: &PickleValue) -> PathBuf {
        let path = dir.join("map_ids.pkl");
        let mut w = PickleWriter::new(3);
        w.value(value);
        std::fs::write(&path, w.finish()).expect("write pickle");
        path
    }

    fn dict(pairs: &[(i64, i64)]) -> PickleValue {
        PickleValue::Dict(
            pairs
                .iter()
                .map(|&(a, b)| (PickleValue::Int(a), PickleValue::Int(b)))
                .collect(),
        )
    }

    #[test]
    fn reads_and_inverts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), &dict(&[(0, 0), (1, 1), (250003, 6), (5000, 2)]));
        let map = PruneMap::read(&path).expect("valid");
        assert_eq!(map.len(), 4);
        assert_eq!(map.pruned_vocab_size(), 7);
        assert_eq!((map.prune(250003), map.prune(7)), (Some(6), None));
        assert_eq!((map.original(2), map.original(3)), (Some(5000), None));
        assert_eq!(map.pairs(), vec![(0, 0), (1, 1), (5000, 2), (250003, 6)]);
        assert_eq!(map.source(), path);
    }

    #[test]
    fn rejects_malformed_maps_naming_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            (
                dict(&[(0, 0), (5, 0)]),
                "original ids 0 and 5 both map to 0",
            ),
            (dict(&[(-1, 0)]), "original id -1 is not a valid token id"),
            (dict(&[(3, -2)]), "entry 3 → -2: negative pruned id"),
            (
                PickleValue::List(vec![]),
                "expected a dict original id → pruned id",
            ),
            (
                PickleValue::Dict(vec![(PickleValue::Str("a".into()), PickleValue::Int(0))]),
                "expected integer keys",
            ),
            (
                PickleValue::Dict(vec![(PickleValue::Int(0), PickleValue::Str("a".into()))]),
                "entry 0: expected an integer pruned id",
            ),
        ];
        for (value, expected) in cases {
            let path = write(dir.path(), &value);
            let msg = PruneMap::read(&path).expect_err(expected).to_string();
            assert!(msg.starts_with(&path.display().to_string()), "{msg}");
            assert!(msg.contains(expected), "{msg}");
        }
        let msg = PruneMap::read(&dir.path().join("absent.pkl"))
            .expect_err("missing")
            .to_string();
        assert!(msg.contains("absent.pkl: cannot read"), "{msg}");
    }
}
