//! Resolving the config's relative paths against a base directory.
//!
//! The reference opens every path relative to the process's working directory, and so does slt
//! by default (paths are left as written). [`SltConfig::resolve_paths`] makes them absolute
//! against another directory, e.g. a checkout root when running from elsewhere.

use std::path::{Path, PathBuf};

use super::model::{ModelConfig, S3D_SCRATCH};
use super::schema::{DataConfig, SltConfig};

fn resolve(path: &mut PathBuf, base: &Path) {
    if path.is_relative() {
        *path = base.join(&*path);
    }
}

fn resolve_optional(path: &mut Option<PathBuf>, base: &Path) {
    if let Some(path) = path {
        resolve(path, base);
    }
}

impl SltConfig {
    /// Joins every relative path of the config onto `base` (absolute paths stay as they are;
    /// `s3d.pretrained_ckpt: scratch` is not a path and stays too). Hugging Face hub names in
    /// `pretrained_model_name_or_path` are not supported by slt, so those are treated as
    /// directories as well.
    pub fn resolve_paths(&mut self, base: &Path) {
        resolve_data_paths(&mut self.data, base);
        let training = &mut self.training;
        resolve(&mut training.model_dir, base);
        resolve_optional(&mut training.load_ckpt, base);
        resolve_model_paths(&mut self.model, base);
    }
}

fn resolve_data_paths(data: &mut DataConfig, base: &Path) {
    resolve_optional(&mut data.zip_file, base);
    for split in [&mut data.train, &mut data.dev, &mut data.test] {
        resolve(split, base);
    }
    for features in [
        &mut data.train_head_rgb_input,
        &mut data.dev_head_rgb_input,
        &mut data.test_head_rgb_input,
    ] {
        resolve_optional(features, base);
    }
}

fn resolve_model_paths(model: &mut ModelConfig, base: &Path) {
    if let Some(recognition) = &mut model.recognition_network {
        resolve(&mut recognition.gloss_tokenizer.gloss2id_file, base);
        if recognition.s3d.pretrained_ckpt != Path::new(S3D_SCRATCH) {
            resolve(&mut recognition.s3d.pretrained_ckpt, base);
        }
    }
    if let Some(translation) = &mut model.translation_network {
        resolve_optional(&mut translation.pretrained_model_name_or_path, base);
        let text = &mut translation.text_tokenizer;
        // Trained text tokenizers have no files here (the empty path means "absent").
        for path in [
            &mut text.pretrained_model_name_or_path,
            &mut text.pruneids_file,
        ] {
            if !path.as_os_str().is_empty() {
                resolve(path, base);
            }
        }
        resolve_optional(&mut translation.gloss_tokenizer.gloss2id_file, base);
        resolve_optional(&mut translation.gloss_embedding.gloss2embed_file, base);
        resolve_optional(&mut translation.load_ckpt, base);
    }
}
