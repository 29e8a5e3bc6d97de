//! File-level pieces of a checkpoint: the manifest with sizes and CRC-32 checksums, durable
//! (fsynced) writes, atomic pointer files and the temporary-name convention.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::CheckpointError;

/// Version of the checkpoint directory layout written by this code.
pub const FORMAT_VERSION: u32 = 1;
/// Model tensors (parameters and buffers).
pub const MODEL_FILE: &str = "model.safetensors";
/// Optimizer moment tensors.
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";
/// [`super::TrainState`] as JSON.
pub const STATE_FILE: &str = "state.json";
/// [`Manifest`] as JSON; written last, so its presence marks a finished write.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The files every checkpoint must list in its manifest.
pub const REQUIRED_FILES: [&str; 3] = [MODEL_FILE, OPTIMIZER_FILE, STATE_FILE];
/// Marker in the names of directories and files being written (`{name}.tmp-{pid}`).
pub const TMP_MARKER: &str = ".tmp-";

/// `manifest.json`: what a complete checkpoint contains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Layout version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Checkpoint (directory) name.
    pub name: String,
    /// Global step of the saved state, for ordering without parsing the state.
    pub global_step: u64,
    /// Epoch of the saved state.
    pub epoch: usize,
    /// Every data file with its size and checksum.
    pub files: Vec<FileEntry>,
}

/// One file of a [`Manifest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// File name inside the checkpoint directory.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32 (IEEE) of the contents.
    pub crc32: u32,
}

pub(super) fn io_err(
    action: &'static str,
    path: &Path,
) -> impl FnOnce(io::Error) -> CheckpointError {
    let path = path.to_path_buf();
    move |source| CheckpointError::Io {
        action,
        path,
        source,
    }
}

/// Size and CRC-32 of a file, read in chunks.
pub(super) fn checksum(path: &Path) -> io::Result<(u64, u32)> {
    let mut file = File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((size, hasher.finalize()))
}

/// Flushes a file's data and metadata to disk.
pub(super) fn fsync_file(path: &Path) -> Result<(), CheckpointError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("fsyncing", path))
}

/// Flushes a directory's entries (created, renamed or removed names) to disk.
pub(super) fn fsync_dir(path: &Path) -> Result<(), CheckpointError> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(io_err("fsyncing directory", path))
}

/// Writes `bytes` to `dir/file_name` and fsyncs it.
pub(super) fn write_durable(
    dir: &Path,
    file_name: &str,
    bytes: &[u8],
) -> Result<(), CheckpointError> {
    let path = dir.join(file_name);
    let mut file = File::create(&path).map_err(io_err("creating", &path))?;
    file.write_all(bytes).map_err(io_err("writing", &path))?;
    file.sync_all().map_err(io_err("fsyncing", &path))
}

/// Replaces `dir/file_name` atomically: write `{file_name}.tmp-{pid}`, fsync, rename, fsync
/// `dir`. Readers see the old or the new contents, never a mix.
pub(super) fn write_atomic(
    dir: &Path,
    file_name: &str,
    bytes: &[u8],
) -> Result<(), CheckpointError> {
    let tmp_name = format!("{file_name}{TMP_MARKER}{}", std::process::id());
    write_durable(dir, &tmp_name, bytes)?;
    let tmp = dir.join(&tmp_name);
    let target = dir.join(file_name);
    fs::rename(&tmp, &target).map_err(io_err("renaming into place", &target))?;
    fsync_dir(dir)
}

/// The manifest entry of `dir/file_name` as it is on disk.
pub(super) fn entry_for(dir: &Path, file_name: &str) -> Result<FileEntry, CheckpointError> {
    let path = dir.join(file_name);
    let (size, crc32) = checksum(&path).map_err(io_err("reading", &path))?;
    Ok(FileEntry {
        name: file_name.to_string(),
        size,
        crc32,
    })
}

/// Checks the checkpoint directory `dir` (named `name`) against its manifest: every required
/// file listed, present, of the listed size and checksum.
pub(super) fn verify(dir: &Path, name: &str) -> Result<Manifest, CheckpointError> {
    let incomplete = |file: &str, reason: String| CheckpointError::Incomplete {
        checkpoint: name.to_string(),
        file: file.to_string(),
        reason,
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let bytes = match fs::read(&manifest_path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(incomplete(
                MANIFEST_FILE,
                "missing (the write did not finish)".into(),
            ))
        }
        Err(e) => return Err(incomplete(MANIFEST_FILE, format!("unreadable: {e}"))),
    };
    let manifest: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| incomplete(MANIFEST_FILE, format!("not a valid manifest: {e}")))?;
    if manifest.format_version != FORMAT_VERSION {
        return Err(incomplete(
            MANIFEST_FILE,
            format!(
                "format version {} is not supported (this build reads {FORMAT_VERSION})",
                manifest.format_version
            ),
        ));
    }
    for required in REQUIRED_FILES {
        if !manifest.files.iter().any(|f| f.name == required) {
            return Err(incomplete(required, "not listed in manifest.json".into()));
        }
    }
    for entry in &manifest.files {
        let path = dir.join(&entry.name);
        let (size, crc32) = match checksum(&path) {
            Ok(found) => found,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(incomplete(&entry.name, "missing".into()))
            }
            Err(e) => return Err(incomplete(&entry.name, format!("unreadable: {e}"))),
        };
        if size != entry.size {
            return Err(incomplete(
                &entry.name,
                format!("{size} bytes, manifest says {} (truncated?)", entry.size),
            ));
        }
        if crc32 != entry.crc32 {
            return Err(incomplete(
                &entry.name,
                format!(
                    "checksum {crc32:08x}, manifest says {:08x} (corrupted)",
                    entry.crc32
                ),
            ));
        }
    }
    Ok(manifest)
}

/// The process id in a temporary name `….tmp-{pid}[-…]`, if any.
pub(super) fn tmp_owner(file_name: &str) -> Option<u32> {
    let (_, rest) = file_name.split_once(TMP_MARKER)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Whether a process with this id runs on this machine (Linux `/proc`; elsewhere assumed dead).
pub(super) fn process_alive(pid: u32) -> bool {
    Path::new("/proc").join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temporary_names_carry_their_writer() {
        assert_eq!(tmp_owner("step_10.tmp-1234"), Some(1234));
        assert_eq!(tmp_owner("step_10.tmp-77-replaced"), Some(77));
        assert_eq!(tmp_owner("latest.tmp-5"), Some(5));
        assert_eq!(tmp_owner("step_10"), None);
        assert!(process_alive(std::process::id()));
    }

    #[test]
    fn verify_reports_the_file() {
        let dir = tempfile::tempdir().expect("tmp");
        for file in REQUIRED_FILES {
            write_durable(dir.path(), file, b"0123456789").expect("write");
        }
        let files = REQUIRED_FILES
            .iter()
            .map(|f| entry_for(dir.path(), f).expect("entry"))
            .collect();
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            name: "x".into(),
            global_step: 3,
            epoch: 1,
            files,
        };
        let json = serde_json::to_vec(&manifest).expect("json");
        write_atomic(dir.path(), MANIFEST_FILE, &json).expect("manifest");
        assert_eq!(verify(dir.path(), "x").expect("ok"), manifest);
        // Same size, different bytes.
        write_durable(dir.path(), STATE_FILE, b"0123456780").expect("write");
        let error = verify(dir.path(), "x").expect_err("corrupt").to_string();
        assert!(
            error.contains("`x`") && error.contains(STATE_FILE),
            "{error}"
        );
        assert!(error.contains("checksum"), "{error}");
    }
}
