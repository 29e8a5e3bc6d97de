//! Errors of the mBART module. Every variant about input names the file, key or argument and
//! what was expected.

use std::path::PathBuf;

/// Errors while configuring, loading, saving or running mBART.
#[derive(Debug, thiserror::Error)]
pub enum MbartError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is not valid JSON or does not match the mBART config schema.
    #[error("{path}: invalid mBART config: {message}")]
    Config {
        /// The config file (or `<memory>`).
        path: PathBuf,
        /// What is wrong, with the key path.
        message: String,
    },
    /// A config value is outside what the model supports.
    #[error("invalid mBART config value `{key}`: {message}")]
    ConfigValue {
        /// The key (HF name).
        key: &'static str,
        /// What was expected.
        message: String,
    },
    /// A weights file is malformed.
    #[error("{path}: invalid weights file: {message}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// No weights file in a model directory.
    #[error("{dir}: no model.safetensors or pytorch_model.bin found")]
    NoWeights {
        /// The model directory.
        dir: PathBuf,
    },
    /// Strict loading found missing, unexpected or mismatched keys.
    #[error("{path}: strict load failed: {summary}")]
    Strict {
        /// The weights file.
        path: PathBuf,
        /// The report in words.
        summary: String,
    },
    /// A call argument has the wrong shape, kind or value.
    #[error("invalid argument `{name}`: {message}")]
    Argument {
        /// The argument name.
        name: &'static str,
        /// What was expected.
        message: String,
    },
    /// A libtorch error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Shorthand for results of this module.
pub type Result<T> = std::result::Result<T, MbartError>;

/// Builds an [`MbartError::Argument`].
pub(crate) fn arg_err(name: &'static str, message: impl Into<String>) -> MbartError {
    MbartError::Argument {
        name,
        message: message.into(),
    }
}
