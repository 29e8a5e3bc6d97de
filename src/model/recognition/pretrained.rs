//! Loading a pretrained S3D into the recognition network's backbone (spec §2.1, S3D.py).
//!
//! `s3d.pretrained_ckpt` is a directory in the reference's configs: one whose name contains
//! `glosscls` holds a `*.pth.tar` (`{'state_dict': {'backbone.base.…'}}`), one whose name contains
//! `actioncls` a `*.pt` (`{'module.base.…'}`). A file may be named directly, and an SLRT training
//! checkpoint (`*.ckpt`, `model_state` with `recognition_network.visual_backbone.backbone.base.…`)
//! works too, and so does an slt run: its `model_dir` or `ckpts` directory (the checkpoint the
//! `best` pointer names, else `latest`), one checkpoint directory (`…/ckpts/epoch_05`, whose
//! `model.safetensors` uses the SLRT names) or any `*.safetensors` file. The key convention is
//! recognised from the keys, not from the file name.
//!
//! The reference loads strictly and falls back to "every key whose name and shape match"; here a
//! shape difference is an error (nothing is copied), keys the backbone lacks (e.g. block 5 or a
//! classifier) are reported as unexpected, backbone variables the file lacks as missing.

use std::fs;
use std::path::{Path, PathBuf};

use tch::nn::VarStore;
use tch::Tensor;

use super::{RecognitionError, RecognitionNetwork};
use crate::model::import::{load_state_dict, reference_s3d_weights, ReferenceCheckpoint};
use crate::train::checkpoint::{
    load_into_varstore, CheckpointDir, CheckpointError, LoadReport, MODEL_FILE, STATE_FILE,
};

/// File endings of the checkpoints a pretrained-S3D directory may hold: glosscls (`.pth.tar`),
/// actioncls (`.pt`), SLRT training checkpoint (`.ckpt`), safetensors (e.g. an slt checkpoint's
/// `model.safetensors`).
pub const PRETRAINED_EXTENSIONS: [&str; 4] = [".pth.tar", ".pt", ".ckpt", ".safetensors"];

