//! Reading files written by Python's `torch.save` (and plain pickles holding tensors) without
//! executing any pickled code.
//!
//! Both layouts `torch.load` accepts are read:
//! - **zip** (torch ≥ 1.6): `<archive>/data.pkl` (the object, storages as persistent ids),
//!   `<archive>/data/<key>` (raw storage bytes), `<archive>/byteorder`, `<archive>/version`;
//! - **legacy** (`_use_new_zipfile_serialization=False`, old torch): see `legacy.rs`.
//!
//! The pickle is run by a data-only machine (`pickle_vm.rs`) that recognises the globals torch
//! checkpoints use by name and keeps every other call as an [`OpaqueValue`](super::OpaqueValue);
//! nothing is imported or called, so a hostile file can at worst be rejected.
//!
//! ```no_run
//! use slt::model::import::{load_state_dict, load_torch_file};
//! # fn main() -> Result<(), slt::model::import::TorchFileError> {
//! let ckpt = load_torch_file("best.ckpt".as_ref())?;
//! let epoch = ckpt.get("epoch").and_then(|v| v.as_int());
//! let weights = load_state_dict("s3ds_glosscls.pth.tar".as_ref(), None)?;
//! # Ok(()) }
//! ```

use std::borrow::Cow;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::convert::{convert, ConvertError};
use super::legacy::{parse_legacy, LegacyError};
use super::pickle_vm::{unpickle, PickleError};
use super::storage::{NoStorages, StorageSource};
use super::value::PyValue;
use crate::data::zip_index::{ZipIndex, ZipIndexError};

