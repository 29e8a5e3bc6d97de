//! Checkpoints under `{model_dir}/ckpts/`: one directory per checkpoint, written atomically and
//! verified before use.
//!
//! Layout of `ckpts/{name}/` (`name` like `epoch_03` or `step_1000`):
//! `model.safetensors` (parameters and buffers), `optimizer.safetensors` (Adam moments),
//! `state.json` ([`TrainState`]) and `manifest.json` ([`Manifest`]: sizes and CRC-32s).
//! Beside them, `latest` and `best` are one-line text files naming a checkpoint directory.
//!
//! Writing ([`CheckpointDir::save`]): everything goes to `{name}.tmp-{pid}/`, each file is
//! fsynced, the manifest is written last, the directory is fsynced and renamed to `{name}`, and
//! the parent fsynced; then the pointers are replaced atomically (temp file + rename) and old
//! checkpoints pruned to `keep_last` (never the one `latest` or `best` names). A writer killed at
//! any point leaves either the previous state or an ignored `*.tmp-*` entry.
//!
//! Reading ([`CheckpointDir::load`], [`CheckpointDir::resume_auto`]): the manifest is checked
//! (every file present with its size and checksum) before anything is parsed; a broken
//! checkpoint is an error naming it and the file, and `resume_auto` falls back to the newest
//! complete one, ordering by the global step in `state.json` (never by name).

mod error;
mod files;
mod state;
mod varstore;

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use tch::{Device, Tensor};

pub use error::CheckpointError;
pub use files::{
    FileEntry, Manifest, FORMAT_VERSION, MANIFEST_FILE, MODEL_FILE, OPTIMIZER_FILE, STATE_FILE,
    TMP_MARKER,
};
pub use state::{CheckpointContents, SamplerCursor, TrainState};
pub use varstore::{load_into_varstore, model_tensors, LoadReport, ShapeMismatch};

use files::{fsync_dir, fsync_file, io_err};

/// Pointer file naming the newest checkpoint.
pub const LATEST_POINTER: &str = "latest";
/// Pointer file naming the best checkpoint.
pub const BEST_POINTER: &str = "best";

/// A checkpoint [`CheckpointDir::save`] wrote.
#[derive(Debug, Clone)]
pub struct SavedCheckpoint {
    /// Its directory.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Checkpoints removed by pruning.
    pub pruned: Vec<String>,
}

/// A checkpoint read back and verified.
#[derive(Debug)]
pub struct LoadedCheckpoint {
    /// Directory name.
    pub name: String,
    /// Directory.
    pub path: PathBuf,
    /// Its manifest.
    pub manifest: Manifest,
    /// Training progress.
    pub state: TrainState,
    /// Model tensors (CPU).
    pub model: Vec<(String, Tensor)>,
    /// Optimizer moments (CPU; [`crate::train::optimizer::Adam::load_state`] moves them).
    pub optimizer: Vec<(String, Tensor)>,
    /// Newer checkpoints that were rejected on the way to this one, with the reason.
    pub skipped: Vec<String>,
}

impl LoadedCheckpoint {
    /// Copies the model tensors into `vs`; any missing, unexpected or mis-shaped tensor is an
    /// error (resume must be exact).
    pub fn restore_model(&self, vs: &tch::nn::VarStore) -> Result<LoadReport, CheckpointError> {
        let report = load_into_varstore(vs, &self.model)?;
        report.ensure_exact(&format!("checkpoint `{}`", self.name))?;
        Ok(report)
    }
}

/// A committed checkpoint directory and its place in the order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// Directory name.
    pub name: String,
    /// `(global_step, epoch)` from `state.json`, `None` if unreadable.
    pub order: Option<(u64, usize)>,
}

/// The `ckpts` directory of a run.
#[derive(Debug, Clone)]
pub struct CheckpointDir {
    dir: PathBuf,
    keep_last: usize,
}

impl CheckpointDir {
    /// `{model_dir}/ckpts`, keeping the newest `keep_last` checkpoints (0 keeps all) besides
    /// `best`.
    pub fn new(model_dir: &Path, keep_last: usize) -> Self {
        CheckpointDir {
            dir: model_dir.join("ckpts"),
            keep_last,
        }
    }