/// The checkpoint file `s3d.pretrained_ckpt` designates.
///
/// A file is used as is. An slt checkpoint directory (it holds `state.json` and
/// `model.safetensors`) gives its `model.safetensors`; an slt run's `model_dir` or `ckpts`
/// directory the `model.safetensors` of the checkpoint its `best` pointer names (else
/// `latest`). In another directory: if its path contains `glosscls` the first `*.pth.tar` (by
/// name), if it contains `actioncls` the first `*.pt` (the reference's choice, which takes the
/// first glob hit); otherwise the directory must hold exactly one file ending in one of
/// [`PRETRAINED_EXTENSIONS`].
pub fn resolve_pretrained_file(path: &Path) -> Result<PathBuf, RecognitionError> {
    let err = |reason: String| RecognitionError::PretrainedPath {
        path: path.to_path_buf(),
        reason,
    };
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    if !path.is_dir() {
        return Err(err(
            "does not exist (expected a checkpoint file or a directory holding one)".into(),
        ));
    }
    let is_checkpoint =
        |dir: &Path| dir.join(STATE_FILE).is_file() && dir.join(MODEL_FILE).is_file();
    if is_checkpoint(path) {
        return Ok(path.join(MODEL_FILE));
    }
    // An slt run: its model_dir (holding `ckpts/`) or the `ckpts` directory itself.
    let model_dir = if path.join("ckpts").is_dir() {
        Some(path.to_path_buf())
    } else if path.file_name().is_some_and(|name| name == "ckpts") {
        path.parent().map(Path::to_path_buf)
    } else {
        None
    };
    if let Some(model_dir) = model_dir {
        let run = CheckpointDir::new(&model_dir, 0);
        let pointer = |result: Result<Option<String>, _>| {
            result.map_err(|e: CheckpointError| {
                err(format!("reading the run's checkpoint pointer: {e}"))
            })
        };
        let name = match pointer(run.best())? {
            Some(name) => name,
            None => pointer(run.latest())?.ok_or_else(|| {
                err(format!(
                    "the run in {} has no `best` or `latest` checkpoint pointer",
                    model_dir.display()
                ))
            })?,
        };
        let dir = run.path().join(&name);
        return if is_checkpoint(&dir) {
            Ok(dir.join(MODEL_FILE))
        } else {
            Err(err(format!(
                "the run's pointer names checkpoint `{name}`, which is not a complete checkpoint \
                 directory in {}",
                run.path().display()
            )))
        };
    }
    let entries = fs::read_dir(path).map_err(|e| err(format!("cannot list: {e}")))?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| err(format!("cannot list: {e}")))?;
        if entry.path().is_file() {
            files.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    files.sort();
    let text = path.to_string_lossy();
    let wanted: &[&str] = if text.contains("glosscls") {
        &[".pth.tar"]
    } else if text.contains("actioncls") {
        &[".pt"]
    } else {
        &PRETRAINED_EXTENSIONS
    };
    let candidates: Vec<&String> = files
        .iter()
        .filter(|name| wanted.iter().any(|ext| name.ends_with(ext)))
        .collect();
    match candidates[..] {
        [] => Err(err(format!(
            "no file ending in {} in the directory",
            wanted.join(" or ")
        ))),
        [only] => Ok(path.join(only)),
        [first, ..] if wanted.len() == 1 => Ok(path.join(first)),
        _ => Err(err(format!(
            "several candidate checkpoints ({}); name the file",
            candidates
                .iter()
                .map(|s| s.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

impl RecognitionNetwork {
    /// Loads the configured `s3d.pretrained_ckpt` into the backbone; `Ok(None)` for `scratch`
    /// (random initialisation) or a network without backbone (feature input).
    pub fn load_configured_backbone(
        &self,
        vs: &VarStore,
    ) -> Result<Option<LoadReport>, RecognitionError> {
        match (&self.pretrained_ckpt, &self.backbone) {
            (Some(path), Some(_)) => self.load_pretrained_backbone(vs, path).map(Some),
            _ => Ok(None),
        }
    }

    /// Loads a pretrained S3D (file or directory, see [`resolve_pretrained_file`]; any of the
    /// reference's three key conventions) into the backbone variables of `vs` by name.
    ///
    /// Returns what was loaded: `missing` lists backbone variables the file lacks, `unexpected`
    /// its S3D tensors the backbone lacks. Errors, leaving the model unchanged, when the file
    /// holds no S3D key, when a tensor's shape differs from the model's, or when nothing matched.
    pub fn load_pretrained_backbone(
        &self,
        vs: &VarStore,
        path: &Path,
    ) -> Result<LoadReport, RecognitionError> {
        if self.backbone.is_none() {
            return Err(RecognitionError::NoBackbone("load_pretrained_backbone"));
        }
        let file = resolve_pretrained_file(path)?;
        let tensors = if file.to_string_lossy().ends_with(".safetensors") {
            Tensor::read_safetensors(&file).map_err(|e| RecognitionError::PretrainedPath {
                path: file.clone(),
                reason: format!("cannot read as safetensors: {e}"),
            })?
        } else {
            load_state_dict(&file, None)?
        };
        let weights = backbone_weights(&tensors);
        if weights.is_empty() {
            let sample: Vec<&str> = tensors.iter().take(5).map(|(n, _)| n.as_str()).collect();
            return Err(RecognitionError::NoBackboneKeys {
                path: file,
                count: tensors.len(),
                sample: format!("[{}]", sample.join(", ")),
            });
        }
        // `backbone.base.…` → `<network>.visual_backbone.backbone.base.…`
        let weights: Vec<(String, Tensor)> = weights
            .into_iter()
            .map(|(name, t)| (format!("{}{name}", self.backbone_prefix), t))
            .collect();
        let variables = vs.variables();
        let mismatches: Vec<String> = weights
            .iter()
            .filter_map(|(name, t)| {
                let var = variables.get(name)?;
                (var.size() != t.size()).then(|| {
                    format!(
                        "`{name}`: model {:?}, checkpoint {:?}",
                        var.size(),
                        t.size()
                    )
                })
            })
            .collect();
        if !mismatches.is_empty() {
            return Err(RecognitionError::ShapeMismatch {
                path: file,
                details: mismatches.join("; "),
            });
        }
        let mut report = load_into_varstore(vs, &weights)?;
        report
            .missing
            .retain(|name| name.starts_with(&self.backbone_prefix));
        if report.loaded == 0 {
            return Err(RecognitionError::NothingLoaded {
                path: file,
                report: report.to_string(),
            });
        }
        Ok(report)
    }
}

/// The S3D tensors of a state dict renamed to `backbone.base.…`, under whichever of the
/// reference's conventions matches the most keys.
fn backbone_weights(tensors: &[(String, Tensor)]) -> Vec<(String, Tensor)> {
    [
        ReferenceCheckpoint::GlossCls,
        ReferenceCheckpoint::ActionCls,
        ReferenceCheckpoint::Slrt,
    ]
    .into_iter()
    .map(|convention| {
        let copy = tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.shallow_clone()))
            .collect();
        reference_s3d_weights(copy, convention)
    })
    .max_by_key(Vec::len)
    .unwrap_or_default()
}