/// Errors from reading a torch file. Every variant names the file; problems inside the value
/// tree also give the key path (`state_dict['conv.weight']`).
#[derive(Debug, thiserror::Error)]
pub enum TorchFileError {
    /// The file cannot be opened or read.
    #[error("{}: cannot read: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The zip container is unreadable (the message names the file).
    #[error(transparent)]
    Zip(#[from] ZipIndexError),
    /// The file's layout is not one `torch.save` writes, or uses something unsupported.
    #[error("{}: {reason}", file.display())]
    Format {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A pickle inside the file is malformed.
    #[error("{}: {what}: {source}", file.display())]
    Pickle {
        /// The file.
        file: PathBuf,
        /// Which pickle (`data.pkl`, `main pickle`, …).
        what: String,
        /// The problem.
        source: PickleError,
    },
    /// A tensor's storage is missing, short or of an unsupported type.
    #[error("{}: {path}: storage '{key}' {reason}", file.display())]
    Storage {
        /// The file.
        file: PathBuf,
        /// Key path of the value that needs the storage.
        path: String,
        /// The storage key.
        key: String,
        /// What is wrong.
        reason: String,
    },
    /// A value is not what its context requires (bad tensor geometry, not a tensor dict, …).
    #[error("{}: {path}: {reason}", file.display())]
    Value {
        /// The file.
        file: PathBuf,
        /// Key path of the value.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// A problem with a value found after loading (no file attached yet), with its key path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {reason}")]
pub struct ValueError {
    /// Key path of the value (`<root>` for the top level).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl ValueError {
    /// The same error, attributed to `file`.
    pub fn in_file(self, file: &Path) -> TorchFileError {
        TorchFileError::Value {
            file: file.to_path_buf(),
            path: self.path,
            reason: self.reason,
        }
    }
}

fn from_convert(error: ConvertError, file: &Path) -> TorchFileError {
    let file = file.to_path_buf();
    match error {
        ConvertError::Storage { path, key, reason } => TorchFileError::Storage {
            file,
            path,
            key,
            reason,
        },
        ConvertError::Value { path, reason } => TorchFileError::Value { file, path, reason },
    }
}

/// Reads a file written by `torch.save` (zip or legacy layout, told apart by their first bytes)
/// into a value tree with every tensor materialised on the CPU.
pub fn load_torch_file(path: &Path) -> Result<PyValue, TorchFileError> {
    let io = |source| TorchFileError::Io {
        file: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io)?;
    let mut head = [0u8; 2];
    let n = file.read(&mut head).map_err(io)?;
    let format = |reason: &str| TorchFileError::Format {
        file: path.to_path_buf(),
        reason: reason.to_string(),
    };
    match &head[..n] {
        b"PK" => load_zip(path),
        [0x80, _] => {
            // SAFETY: the map is only read; like `ZipIndex`, inputs are treated as immutable
            // while they are being read (truncating the file meanwhile would fault the read).
            let map = unsafe { Mmap::map(&file) }.map_err(io)?;
            let legacy = parse_legacy(&map).map_err(|e| match e {
                LegacyError::Pickle { what, source } => TorchFileError::Pickle {
                    file: path.to_path_buf(),
                    what: what.to_string(),
                    source,
                },
                LegacyError::Format(reason) => format(&reason),
            })?;
            convert(&legacy.main, &legacy, map.len()).map_err(|e| from_convert(e, path))
        }
        [] => Err(format("empty file, not a torch.save file")),
        _ => Err(format(
            "not a torch.save file (neither a zip archive nor a pickle)",
        )),
    }
}

/// Reads a plain pickle (no torch container), e.g. the reference's annotation files after
/// gunzipping: tensors pickled by `pickle.dump` embed their storages
/// (`torch.storage._load_from_bytes`) and are materialised; `origin` names the data in errors.
pub fn load_pickle_bytes(data: &[u8], origin: &Path) -> Result<PyValue, TorchFileError> {
    let pickle = unpickle(data, 0).map_err(|source| TorchFileError::Pickle {
        file: origin.to_path_buf(),
        what: "pickle".into(),
        source,
    })?;
    convert(&pickle, &NoStorages, data.len()).map_err(|e| from_convert(e, origin))
}

/// Storages of a zip-layout file: `<prefix>/data/<key>`.
struct ZipStorages<'a> {
    index: &'a ZipIndex,
    prefix: &'a str,
}

impl StorageSource for ZipStorages<'_> {
    fn storage_bytes(&self, key: &str) -> Result<Cow<'_, [u8]>, String> {
        self.index
            .read(&format!("{}/data/{key}", self.prefix))
            .map_err(|e| match e {
                ZipIndexError::Missing { .. } => "missing from the archive".to_string(),
                ZipIndexError::Corrupt { reason, .. } => format!("is unreadable: {reason}"),
                other => other.to_string(),
            })
    }
}

fn load_zip(path: &Path) -> Result<PyValue, TorchFileError> {
    let format = |reason: String| TorchFileError::Format {
        file: path.to_path_buf(),
        reason,
    };
    let index = ZipIndex::open(path)?;
    // `torch.save` names the top folder after the file; `torch.load` takes whatever it is.
    let mut prefixes: Vec<&str> = index
        .names()
        .filter_map(|name| name.strip_suffix("/data.pkl"))
        .filter(|prefix| !prefix.contains('/'))
        .collect();
    prefixes.sort_unstable();
    let prefix = match prefixes.as_slice() {
        [one] => *one,
        [] => {
            return Err(format(
                "zip archive without '<name>/data.pkl': not a torch.save file".into(),
            ))
        }
        many => {
            return Err(format(format!(
                "zip archive with several torch payloads ({}); expected one",
                many.join(", ")
            )))
        }
    };
    let byteorder = format!("{prefix}/byteorder");
    if index.contains(&byteorder) {
        let order = index.read(&byteorder)?;
        let order = String::from_utf8_lossy(&order);
        if order.trim() != "little" {
            return Err(format(format!(
                "saved with byte order '{}'; only little-endian files are supported",
                order.trim()
            )));
        }
    }
    let data_pkl = format!("{prefix}/data.pkl");
    let bytes = index.read(&data_pkl)?;
    let pickle = unpickle(&bytes, 0).map_err(|source| TorchFileError::Pickle {
        file: path.to_path_buf(),
        what: data_pkl.clone(),
        source,
    })?;
    let source = ZipStorages {
        index: &index,
        prefix,
    };
    convert(&pickle, &source, bytes.len()).map_err(|e| from_convert(e, path))
}