    /// The `ckpts` directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes checkpoint `name` (see the module docs), points `latest` (and with `best`, the
    /// `best` pointer) at it and prunes. An existing checkpoint of that name is replaced.
    pub fn save(
        &self,
        name: &str,
        contents: &CheckpointContents,
        best: bool,
    ) -> Result<SavedCheckpoint, CheckpointError> {
        validate_name(name)?;
        if !self.dir.is_dir() {
            fs::create_dir_all(&self.dir).map_err(io_err("creating", &self.dir))?;
            if let Some(parent) = self.dir.parent() {
                fsync_dir(parent)?;
            }
        }
        let pid = std::process::id();
        let tmp = self.dir.join(format!("{name}{TMP_MARKER}{pid}"));
        remove_path(&tmp)?;
        fs::create_dir(&tmp).map_err(io_err("creating", &tmp))?;
        let manifest = match write_contents(name, &tmp, contents) {
            Ok(manifest) => manifest,
            Err(error) => {
                // Best effort: the leftover would be ignored and cleaned up later anyway.
                let _ = remove_path(&tmp);
                return Err(error);
            }
        };

        let target = self.dir.join(name);
        if target.exists() {
            let old = self.dir.join(format!("{name}{TMP_MARKER}{pid}-replaced"));
            remove_path(&old)?;
            fs::rename(&target, &old).map_err(io_err("moving aside", &target))?;
            fs::rename(&tmp, &target).map_err(io_err("renaming into place", &target))?;
            fsync_dir(&self.dir)?;
            remove_path(&old)?;
        } else {
            fs::rename(&tmp, &target).map_err(io_err("renaming into place", &target))?;
        }
        fsync_dir(&self.dir)?;

        let pointer = format!("{name}\n");
        files::write_atomic(&self.dir, LATEST_POINTER, pointer.as_bytes())?;
        if best {
            files::write_atomic(&self.dir, BEST_POINTER, pointer.as_bytes())?;
        }
        let pruned = self.prune()?;
        Ok(SavedCheckpoint {
            path: target,
            manifest,
            pruned,
        })
    }

    /// The checkpoint the `latest` pointer names, if any.
    pub fn latest(&self) -> Result<Option<String>, CheckpointError> {
        self.read_pointer(LATEST_POINTER)
    }

    /// The checkpoint the `best` pointer names, if any.
    pub fn best(&self) -> Result<Option<String>, CheckpointError> {
        self.read_pointer(BEST_POINTER)
    }

