//! Loading and saving Hugging Face mBART directories (`config.json` + `model.safetensors`),
//! and loading any name → tensor list (full state dicts with tied copies, the reference's
//! checkpoints under a key prefix) into a model by parameter name.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use tch::{nn, Kind, Tensor};

use super::error::{MbartError, Result};
use super::{MbartConfig, MbartForConditionalGeneration, SHARED_WEIGHT, TIED_ALIASES};
use crate::config::MbartOverrides;
use crate::model::import::load_tensor_dict;

/// A name whose tensor has another shape than the model's parameter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeMismatch {
    /// HF name.
    pub name: String,
    /// Shape of the model's parameter.
    pub expected: Vec<i64>,
    /// Shape in the file.
    pub found: Vec<i64>,
}

/// What a load did, by HF parameter name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Parameters copied from the file.
    pub loaded: Vec<String>,
    /// Model parameters the file does not have (left as they were).
    pub missing: Vec<String>,
    /// File keys (under the prefix) that are no model parameter.
    pub unexpected: Vec<String>,
    /// File keys with the wrong shape (not copied).
    pub mismatched: Vec<ShapeMismatch>,
    /// Tied copies of `model.shared.weight` found in the file (`lm_head.weight`,
    /// `model.{encoder,decoder}.embed_tokens.weight`); used when `model.shared.weight` is
    /// absent, otherwise checked to be equal to it.
    pub tied_copies: Vec<String>,
    /// Tied copies whose values differ from `model.shared.weight` (ignored).
    pub tied_conflicts: Vec<String>,
    /// File keys outside the requested prefix (ignored).
    pub outside_prefix: usize,
}

impl LoadReport {
    /// No missing, unexpected, mismatched or conflicting keys.
    pub fn is_clean(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.mismatched.is_empty()
            && self.tied_conflicts.is_empty()
    }

    /// One line listing the problems.
    pub fn summary(&self) -> String {
        let mut parts = vec![format!("{} loaded", self.loaded.len())];
        if !self.missing.is_empty() {
            parts.push(format!("missing {:?}", self.missing));
        }
        if !self.unexpected.is_empty() {
            parts.push(format!("unexpected {:?}", self.unexpected));
        }
        for m in &self.mismatched {
            parts.push(format!(
                "{}: expected {:?}, found {:?}",
                m.name, m.expected, m.found
            ));
        }
        if !self.tied_conflicts.is_empty() {
            parts.push(format!(
                "tied copies differing from {SHARED_WEIGHT}: {:?}",
                self.tied_conflicts
            ));
        }
        parts.join("; ")
    }

    /// Errors unless [`Self::is_clean`] (strict loading, like the reference's
    /// `load_state_dict(strict=True)`); `path` names the file in the error.
    pub fn ensure_clean(&self, path: &Path) -> Result<()> {
        if self.is_clean() {
            Ok(())
        } else {
            Err(MbartError::Strict {
                path: path.to_path_buf(),
                summary: self.summary(),
            })
        }
    }
}

impl MbartForConditionalGeneration {
    /// Copies tensors into the parameters by name. Keys must start with `key_prefix` (e.g.
    /// `""` for HF files, `"translation_network.model."` for the reference's checkpoints);
    /// others are counted in [`LoadReport::outside_prefix`]. Values are converted to the
    /// parameter's kind and device.
    pub fn load_tensors(
        &self,
        tensors: Vec<(String, Tensor)>,
        key_prefix: &str,
    ) -> Result<LoadReport> {
        let mut report = LoadReport::default();
        let mut file: BTreeMap<String, Tensor> = BTreeMap::new();
        for (name, t) in tensors {
            match name.strip_prefix(key_prefix) {
                Some(rest) => {
                    file.insert(rest.to_string(), t);
                }
                None => report.outside_prefix += 1,
            }
        }
        // Tied copies: stand in for a missing shared table, otherwise must agree with it.
        let mut copies = Vec::new();
        for alias in TIED_ALIASES {
            if let Some(t) = file.remove(alias) {
                report.tied_copies.push(alias.to_string());
                copies.push((alias, t));
            }
        }
        if !file.contains_key(SHARED_WEIGHT) {
            if let Some((_, t)) = copies.first() {
                file.insert(SHARED_WEIGHT.to_string(), t.shallow_clone());
            }
        }
        if let Some(shared) = file.get(SHARED_WEIGHT) {
            for (alias, t) in &copies {
                let same = t.size() == shared.size()
                    && t.to_kind(Kind::Double).f_allclose(
                        &shared.to_kind(Kind::Double),
                        0.0,
                        0.0,
                        false,
                    )?;
                if !same {
                    report.tied_conflicts.push(alias.to_string());
                }
            }
        }
        tch::no_grad(|| -> Result<()> {
            for (name, param) in self.named_parameters() {
                match file.remove(&name) {
                    None => report.missing.push(name),
                    Some(src) if src.size() != param.size() => {
                        report.mismatched.push(ShapeMismatch {
                            name,
                            expected: param.size(),
                            found: src.size(),
                        });
                    }
                    Some(src) => {
                        let mut dst = param;
                        dst.f_copy_(&src)?;
                        report.loaded.push(name);
                    }
                }
            }
            Ok(())
        })?;
        report.unexpected = file.into_keys().collect();
        Ok(report)
    }

