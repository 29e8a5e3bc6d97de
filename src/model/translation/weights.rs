//! Initial weights of the translation network, in the reference's order: the pretrained mBART
//! (`from_pretrained`), the gloss embedding rows (`gloss2embed_file`), then `load_ckpt`
//! (`translation_network.*` of an earlier run, loaded strictly).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tch::Tensor;

use super::error::{Result, TranslationError};
use super::{TranslationNetwork, GLOSS_EMBEDDING_WEIGHT, NETWORK_PREFIX};
use crate::model::import::{load_state_dict, load_tensor_dict};
use crate::model::mbart::{LoadReport, MbartError};

/// Weights file of an slt checkpoint directory (`ckpts/{name}/model.safetensors`).
const CHECKPOINT_MODEL_FILE: &str = "model.safetensors";
/// Pointer files of an slt `ckpts` directory, in the order they are tried.
const CHECKPOINT_POINTERS: [&str; 2] = ["best", "latest"];

/// The gloss rows taken from `gloss2embed_file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GlossRowsReport {
    /// The file.
    pub file: PathBuf,
    /// Rows of the vocabulary initialised from it.
    pub loaded: usize,
    /// Glosses of the vocabulary it has no vector for (they keep their random rows).
    pub missing: Vec<String>,
}

/// What [`TranslationNetwork::load_initial_weights`] did.
#[derive(Debug, Clone, Default)]
pub struct WeightInitReport {
    /// The pretrained weights file and its load report; `None` for from-scratch models.
    pub pretrained: Option<(PathBuf, LoadReport)>,
    /// The gloss embedding rows; `None` when `GlossEmbedding.from_scratch`.
    pub gloss_rows: Option<GlossRowsReport>,
    /// The checkpoint of `load_ckpt` and how many tensors it provided.
    pub checkpoint: Option<(PathBuf, usize)>,
}

impl WeightInitReport {
    /// One line per step.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        match &self.pretrained {
            Some((file, report)) => {
                let _ = writeln!(out, "mBART from {}: {}", file.display(), report.summary());
            }
            None => out.push_str("mBART: random initialisation (from_scratch)\n"),
        }
        match &self.gloss_rows {
            Some(rows) => {
                let shown: Vec<&str> = rows.missing.iter().take(10).map(String::as_str).collect();
                let _ = writeln!(
                    out,
                    "gloss embedding from {}: {} rows loaded, {} random{}",
                    rows.file.display(),
                    rows.loaded,
                    rows.missing.len(),
                    if shown.is_empty() {
                        String::new()
                    } else {
                        format!(" (e.g. {})", shown.join(", "))
                    }
                );
            }
            None => out.push_str("gloss embedding: random initialisation (from_scratch)\n"),
        }
        if let Some((path, count)) = &self.checkpoint {
            let _ = writeln!(
                out,
                "load_ckpt {}: {count} translation_network tensors",
                path.display()
            );
        }
        out
    }
}

impl TranslationNetwork {
    /// Loads the initial weights into the network's parameters (call once the VarStore holds
    /// every module, before training): the pretrained mBART weights (unless `from_scratch`),
    /// the gloss embedding rows from `gloss2embed_file` (unless `GlossEmbedding.from_scratch`)
    /// and the `translation_network.*` tensors of `load_ckpt`. Missing or mis-shaped pretrained
    /// weights and any mismatch with `load_ckpt` are errors.
    pub fn load_initial_weights(&self) -> Result<WeightInitReport> {
        let mut report = WeightInitReport::default();
        if !self.cfg.from_scratch {
            let dir = self
                .cfg
                .pretrained_model_name_or_path
                .as_deref()
                .ok_or_else(|| {
                    super::error::config_err(
                        "pretrained_model_name_or_path",
                        "required unless from_scratch is true",
                    )
                })?;
            report.pretrained = Some(self.load_pretrained(dir)?);
        }
        let embedding = &self.cfg.gloss_embedding;
        if !embedding.from_scratch {
            let file = embedding.gloss2embed_file.as_deref().ok_or_else(|| {
                super::error::config_err(
                    "GlossEmbedding.gloss2embed_file",
                    "required unless GlossEmbedding.from_scratch is true",
                )
            })?;
            report.gloss_rows = Some(self.load_gloss_rows(file)?);
        }
        if let Some(path) = &self.cfg.load_ckpt {
            report.checkpoint = Some(self.load_checkpoint(path)?);
        }
        Ok(report)
    }

    /// `model.safetensors`, else `pytorch_model.bin`, of a Hugging Face directory.
    fn load_pretrained(&self, dir: &Path) -> Result<(PathBuf, LoadReport)> {
        let safetensors = dir.join("model.safetensors");
        let bin = dir.join("pytorch_model.bin");
        let (file, report) = if safetensors.is_file() {
            let report = self.model.load_safetensors(&safetensors, "")?;
            (safetensors, report)
        } else if bin.is_file() {
            let report = self.model.load_torch_bin(&bin, "")?;
            (bin, report)
        } else {
            return Err(MbartError::NoWeights {
                dir: dir.to_path_buf(),
            }
            .into());
        };
        // Like `from_pretrained`, extra entries are tolerated (and reported); parameters left
        // random would silently spoil a fine-tuning run, so those are errors.
        if !report.missing.is_empty()
            || !report.mismatched.is_empty()
            || !report.tied_conflicts.is_empty()
        {
            return Err(MbartError::Strict {
                path: file,
                summary: report.summary(),
            }
            .into());
        }
        Ok((file, report))
    }