    fn read_pointer(&self, pointer: &str) -> Result<Option<String>, CheckpointError> {
        let path = self.dir.join(pointer);
        match fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim().to_string()).filter(|name| !name.is_empty())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(CheckpointError::Io {
                action: "reading",
                path,
                source,
            }),
        }
    }

    /// Committed checkpoint directories (temporaries excluded), oldest first: by global step,
    /// then epoch, then name. Those whose `state.json` is unreadable come first, unordered.
    pub fn list(&self) -> Result<Vec<CheckpointInfo>, CheckpointError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CheckpointError::Io {
                    action: "listing",
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let mut infos = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("listing", &self.dir))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if name.contains(TMP_MARKER) || !entry.path().is_dir() {
                continue;
            }
            let order = read_order(&entry.path().join(STATE_FILE));
            infos.push(CheckpointInfo { name, order });
        }
        infos.sort_by(|a, b| a.order.cmp(&b.order).then_with(|| a.name.cmp(&b.name)));
        Ok(infos)
    }

    /// Verifies checkpoint `name` against its manifest without loading it.
    pub fn verify(&self, name: &str) -> Result<Manifest, CheckpointError> {
        validate_name(name)?;
        let path = self.dir.join(name);
        if !path.is_dir() {
            return Err(CheckpointError::NotFound {
                checkpoint: name.to_string(),
                dir: self.dir.clone(),
            });
        }
        files::verify(&path, name)
    }

    /// Verifies and reads checkpoint `name` (tensors on the CPU).
    pub fn load(&self, name: &str) -> Result<LoadedCheckpoint, CheckpointError> {
        let manifest = self.verify(name)?;
        let path = self.dir.join(name);
        let state_path = path.join(STATE_FILE);
        let bytes = fs::read(&state_path).map_err(io_err("reading", &state_path))?;
        let state: TrainState =
            serde_json::from_slice(&bytes).map_err(|source| CheckpointError::Json {
                checkpoint: name.to_string(),
                file: STATE_FILE,
                source,
            })?;
        let read = |file: &'static str| {
            Tensor::read_safetensors(path.join(file)).map_err(|source| CheckpointError::Tensors {
                checkpoint: name.to_string(),
                file,
                source,
            })
        };
        Ok(LoadedCheckpoint {
            name: name.to_string(),
            model: read(MODEL_FILE)?,
            optimizer: read(OPTIMIZER_FILE)?,
            path,
            manifest,
            state,
            skipped: Vec::new(),
        })
    }

    /// The newest checkpoint that verifies and loads; `Ok(None)` if there is none at all, an
    /// error if all are broken. Rejected newer ones are listed in
    /// [`LoadedCheckpoint::skipped`].
    pub fn load_latest_complete(&self) -> Result<Option<LoadedCheckpoint>, CheckpointError> {
        let infos = self.list()?;
        if infos.is_empty() {
            return Ok(None);
        }
        let mut skipped = Vec::new();
        for info in infos.iter().rev() {
            match self.load(&info.name) {
                Ok(mut loaded) => {
                    loaded.skipped = skipped;
                    return Ok(Some(loaded));
                }
                Err(error) => skipped.push(error.to_string()),
            }
        }
        Err(CheckpointError::NoCompleteCheckpoint {
            dir: self.dir.clone(),
            skipped,
        })
    }

    /// What a run with `from_ckpt` does at start: removes temporaries of dead writers, then
    /// [`CheckpointDir::load_latest_complete`], logging every checkpoint it skipped and why.
    /// `Ok(None)` means a fresh start (no checkpoint yet).
    pub fn resume_auto(&self) -> Result<Option<LoadedCheckpoint>, CheckpointError> {
        for removed in self.clean_temporaries()? {
            tracing::info!(path = %removed.display(), "removed leftover of an interrupted checkpoint write");
        }
        let loaded = self.load_latest_complete()?;
        if let Some(loaded) = &loaded {
            for reason in &loaded.skipped {
                tracing::warn!("skipping checkpoint: {reason}");
            }
            tracing::info!(
                checkpoint = %loaded.name,
                global_step = loaded.state.global_step,
                "resuming from checkpoint"
            );
        }
        Ok(loaded)
    }

    /// Removes `*.tmp-*` entries left by writers that no longer run (on this machine). Returns
    /// what was removed.
    pub fn clean_temporaries(&self) -> Result<Vec<PathBuf>, CheckpointError> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => {
                return Err(CheckpointError::Io {
                    action: "listing",
                    path: self.dir.clone(),
                    source,
                })
            }
        };
        let own = std::process::id();
        let mut removed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_err("listing", &self.dir))?;
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.contains(TMP_MARKER) {
                continue;
            }
            match files::tmp_owner(&name) {
                Some(pid) if pid != own && files::process_alive(pid) => {
                    tracing::warn!(%name, pid, "leaving a temporary of a running writer alone");
                }
                _ => {
                    remove_path(&entry.path())?;
                    removed.push(entry.path());
                }
            }
        }
        if !removed.is_empty() {
            fsync_dir(&self.dir)?;
        }
        Ok(removed)
    }

    /// Deletes all but the newest `keep_last` checkpoints, never the ones `latest` and `best`
    /// name, nor ones whose order is unknown. Returns the deleted names.
    pub fn prune(&self) -> Result<Vec<String>, CheckpointError> {
        if self.keep_last == 0 {
            return Ok(Vec::new());
        }
        let protected = [self.latest()?, self.best()?];
        let ordered: Vec<CheckpointInfo> = self
            .list()?
            .into_iter()
            .filter(|i| i.order.is_some())
            .collect();
        let excess = ordered.len().saturating_sub(self.keep_last);
        let mut pruned = Vec::new();
        for info in &ordered[..excess] {
            if protected.iter().flatten().any(|p| *p == info.name) {
                continue;
            }
            let path = self.dir.join(&info.name);
            // Rename first so that a half-deleted directory never looks like a checkpoint.
            let doomed = self.dir.join(format!(
                "{}{TMP_MARKER}{}-pruned",
                info.name,
                std::process::id()
            ));
            fs::rename(&path, &doomed).map_err(io_err("moving aside", &path))?;
            remove_path(&doomed)?;
            pruned.push(info.name.clone());
        }
        if !pruned.is_empty() {
            fsync_dir(&self.dir)?;
        }
        Ok(pruned)
    }
}

