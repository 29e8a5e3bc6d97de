//! The legacy (pre-1.6, `_use_new_zipfile_serialization=False`) `torch.save` layout:
//!
//! ```text
//! pickle(MAGIC_NUMBER) pickle(1001) pickle(sys_info) pickle(obj) pickle(sorted storage keys)
//! for each key: u64 element count (little-endian), then count × element-size raw bytes
//! ```
//!
//! The element size of each storage comes from the first persistent id that names it in the
//! main pickle (the same rule `torch.load` follows).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use tch::Kind;

use super::pickle_graph::{Obj, Pickle};
use super::pickle_vm::{unpickle, PickleError};
use super::storage::{parse_storage_pid, StorageSource};

/// `0x1950a86a20f9469cfc6c` as pickle's little-endian two's complement bytes.
const MAGIC: [u8; 10] = [0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8, 0x50, 0x19];
const PROTOCOL_VERSION: i64 = 1001;

/// A problem with the legacy layout.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LegacyError {
    /// One of the pickles is malformed.
    #[error("{what}: {source}")]
    Pickle {
        what: &'static str,
        source: PickleError,
    },
    /// The layout around the pickles is wrong.
    #[error("{0}")]
    Format(String),
}

/// A parsed legacy file: its main pickle and where each storage's bytes lie.
pub(crate) struct LegacyFile<'a> {
    pub main: Pickle,
    data: &'a [u8],
    storages: HashMap<String, Range<usize>>,
}

impl StorageSource for LegacyFile<'_> {
    fn storage_bytes(&self, key: &str) -> Result<Cow<'_, [u8]>, String> {
        let range = self
            .storages
            .get(key)
            .ok_or("is not in the file's list of storages")?;
        Ok(Cow::Borrowed(&self.data[range.clone()]))
    }
}

fn pickle_at(data: &[u8], start: usize, what: &'static str) -> Result<Pickle, LegacyError> {
    unpickle(data, start).map_err(|source| LegacyError::Pickle { what, source })
}

/// Reads the layout of a legacy `torch.save` file.
pub(crate) fn parse_legacy(data: &[u8]) -> Result<LegacyFile<'_>, LegacyError> {
    let magic = pickle_at(data, 0, "magic number").map_err(|_| {
        LegacyError::Format(
            "not a torch.save file (neither a zip archive nor torch's legacy format)".into(),
        )
    })?;
    if !matches!(&magic.arena[magic.root], Obj::BigInt(b) if b[..] == MAGIC) {
        return Err(LegacyError::Format(
            "not a torch.save file: a pickle without torch's magic number".into(),
        ));
    }
    let protocol = pickle_at(data, magic.end, "protocol version")?;
    match &protocol.arena[protocol.root] {
        Obj::Int(PROTOCOL_VERSION) => {}
        other => {
            return Err(LegacyError::Format(format!(
                "unsupported legacy protocol version {other:?} (expected {PROTOCOL_VERSION})"
            )))
        }
    }
    let info = pickle_at(data, protocol.end, "system info")?;
    let little = info.dict_get(info.root, "little_endian");
    if little.is_some_and(|id| info.arena[id] == Obj::Bool(false)) {
        return Err(LegacyError::Format(
            "saved on a big-endian machine; only little-endian files are supported".into(),
        ));
    }
    let main = pickle_at(data, info.end, "main pickle")?;
    let keys = pickle_at(data, main.end, "storage key list")?;
    let Obj::List(key_ids) = &keys.arena[keys.root] else {
        return Err(LegacyError::Format(
            "the storage key list is not a list".into(),
        ));
    };

    // Element type and count of each storage, from its first reference.
    let mut registry: HashMap<String, (Option<Kind>, i64, String)> = HashMap::new();
    for obj in &main.arena {
        if let Obj::Persistent(pid) = obj {
            if let Ok(pid) = parse_storage_pid(&main.arena, *pid) {
                registry
                    .entry(pid.key)
                    .or_insert((pid.kind, pid.numel, pid.type_name));
            }
        }
    }

    let mut storages = HashMap::new();
    let mut pos = keys.end;
    for &key_id in key_ids {
        let key = match &keys.arena[key_id] {
            Obj::Str(s) => s.clone(),
            Obj::Int(v) => v.to_string(),
            _ => return Err(LegacyError::Format("a storage key is not a string".into())),
        };
        let fail = |reason: String| LegacyError::Format(format!("storage '{key}': {reason}"));
        let (kind, numel, type_name) = registry
            .get(&key)
            .ok_or_else(|| fail("listed, but no persistent id names it".into()))?;
        let kind = kind.ok_or_else(|| fail(format!("unsupported storage type {type_name}")))?;
        let header = data
            .get(pos..pos.saturating_add(8))
            .ok_or_else(|| fail(format!("data truncated (file ends at byte {})", data.len())))?;
        let mut raw = [0u8; 8];
        raw.copy_from_slice(header);
        let count = u64::from_le_bytes(raw);
        if i64::try_from(count).ok() != Some(*numel) {
            return Err(fail(format!(
                "the file holds {count} elements, the pickle says {numel}"
            )));
        }
        let start = pos + 8;
        let end = usize::try_from(count)
            .ok()
            .and_then(|n| n.checked_mul(kind.elt_size_in_bytes()))
            .and_then(|n| n.checked_add(start))
            .filter(|&end| end <= data.len())
            .ok_or_else(|| fail(format!("data truncated (file ends at byte {})", data.len())))?;
        storages.insert(key, start..end);
        pos = end;
    }
    Ok(LegacyFile {
        main,
        data,
        storages,
    })
}
