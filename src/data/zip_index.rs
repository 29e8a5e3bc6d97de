//! A zip archive opened once, indexed once and read from any number of threads.
//!
//! The central directory is parsed a single time (with the `zip` crate) into a compact
//! name → location table; the file itself is memory-mapped, so every read is a
//! position-independent slice of the map. There is no shared file cursor, which is exactly
//! the failure of the reference's cached zip handle when DataLoader workers fork after the
//! parent has read from it (spec §11, pitfall 11). Stored entries are returned without a copy,
//! deflated ones are inflated into a fresh buffer; every entry's CRC-32 is checked.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fs::File;
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use thiserror::Error;

/// Errors from opening or reading an indexed zip archive. Each names the archive.
#[derive(Debug, Error)]
pub enum ZipIndexError {
    /// The archive could not be opened or mapped.
    #[error("{path}: cannot open zip archive: {source}")]
    Open {
        /// The archive.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The central directory could not be parsed.
    #[error("{path}: not a readable zip archive: {source}")]
    Format {
        /// The archive.
        path: PathBuf,
        /// The parser's error.
        source: zip::result::ZipError,
    },
    /// The requested entry is not in the archive.
    #[error("{path}: no entry '{entry}' in the archive")]
    Missing {
        /// The archive.
        path: PathBuf,
        /// The entry name that was looked up.
        entry: String,
    },
    /// The entry exists but its bytes are damaged or use an unsupported feature.
    #[error("{path}: entry '{entry}': {reason}")]
    Corrupt {
        /// The archive.
        path: PathBuf,
        /// The entry.
        entry: String,
        /// What is wrong.
        reason: String,
    },
}

/// How an entry's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Stored,
    Deflated,
}

/// Where one entry lives inside the mapped file.
#[derive(Debug, Clone, Copy)]
struct EntryLocation {
    local_header_offset: u64,
    compressed_size: u64,
    uncompressed_size: u64,
    crc32: u32,
    method: Method,
}

/// Size of the fixed part of a local file header.
const LOCAL_HEADER_LEN: usize = 30;
const LOCAL_HEADER_SIGNATURE: u32 = 0x0403_4b50;

/// A memory-mapped zip archive with a name index. `Sync`: share it by reference or `Arc`.
pub struct ZipIndex {
    path: PathBuf,
    map: Mmap,
    entries: HashMap<Box<str>, EntryLocation>,
}

impl std::fmt::Debug for ZipIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZipIndex")
            .field("path", &self.path)
            .field("entries", &self.entries.len())
            .finish()
    }
}

impl ZipIndex {
    /// Opens `path`, maps it and indexes its central directory.
    pub fn open(path: &Path) -> Result<Self, ZipIndexError> {
        let open_err = |source| ZipIndexError::Open {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(open_err)?;
        // SAFETY: the map is only read. Truncating the file while it is mapped would make
        // reads fault; archives are treated as immutable inputs for the lifetime of a run.
        let map = unsafe { Mmap::map(&file) }.map_err(open_err)?;
        let entries = index_central_directory(&map).map_err(|source| ZipIndexError::Format {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            path: path.to_path_buf(),
            map,
            entries,
        })
    }

    /// The archive's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of file entries (directories are not indexed).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the archive holds no file entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Whether an entry of this exact name exists.
    pub fn contains(&self, entry: &str) -> bool {
        self.entries.contains_key(entry)
    }

    /// All entry names, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(|k| &**k)
    }

    /// The uncompressed bytes of `entry`: borrowed from the map for stored entries, inflated
    /// for deflated ones. The CRC-32 is verified either way.
    pub fn read(&self, entry: &str) -> Result<Cow<'_, [u8]>, ZipIndexError> {
        let location = self
            .entries
            .get(entry)
            .ok_or_else(|| ZipIndexError::Missing {
                path: self.path.clone(),
                entry: entry.to_string(),
            })?;
        let corrupt = |reason: String| ZipIndexError::Corrupt {
            path: self.path.clone(),
            entry: entry.to_string(),
            reason,
        };
        let raw = self.raw_data(location).map_err(corrupt)?;
        let bytes: Cow<'_, [u8]> = match location.method {
            Method::Stored => {
                if location.compressed_size != location.uncompressed_size {
                    return Err(corrupt(format!(
                        "stored entry with compressed size {} != size {}",
                        location.compressed_size, location.uncompressed_size
                    )));
                }
                Cow::Borrowed(raw)
            }
            Method::Deflated => {
                let capacity = usize::try_from(location.uncompressed_size).unwrap_or(0);
                let mut out = Vec::with_capacity(capacity);
                flate2::read::DeflateDecoder::new(raw)
                    .read_to_end(&mut out)
                    .map_err(|e| corrupt(format!("cannot inflate: {e}")))?;
                if out.len() as u64 != location.uncompressed_size {
                    return Err(corrupt(format!(
                        "inflated to {} bytes, central directory says {}",
                        out.len(),
                        location.uncompressed_size
                    )));
                }
                Cow::Owned(out)
            }
        };
        let crc = crc32fast::hash(&bytes);
        if crc != location.crc32 {
            return Err(corrupt(format!(
                "CRC-32 mismatch (data {crc:08x}, central directory {:08x})",
                location.crc32
            )));
        }
        Ok(bytes)
    }

    /// The compressed bytes of an entry, located through its local header.
    fn raw_data(&self, location: &EntryLocation) -> Result<&[u8], String> {
        let start = usize::try_from(location.local_header_offset)
            .map_err(|_| "local header offset does not fit in memory".to_string())?;
        let header = self
            .map
            .get(start..start + LOCAL_HEADER_LEN)
            .ok_or_else(|| format!("local header at {start} lies past the end of the file"))?;
        let signature = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if signature != LOCAL_HEADER_SIGNATURE {
            return Err(format!("no local file header at offset {start}"));
        }
        let name_len = usize::from(u16::from_le_bytes([header[26], header[27]]));
        let extra_len = usize::from(u16::from_le_bytes([header[28], header[29]]));
        let data_start = start + LOCAL_HEADER_LEN + name_len + extra_len;
        let len = usize::try_from(location.compressed_size)
            .map_err(|_| "entry size does not fit in memory".to_string())?;
        self.map.get(data_start..data_start + len).ok_or_else(|| {
            format!(
                "data ({len} bytes at offset {data_start}) lies past the end of the file ({} bytes)",
                self.map.len()
            )
        })
    }
}

