//! Loading a pretrained S3D into the recognition network's backbone (spec §2.1, S3D.py).
//!
//! `s3d.pretrained_ckpt` is a directory in the reference's configs: one whose name contains
//! `glosscls` holds a `*.pth.tar` (`{'state_dict': {'backbone.base.…'}}`), one whose name contains
//! `actioncls` a `*.pt` (`{'module.base.…'}`). A file may be named directly, and an SLRT training
//! checkpoint (`*.ckpt`, `model_state` with `recognition_network.visual_backbone.backbone.base.…`)
//! works too. The key convention is recognised from the keys, not from the file name.
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
use crate::train::checkpoint::{load_into_varstore, LoadReport};

/// File endings of the checkpoints a pretrained-S3D directory may hold: glosscls (`.pth.tar`),
/// actioncls (`.pt`), SLRT training checkpoint (`.ckpt`).
pub const PRETRAINED_EXTENSIONS: [&str; 3] = [".pth.tar", ".pt", ".ckpt"];

/// The checkpoint file `s3d.pretrained_ckpt` designates.
///
/// A file is used as is. In a directory: if its path contains `glosscls` the first `*.pth.tar`
/// (by name), if it contains `actioncls` the first `*.pt` (the reference's choice, which takes
/// the first glob hit); otherwise the directory must hold exactly one file ending in one of
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
        let tensors = load_state_dict(&file, None)?;
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