    /// Row `i` := the file's vector of gloss `i` (the reference's `build_gloss_embedding`).
    fn load_gloss_rows(&self, file: &Path) -> Result<GlossRowsReport> {
        let vectors: HashMap<String, Tensor> = load_tensor_dict(file)?.into_iter().collect();
        let d_model = self.model.config().d_model;
        let mut loaded = 0;
        let mut missing = Vec::new();
        tch::no_grad(|| -> Result<()> {
            for (id, gloss) in self.gloss_tokenizer.vocab().glosses().iter().enumerate() {
                let Some(vector) = vectors.get(gloss) else {
                    missing.push(gloss.clone());
                    continue;
                };
                if vector.numel() != d_model as usize {
                    return Err(TranslationError::GlossVector {
                        path: file.to_path_buf(),
                        gloss: gloss.clone(),
                        expected: d_model,
                        found: vector.size(),
                    });
                }
                self.gloss_embedding
                    .get(id as i64)
                    .f_copy_(&vector.reshape([d_model]))?;
                loaded += 1;
            }
            Ok(())
        })?;
        Ok(GlossRowsReport {
            file: file.to_path_buf(),
            loaded,
            missing,
        })
    }

    /// Strict load of `translation_network.*` (the reference's `load_from_pretrained_ckpt`).
    fn load_checkpoint(&self, path: &Path) -> Result<(PathBuf, usize)> {
        let (file, tensors) = read_checkpoint(path)?;
        let strict = |message: String| TranslationError::Checkpoint {
            path: file.clone(),
            message,
        };
        let model_prefix = format!("{NETWORK_PREFIX}model.");
        let gloss_key = format!("{NETWORK_PREFIX}{GLOSS_EMBEDDING_WEIGHT}");
        let mut gloss = None;
        let mut model_entries = Vec::new();
        let mut unexpected = Vec::new();
        for (name, tensor) in tensors {
            if name == gloss_key {
                gloss = Some(tensor);
            } else if name.starts_with(&model_prefix) {
                model_entries.push((name, tensor));
            } else if name.starts_with(NETWORK_PREFIX) {
                unexpected.push(name);
            }
        }
        let count = model_entries.len() + usize::from(gloss.is_some());
        if count == 0 {
            return Err(strict(format!("no `{NETWORK_PREFIX}*` tensors")));
        }
        if !unexpected.is_empty() {
            return Err(strict(format!("unexpected entries {unexpected:?}")));
        }
        let gloss = gloss.ok_or_else(|| strict(format!("missing `{gloss_key}`")))?;
        if gloss.size() != self.gloss_embedding.size() {
            return Err(strict(format!(
                "`{gloss_key}`: expected {:?}, found {:?}",
                self.gloss_embedding.size(),
                gloss.size()
            )));
        }
        let report = self.model.load_tensors(model_entries, &model_prefix)?;
        if !report.is_clean() {
            return Err(strict(report.summary()));
        }
        tch::no_grad(|| self.gloss_embedding.shallow_clone().f_copy_(&gloss))?;
        Ok((file, count))
    }
}

/// The tensors of `load_ckpt`: an slt checkpoint directory (`model.safetensors`), a `ckpts`
/// folder or its `best`/`latest` pointer file, a `.safetensors` file, or a `torch.save`d
/// reference checkpoint (`model_state`). Returns the file actually read.
fn read_checkpoint(path: &Path) -> Result<(PathBuf, Vec<(String, Tensor)>)> {
    let file = resolve_checkpoint_file(path)?;
    let is_safetensors = file.extension().is_some_and(|e| e == "safetensors");
    let tensors = if is_safetensors {
        Tensor::read_safetensors(&file).map_err(|e| TranslationError::Checkpoint {
            path: file.clone(),
            message: format!("not a readable safetensors file: {e}"),
        })?
    } else {
        load_state_dict(&file, None)?
    };
    Ok((file, tensors))
}

fn resolve_checkpoint_file(path: &Path) -> Result<PathBuf> {
    let not_found = |message: &str| TranslationError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    };
    if path.is_dir() {
        let direct = path.join(CHECKPOINT_MODEL_FILE);
        if direct.is_file() {
            return Ok(direct);
        }
        return CHECKPOINT_POINTERS
            .iter()
            .find_map(|name| follow_pointer(&path.join(name)))
            .ok_or_else(|| {
                not_found("a directory without model.safetensors or a best/latest pointer")
            });
    }
    if !path.is_file() {
        return Err(not_found("no such file or directory"));
    }
    Ok(follow_pointer(path).unwrap_or_else(|| path.to_path_buf()))
}

/// The `model.safetensors` a `best`/`latest` pointer file names, if `pointer` is one.
fn follow_pointer(pointer: &Path) -> Option<PathBuf> {
    let metadata = std::fs::metadata(pointer).ok()?;
    if !metadata.is_file() || metadata.len() > 256 {
        return None;
    }
    let text = std::fs::read_to_string(pointer).ok()?;
    let name = text.trim();
    if name.is_empty() || name.contains(['/', '\\', '\n']) {
        return None;
    }
    let file = pointer.parent()?.join(name).join(CHECKPOINT_MODEL_FILE);
    file.is_file().then_some(file)
}
