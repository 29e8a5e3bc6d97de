//! Typed experiment configs in the reference's YAML format (SLRT `TwoStreamNetwork`
//! `experiments/configs/SingleStream/*.yaml`), with overrides and validation.
//!
//! ```no_run
//! use std::path::Path;
//! use slt::config::{Override, SltConfig};
//!
//! # fn main() -> Result<(), slt::config::ConfigError> {
//! // File < SLT_<SECTION>__<KEY>… environment variables < `--set key=value` arguments.
//! let config = SltConfig::load_with_env(
//!     Path::new("experiments/configs/SingleStream/phoenix-2014t_s2g.yaml"),
//!     std::env::vars(),
//!     &["training.batch_size=2"],
//! )?;
//! assert_eq!(config.training.batch_size, 2);
//! // Or with explicit overrides only:
//! let overrides = [Override::parse("training.total_epoch=1")?];
//! let config = SltConfig::load(
//!     Path::new("experiments/configs/SingleStream/phoenix-2014t_s2g.yaml"),
//!     &overrides,
//! )?;
//! println!("{}", config.to_yaml()?);
//! # Ok(())
//! # }
//! ```
//!
//! Reading goes file → `config` crate (YAML) → JSON tree → overrides → typed structs
//! (`serde_path_to_error`, unknown keys rejected) → semantic validation. Every error names the
//! file and the key path.

mod error;
mod load;
mod model;
mod overrides;
mod paths;
mod schema;
mod validate;
mod values;
mod yaml_out;

use std::path::Path;

pub use error::{ConfigError, ValidationProblem, ValidationProblems};
pub use model::{
    FuseMethod, GlossEmbeddingConfig, GlossFeatureSource, GlsEos, HeatmapConfig,
    MbartArchitectureConfig, MbartOverrides, ModelConfig, RecognitionGlossTokenizerConfig,
    RecognitionNetworkConfig, S3dConfig, TextTokenizerConfig, TextTokenizerLevel,
    TranslationGlossTokenizerConfig, TranslationNetworkConfig, VisualHeadConfig, VlMapperConfig,
    VlMapperKind, MBART_ACTIVATIONS, S3D_BLOCK_CHANNELS, S3D_SCRATCH,
};
pub use overrides::{
    Override, OverrideOrigin, CAMEL_CASE_KEYS, ENV_PREFIX, ENV_SEPARATOR, SECTIONS,
};
pub use schema::{
    DataConfig, DatasetName, FrozenBlockStep, GenerateConfig, InputData, InputStream,
    OptimizationConfig, PadMode, RecognitionDecodeConfig, SltConfig, Task, TemporalAugmentation,
    TestingConfig, TextLevel, TrainingConfig, TransformConfig, TranslationDecodeConfig,
    ValidationConfig, ValidationUnit,
};
pub use values::{
    FfKernelSizes, LearningRates, OptimizerKind, PadLength, SchedulerKind, MODEL_MODULE_NAMES,
};

use load::YamlSource;

impl SltConfig {
    /// Reads `path` with the `config` crate, applies `overrides` in order (later ones win),
    /// deserialises and validates. Relative paths in the result are left as written (relative
    /// to the working directory, like the reference); see [`SltConfig::resolve_paths`].
    pub fn load(path: &Path, overrides: &[Override]) -> Result<SltConfig, ConfigError> {
        Self::load_source(YamlSource::File(path), path, overrides)
    }

    /// [`SltConfig::load`] with the precedence file < environment < `--set`: config overrides
    /// are taken from `env` (`SLT_<SECTION>__<KEY>…`, see [`Override::from_env`]; other
    /// variables are ignored), then from the `set_args` (`a.b.c=value`).
    pub fn load_with_env<I, K, V, S>(
        path: &Path,
        env: I,
        set_args: &[S],
    ) -> Result<SltConfig, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
        S: AsRef<str>,
    {
        let mut overrides = Override::from_env(env)?;
        overrides.extend(Override::parse_all(set_args)?);
        Self::load(path, &overrides)
    }

    /// [`SltConfig::load_with_env`] with the process environment (variables whose name or value
    /// is not UTF-8 are skipped).
    pub fn load_from_process_env<S: AsRef<str>>(
        path: &Path,
        set_args: &[S],
    ) -> Result<SltConfig, ConfigError> {
        let env = std::env::vars_os().filter_map(|(name, value)| {
            Some((name.into_string().ok()?, value.into_string().ok()?))
        });
        Self::load_with_env(path, env, set_args)
    }

    /// Like [`SltConfig::load`] for YAML text held in memory; `name` stands in for the file
    /// path in error messages.
    pub fn from_yaml_str(
        yaml: &str,
        name: &str,
        overrides: &[Override],
    ) -> Result<SltConfig, ConfigError> {
        Self::load_source(YamlSource::Text(yaml), Path::new(name), overrides)
    }

    fn load_source(
        source: YamlSource<'_>,
        file: &Path,
        overrides: &[Override],
    ) -> Result<SltConfig, ConfigError> {
        let mut tree = load::read_tree(source, file)?;
        let applied = load::apply_overrides(&mut tree, overrides, file)?;
        let config = load::deserialize_tree(tree, file, &applied)?;
        config.validate().map_err(|problems| ConfigError::Invalid {
            file: file.to_path_buf(),
            problems,
        })?;
        Ok(config)
    }

    /// Semantic checks (what the task needs, value ranges, cross-section consistency).
    /// [`SltConfig::load`] runs them; call again after changing a loaded config.
    pub fn validate(&self) -> Result<(), ValidationProblems> {
        validate::validate(self)
    }

    /// The effective config as YAML (sections in the reference's order, nested keys sorted,
    /// defaults written out), for writing next to checkpoints. Loading it gives an equal config.
    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        let value = serde_json::to_value(self).map_err(|error| ConfigError::Serialize {
            reason: error.to_string(),
        })?;
        match value {
            serde_json::Value::Object(root) => Ok(yaml_out::write_document(&root, &SECTIONS)),
            other => Err(ConfigError::Serialize {
                reason: format!("expected a mapping at the top level, got {other}"),
            }),
        }
    }

    /// The number of S3D blocks frozen during (0-based) `epoch`: the last
    /// `training.frozen_block_schedule` entry whose `epoch` is <= `epoch`, else
    /// `s3d.freeze_block`. `None` without a recognition network.
    pub fn freeze_block_at_epoch(&self, epoch: usize) -> Option<usize> {
        let recognition = self.model.recognition_network.as_ref()?;
        let scheduled = self
            .training
            .frozen_block_schedule
            .iter()
            .take_while(|step| step.epoch <= epoch)
            .last()
            .map(|step| step.freeze_block);
        Some(scheduled.unwrap_or(recognition.s3d.freeze_block))
    }
}

#[cfg(test)]
mod tests;
