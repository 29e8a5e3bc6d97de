//! `slt data pack`: build a reference-layout video zip from a frame tree.
//!
//! The official Phoenix-2014T release has `fullFrame-210x260px/{train,dev,test}/<name>/*.png`;
//! the reference reads `images/{split}/<name>/imagesNNNN.png` from a zip. Its own recipe,
//! `zip -r -j`, junks the directories, so the ~1k `images0001.png` files of different videos
//! overwrite each other. Here every file keeps its relative path below the source folder and
//! gets a prefix (default `images/`), so names cannot collide. Entries are stored (PNG and
//! JPEG are compressed already), written in sorted order with a fixed timestamp, so packing
//! the same tree twice gives the same bytes. The archive is written under a temporary name
//! and renamed when complete.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;
use zip::write::SimpleFileOptions;

/// Errors while packing; each names the file involved.
#[derive(Debug, Error)]
pub enum PackError {
    /// The source folder does not exist or cannot be listed.
    #[error("{path}: cannot list the frame tree: {reason}")]
    Source {
        /// Folder or file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// The source folder holds no files.
    #[error("{0}: no files to pack")]
    Empty(PathBuf),
    /// A file name is not valid UTF-8 (zip entry names must be).
    #[error("{0}: file name is not valid UTF-8")]
    NonUtf8(PathBuf),
    /// Writing the archive failed.
    #[error("{path}: cannot write the archive: {reason}")]
    Write {
        /// The archive being written.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
}

/// What a pack run produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackReport {
    /// Files stored.
    pub files: usize,
    /// Distinct folders that held files (videos).
    pub folders: usize,
    /// Bytes of file data stored.
    pub bytes: u64,
}

/// Packs every file below `source` into `output` as `{prefix}{relative path}` (use
/// `prefix = "images/"` for Phoenix-2014T's `fullFrame-210x260px`).
pub fn pack_frames(source: &Path, output: &Path, prefix: &str) -> Result<PackReport, PackError> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(source).follow_links(true) {
        let entry = entry.map_err(|e| PackError::Source {
            path: e.path().unwrap_or(source).to_path_buf(),
            reason: e.to_string(),
        })?;
        if !entry.file_type().is_file() {
            continue;
        }
        let relative = entry
            .path()
            .strip_prefix(source)
            .map_err(|e| PackError::Source {
                path: entry.path().to_path_buf(),
                reason: e.to_string(),
            })?;
        let name = relative
            .to_str()
            .ok_or_else(|| PackError::NonUtf8(entry.path().to_path_buf()))?
            .replace(std::path::MAIN_SEPARATOR, "/");
        files.push((format!("{prefix}{name}"), entry.path().to_path_buf()));
    }
    if files.is_empty() {
        return Err(PackError::Empty(source.to_path_buf()));
    }
    files.sort();

    let temporary = output.with_extension("zip.partial");
    let write_err = |reason: String| PackError::Write {
        path: output.to_path_buf(),
        reason,
    };
    let result = write_archive(&temporary, &files).map_err(write_err);
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            let _ = std::fs::remove_file(&temporary);
            return Err(e);
        }
    };
    std::fs::rename(&temporary, output).map_err(|e| write_err(e.to_string()))?;
    Ok(report)
}

fn write_archive(path: &Path, files: &[(String, PathBuf)]) -> Result<PackReport, String> {
    let file = File::create(path).map_err(|e| e.to_string())?;
    let mut writer = zip::ZipWriter::new(BufWriter::new(file));
    let mut folders = std::collections::HashSet::new();
    let mut bytes = 0u64;
    for (name, source) in files {
        let data = std::fs::read(source).map_err(|e| format!("{}: {e}", source.display()))?;
        let options = SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Stored)
            .last_modified_time(zip::DateTime::default())
            .large_file(data.len() as u64 >= u64::from(u32::MAX));
        writer
            .start_file(name.as_str(), options)
            .map_err(|e| format!("{name}: {e}"))?;
        writer
            .write_all(&data)
            .map_err(|e| format!("{name}: {e}"))?;
        bytes += data.len() as u64;
        if let Some((folder, _)) = name.rsplit_once('/') {
            folders.insert(folder.to_string());
        }
    }
    let mut inner = writer.finish().map_err(|e| e.to_string())?;
    inner.flush().map_err(|e| e.to_string())?;
    inner
        .into_inner()
        .map_err(|e| e.to_string())?
        .sync_all()
        .map_err(|e| e.to_string())?;
    Ok(PackReport {
        files: files.len(),
        folders: folders.len(),
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::zip_index::ZipIndex;

    #[test]
    fn frames_of_different_videos_keep_distinct_names() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("fullFrame-210x260px");
        for (video, byte) in [("train/a", 1u8), ("train/b", 2), ("dev/c", 3)] {
            let folder = tree.join(video);
            std::fs::create_dir_all(&folder).unwrap();
            std::fs::write(folder.join("images0001.png"), [byte; 10]).unwrap();
        }
        let out = dir.path().join("videos.zip");
        let report = pack_frames(&tree, &out, "images/").unwrap();
        assert_eq!(
            report,
            PackReport {
                files: 3,
                folders: 3,
                bytes: 30
            }
        );
        let index = ZipIndex::open(&out).unwrap();
        assert_eq!(
            &*index.read("images/train/a/images0001.png").unwrap(),
            &[1u8; 10]
        );
        assert_eq!(
            &*index.read("images/train/b/images0001.png").unwrap(),
            &[2u8; 10]
        );
        assert_eq!(
            &*index.read("images/dev/c/images0001.png").unwrap(),
            &[3u8; 10]
        );

        let again = dir.path().join("again.zip");
        pack_frames(&tree, &again, "images/").unwrap();
        assert_eq!(
            std::fs::read(&out).unwrap(),
            std::fs::read(&again).unwrap(),
            "deterministic"
        );
        assert!(!dir.path().join("videos.zip.partial").exists());
    }

    #[test]
    fn an_empty_or_missing_tree_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let err = pack_frames(dir.path(), &dir.path().join("o.zip"), "images/").unwrap_err();
        assert!(matches!(err, PackError::Empty(_)));
        let missing = dir.path().join("nope");
        let err = pack_frames(&missing, &dir.path().join("o.zip"), "")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }
}