/// Writes the data files and the manifest of checkpoint `name` into `tmp`, each fsynced.
fn write_contents(
    name: &str,
    tmp: &Path,
    contents: &CheckpointContents,
) -> Result<Manifest, CheckpointError> {
    write_tensors(name, tmp, MODEL_FILE, &contents.model)?;
    write_tensors(name, tmp, OPTIMIZER_FILE, &contents.optimizer)?;
    let state_json =
        serde_json::to_vec_pretty(&contents.state).map_err(|source| CheckpointError::Json {
            checkpoint: name.to_string(),
            file: STATE_FILE,
            source,
        })?;
    files::write_durable(tmp, STATE_FILE, &state_json)?;
    let manifest = Manifest {
        format_version: FORMAT_VERSION,
        name: name.to_string(),
        global_step: contents.state.global_step,
        epoch: contents.state.epoch,
        files: files::REQUIRED_FILES
            .iter()
            .map(|file| files::entry_for(tmp, file))
            .collect::<Result<_, _>>()?,
    };
    let manifest_json =
        serde_json::to_vec_pretty(&manifest).map_err(|source| CheckpointError::Json {
            checkpoint: name.to_string(),
            file: MANIFEST_FILE,
            source,
        })?;
    files::write_durable(tmp, MANIFEST_FILE, &manifest_json)?;
    fsync_dir(tmp)?;
    Ok(manifest)
}

fn validate_name(name: &str) -> Result<(), CheckpointError> {
    let invalid = |reason| {
        Err(CheckpointError::InvalidName {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return invalid("empty");
    }
    if name.starts_with('.') || name.contains(['/', '\\']) {
        return invalid("must be a plain directory name");
    }
    if name.contains(TMP_MARKER) {
        return invalid("contains the temporary marker `.tmp-`");
    }
    if name == LATEST_POINTER || name == BEST_POINTER {
        return invalid("is the name of a pointer file");
    }
    Ok(())
}

/// `(global_step, epoch)` from a `state.json`, if it parses.
fn read_order(path: &Path) -> Option<(u64, usize)> {
    #[derive(serde::Deserialize)]
    struct Order {
        global_step: u64,
        epoch: usize,
    }
    let bytes = fs::read(path).ok()?;
    let order: Order = serde_json::from_slice(&bytes).ok()?;
    Some((order.global_step, order.epoch))
}

/// Removes a file or directory tree if it exists.
fn remove_path(path: &Path) -> Result<(), CheckpointError> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
    };
    result.map_err(io_err("removing", path))
}

/// Writes named tensors (moved to the CPU, contiguous, detached) as safetensors and fsyncs.
fn write_tensors(
    checkpoint: &str,
    dir: &Path,
    file: &'static str,
    tensors: &[(String, Tensor)],
) -> Result<(), CheckpointError> {
    let tensor_err = |source| CheckpointError::Tensors {
        checkpoint: checkpoint.to_string(),
        file,
        source,
    };
    let mut seen = std::collections::HashSet::new();
    let mut prepared = Vec::with_capacity(tensors.len());
    for (name, tensor) in tensors {
        if !seen.insert(name.as_str()) {
            return Err(CheckpointError::DuplicateTensor {
                checkpoint: checkpoint.to_string(),
                file,
                tensor: name.clone(),
            });
        }
        let cpu = tensor
            .f_detach()
            .and_then(|t| t.f_to_device_(Device::Cpu, t.kind(), false, false))
            .and_then(|t| t.f_contiguous())
            .map_err(tensor_err)?;
        prepared.push((name.as_str(), cpu));
    }
    let path = dir.join(file);
    Tensor::write_safetensors(&prepared, &path).map_err(tensor_err)?;
    fsync_file(&path)
}