fn index_central_directory(
    bytes: &[u8],
) -> Result<HashMap<Box<str>, EntryLocation>, zip::result::ZipError> {
    let archive = zip::ZipArchive::new(Cursor::new(bytes))?;
    let mut entries = HashMap::with_capacity(archive.len());
    for index in 0..archive.len() {
        let entry = archive.by_index_data(index)?;
        if entry.is_dir() {
            continue;
        }
        let method = match entry.compression() {
            zip::CompressionMethod::Stored => Method::Stored,
            zip::CompressionMethod::Deflated => Method::Deflated,
            _ => {
                return Err(zip::result::ZipError::UnsupportedArchive(
                    "compression method other than stored/deflated",
                ))
            }
        };
        if entry.encrypted() {
            return Err(zip::result::ZipError::UnsupportedArchive(
                "encrypted entries are not supported",
            ));
        }
        let name: Box<str> = entry.name()?.into();
        entries.insert(
            name,
            EntryLocation {
                local_header_offset: entry.header_start(),
                compressed_size: entry.compressed_size(),
                uncompressed_size: entry.size(),
                crc32: entry.crc32(),
                method,
            },
        );
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    fn write_zip(path: &Path, files: &[(&str, &[u8], zip::CompressionMethod)]) {
        let mut writer = zip::ZipWriter::new(File::create(path).unwrap());
        for (name, data, method) in files {
            writer
                .start_file(
                    *name,
                    SimpleFileOptions::default().compression_method(*method),
                )
                .unwrap();
            writer.write_all(data).unwrap();
        }
        writer
            .add_directory("some/dir/", SimpleFileOptions::default())
            .unwrap();
        writer.finish().unwrap();
    }

    #[test]
    fn reads_stored_and_deflated_entries_from_many_threads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.zip");
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        write_zip(
            &path,
            &[
                ("x/stored.bin", b"hello", zip::CompressionMethod::Stored),
                ("x/deflated.bin", &big, zip::CompressionMethod::Deflated),
            ],
        );
        let index = ZipIndex::open(&path).unwrap();
        assert_eq!(index.len(), 2, "directories are not indexed");
        assert!(matches!(
            index.read("x/stored.bin").unwrap(),
            Cow::Borrowed(b"hello")
        ));
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..20 {
                        assert_eq!(&*index.read("x/deflated.bin").unwrap(), &big[..]);
                    }
                });
            }
        });
        let err = index.read("x/nope.bin").unwrap_err().to_string();
        assert!(err.contains("a.zip") && err.contains("x/nope.bin"), "{err}");
    }

    #[test]
    fn damaged_entry_bytes_are_reported_not_returned() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("b.zip");
        write_zip(
            &path,
            &[("f.bin", b"0123456789abcdef", zip::CompressionMethod::Stored)],
        );
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.windows(4).position(|w| w == b"0123").unwrap();
        bytes[at] = b'X';
        std::fs::write(&path, bytes).unwrap();
        let err = ZipIndex::open(&path)
            .unwrap()
            .read("f.bin")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CRC-32 mismatch") && err.contains("f.bin"),
            "{err}"
        );
    }

    #[test]
    fn a_file_that_is_not_a_zip_is_a_format_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not.zip");
        std::fs::write(&path, b"definitely not a zip archive").unwrap();
        let err = ZipIndex::open(&path).unwrap_err().to_string();
        assert!(
            err.contains("not.zip") && err.contains("not a readable zip"),
            "{err}"
        );
    }
}
