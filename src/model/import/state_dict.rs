//! State dicts inside torch files, and the key conventions of the reference's artefacts
//! (spec §2.1, §4.3, §5).

use std::collections::HashSet;
use std::path::Path;

use tch::Tensor;

use super::torch_file::{load_torch_file, TorchFileError, ValueError};
use super::value::PyValue;

/// The entries [`load_state_dict`] looks for, in this order, when no entry is named: the S3D
/// checkpoints' `state_dict`, SLRT checkpoints' `model_state`, wrapped `module`. The first one
/// present (and not itself a tensor) must be the state dict; when none is, the top level must
/// be (e.g. actioncls `.pt` files, whose keys are `module.*`).
pub const STATE_DICT_ENTRIES: [&str; 3] = ["state_dict", "model_state", "module"];

/// Where the reference keeps the S3D inside an SLRT model's state dict.
pub const SLRT_VISUAL_BACKBONE_PREFIX: &str = "recognition_network.visual_backbone.";

/// Reads the tensors of a checkpoint's state dict, in file order: the dict under `entry` if
/// given, else the first of [`STATE_DICT_ENTRIES`] present, else the top level.
pub fn load_state_dict(
    path: &Path,
    entry: Option<&str>,
) -> Result<Vec<(String, Tensor)>, TorchFileError> {
    let value = load_torch_file(path)?;
    state_dict(&value, entry).map_err(|e| e.in_file(path))
}

/// Reads a file holding a dict `{name: tensor}` such as the reference's `gloss_embeddings.bin`.
pub fn load_tensor_dict(path: &Path) -> Result<Vec<(String, Tensor)>, TorchFileError> {
    let value = load_torch_file(path)?;
    tensor_dict(&value).map_err(|e| e.in_file(path))
}

/// The state dict inside a loaded checkpoint (see [`load_state_dict`]).
pub fn state_dict(
    value: &PyValue,
    entry: Option<&str>,
) -> Result<Vec<(String, Tensor)>, ValueError> {
    if let Some(name) = entry {
        let inner = value.get(name).ok_or_else(|| ValueError {
            path: "<root>".into(),
            reason: format!("no entry '{name}' (entries: {})", entry_names(value)),
        })?;
        return tensor_dict_at(inner, name);
    }
    for name in STATE_DICT_ENTRIES {
        match value.get(name) {
            // A tensor under such a name is an entry of a top-level state dict.
            None | Some(PyValue::Tensor(_)) => {}
            Some(inner) => return tensor_dict_at(inner, name),
        }
    }
    if value.as_dict().is_none() {
        return Err(ValueError {
            path: "<root>".into(),
            reason: format!(
                "expected a dict of tensors (or one under '{}'), found {}",
                STATE_DICT_ENTRIES.join("', '"),
                value.type_name()
            ),
        });
    }
    tensor_dict_at(value, "")
}

/// The tensors of a dict `{str: tensor}`, in insertion order. Nested dicts are flattened with
/// `.` between the keys; any other value is an error naming its key path.
pub fn tensor_dict(value: &PyValue) -> Result<Vec<(String, Tensor)>, ValueError> {
    tensor_dict_at(value, "")
}

fn tensor_dict_at(value: &PyValue, path: &str) -> Result<Vec<(String, Tensor)>, ValueError> {
    let entries = value.as_dict().ok_or_else(|| ValueError {
        path: display_path(path),
        reason: format!("expected a dict of tensors, found {}", value.type_name()),
    })?;
    let mut out = Vec::with_capacity(entries.len());
    let mut seen = HashSet::new();
    flatten(entries, "", path, &mut out, &mut seen)?;
    Ok(out)
}

fn flatten(
    entries: &[(PyValue, PyValue)],
    prefix: &str,
    path: &str,
    out: &mut Vec<(String, Tensor)>,
    seen: &mut HashSet<String>,
) -> Result<(), ValueError> {
    for (key, value) in entries {
        let key = key.as_str().ok_or_else(|| ValueError {
            path: display_path(path),
            reason: format!("key of type {} where names are expected", key.type_name()),
        })?;
        let name = if prefix.is_empty() {
            key.to_string()
        } else {
            format!("{prefix}.{key}")
        };
        let value_path = if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}['{key}']")
        };
        match value {
            PyValue::Tensor(t) => {
                if !seen.insert(name.clone()) {
                    return Err(ValueError {
                        path: value_path,
                        reason: format!("'{name}' occurs twice after flattening"),
                    });
                }
                out.push((name, t.tensor.shallow_clone()));
            }
            PyValue::Dict(inner) => flatten(inner, &name, &value_path, out, seen)?,
            other => {
                return Err(ValueError {
                    path: value_path,
                    reason: format!("expected a tensor, found {}", other.type_name()),
                })
            }
        }
    }
    Ok(())
}

fn display_path(path: &str) -> String {
    if path.is_empty() {
        "<root>".into()
    } else {
        path.to_string()
    }
}

fn entry_names(value: &PyValue) -> String {
    match value.as_dict() {
        Some(entries) => entries
            .iter()
            .map(|(k, _)| k.as_str().map_or_else(|| k.type_name(), str::to_string))
            .collect::<Vec<_>>()
            .join(", "),
        None => format!("none: the top level is {}", value.type_name()),
    }
}

/// Renames every key that starts with `from` so that it starts with `to` instead; other keys
/// are kept unchanged. Order is preserved.
pub fn remap_prefix(tensors: Vec<(String, Tensor)>, from: &str, to: &str) -> Vec<(String, Tensor)> {
    tensors
        .into_iter()
        .map(|(name, tensor)| match name.strip_prefix(from) {
            Some(rest) => (format!("{to}{rest}"), tensor),
            None => (name, tensor),
        })
        .collect()
}

/// Which of the reference's artefacts a state dict comes from (spec §2.1, §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReferenceCheckpoint {
    /// `pretrained_models/s3ds_glosscls_ckpt/*.pth.tar`: `state_dict` with `backbone.base.*`.
    GlossCls,
    /// `pretrained_models/s3ds_actioncls_ckpt/*.pt`: top-level `module.*` (= `backbone.*`).
    ActionCls,
    /// An SLRT training checkpoint (`*.ckpt`): `model_state` with
    /// `recognition_network.visual_backbone.backbone.base.*`.
    Slrt,
}

/// The S3D weights of a reference artefact's state dict, renamed relative to the reference's
/// `S3D_backbone` (`backbone.base.<i>.…`, as `S3dBackbone` built under `root / "backbone"`
/// names them); keys outside `backbone.base.` are dropped.
pub fn reference_s3d_weights(
    tensors: Vec<(String, Tensor)>,
    source: ReferenceCheckpoint,
) -> Vec<(String, Tensor)> {
    let (from, to) = match source {
        ReferenceCheckpoint::GlossCls => ("backbone.base.", "backbone.base."),
        ReferenceCheckpoint::ActionCls => ("module.base.", "backbone.base."),
        ReferenceCheckpoint::Slrt => (
            "recognition_network.visual_backbone.backbone.base.",
            "backbone.base.",
        ),
    };
    tensors
        .into_iter()
        .filter_map(|(name, tensor)| Some((format!("{to}{}", name.strip_prefix(from)?), tensor)))
        .collect()
}