    /// Loads a safetensors file (see [`Self::load_tensors`]).
    pub fn load_safetensors(&self, path: &Path, key_prefix: &str) -> Result<LoadReport> {
        if !path.is_file() {
            return Err(MbartError::Io {
                path: path.to_path_buf(),
                source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
            });
        }
        let tensors = Tensor::read_safetensors(path).map_err(|e| MbartError::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        self.load_tensors(tensors, key_prefix)
    }

    /// Loads a `torch.save`d state dict such as HF's `pytorch_model.bin` (read by
    /// [`crate::model::import`], which never executes pickled code; see [`Self::load_tensors`]).
    pub fn load_torch_bin(&self, path: &Path, key_prefix: &str) -> Result<LoadReport> {
        let tensors = load_tensor_dict(path).map_err(|e| MbartError::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        self.load_tensors(tensors, key_prefix)
    }

    /// `MBartForConditionalGeneration.from_pretrained(dir, **overrides)`: reads
    /// `dir/config.json`, applies the overrides (the reference's `overwrite_cfg`), creates
    /// the model under `p` and loads `dir/model.safetensors`, or else `dir/pytorch_model.bin`.
    /// The report is returned, not enforced: call [`LoadReport::ensure_clean`] for strict
    /// loading.
    pub fn from_pretrained(
        p: &nn::Path,
        dir: &Path,
        overrides: Option<&MbartOverrides>,
    ) -> Result<(Self, LoadReport)> {
        let mut cfg = MbartConfig::from_file(&dir.join("config.json"))?;
        if let Some(o) = overrides {
            cfg.apply_overrides(o)?;
        }
        let model = Self::new(p, &cfg)?;
        let safetensors = dir.join("model.safetensors");
        let bin = dir.join("pytorch_model.bin");
        let report = if safetensors.is_file() {
            model.load_safetensors(&safetensors, "")?
        } else if bin.is_file() {
            model.load_torch_bin(&bin, "")?
        } else {
            return Err(MbartError::NoWeights {
                dir: dir.to_path_buf(),
            });
        };
        Ok((model, report))
    }

    /// `save_pretrained(dir)`: writes `config.json` and `model.safetensors` (every parameter
    /// once, the tied table as `model.shared.weight`, metadata `format: pt`), each through a
    /// temporary file and a rename.
    pub fn save_pretrained(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|source| MbartError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let config = self.config().to_json()?;
        write_atomic(&dir.join("config.json"), config.as_bytes())?;
        write_safetensors(&dir.join("model.safetensors"), &self.named_parameters())
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> MbartError + '_ {
    move |source| MbartError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` through `path.tmp` + fsync + rename.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).map_err(io_err(&tmp))?;
    f.sync_all().map_err(io_err(&tmp))?;
    drop(f);
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

fn safetensors_dtype(kind: Kind) -> Option<&'static str> {
    Some(match kind {
        Kind::Float => "F32",
        Kind::Double => "F64",
        Kind::Half => "F16",
        Kind::BFloat16 => "BF16",
        Kind::Int64 => "I64",
        Kind::Int => "I32",
        Kind::Int16 => "I16",
        Kind::Int8 => "I8",
        Kind::Uint8 => "U8",
        Kind::Bool => "BOOL",
        _ => return None,
    })
}

/// Writes tensors as safetensors with the `{"format": "pt"}` metadata HF writes (and some
/// transformers versions require), header padded to 8 bytes.
pub fn write_safetensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<()> {
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({ "format": "pt" }));
    let mut data: Vec<u8> = Vec::new();
    for (name, t) in tensors {
        let dtype = safetensors_dtype(t.kind()).ok_or_else(|| MbartError::Weights {
            path: path.to_path_buf(),
            message: format!("{name}: unsupported kind {:?}", t.kind()),
        })?;
        let t = t.detach().to_device(tch::Device::Cpu).contiguous();
        let start = data.len();
        let nbytes = t.numel() * t.kind().elt_size_in_bytes();
        data.resize(start + nbytes, 0);
        t.f_copy_data_u8(&mut data[start..], t.numel())?;
        header.insert(
            name.clone(),
            serde_json::json!({ "dtype": dtype, "shape": t.size(), "data_offsets": [start, data.len()] }),
        );
    }
    let mut head = serde_json::to_vec(&serde_json::Value::Object(header)).map_err(|e| {
        MbartError::Weights {
            path: path.to_path_buf(),
            message: e.to_string(),
        }
    })?;
    while head.len() % 8 != 0 {
        head.push(b' ');
    }
    let mut bytes = Vec::with_capacity(8 + head.len() + data.len());
    bytes.extend_from_slice(&(head.len() as u64).to_le_bytes());
    bytes.extend_from_slice(&head);
    bytes.extend_from_slice(&data);
    write_atomic(path, &bytes)
}
