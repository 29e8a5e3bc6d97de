//! Errors of the translation network. Every variant about input names the file, config key or
//! argument, and what was expected.

use std::path::PathBuf;

use thiserror::Error;

use crate::data::g2t_gloss::G2TGlossError;
use crate::data::text_tokenizer::TextTokenizerError;
use crate::model::import::TorchFileError;
use crate::model::mbart::MbartError;

/// Why the translation network could not be built, loaded or run.
#[derive(Debug, Error)]
pub enum TranslationError {
    /// mBART rejected its config, weights or input.
    #[error("translation network: {0}")]
    Mbart(#[from] MbartError),
    /// The text tokenizer could not be built, loaded, saved or used.
    #[error("translation network: text tokenizer: {0}")]
    TextTokenizer(#[from] TextTokenizerError),
    /// The gloss vocabulary could not be read, built or saved.
    #[error("translation network: gloss tokenizer: {0}")]
    GlossTokenizer(#[from] G2TGlossError),
    /// A `torch.save` file (gloss embeddings, reference checkpoint) could not be read.
    #[error("translation network: {0}")]
    TorchFile(#[from] TorchFileError),
    /// The config asks for something this network cannot do.
    #[error("model.TranslationNetwork.{key}: {message}")]
    Config {
        /// Key path below `model.TranslationNetwork`.
        key: String,
        /// What was expected.
        message: String,
    },
    /// A saved tokenizer or vocabulary under the artefacts directory is unusable, or missing
    /// with nothing to build it from.
    #[error("translation artefacts {}: {message}", .path.display())]
    Artifact {
        /// The file or directory.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A file could not be read or written.
    #[error("{}: {action}: {source}", .path.display())]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The gloss embedding file has a vector of the wrong size.
    #[error("{}: gloss '{gloss}': expected a vector of {expected} values, found shape {found:?}", .path.display())]
    GlossVector {
        /// The `gloss2embed_file`.
        path: PathBuf,
        /// The gloss.
        gloss: String,
        /// `d_model`.
        expected: i64,
        /// The shape in the file.
        found: Vec<i64>,
    },
    /// A checkpoint's `translation_network.*` entries do not fit the network (strict load).
    #[error("load_ckpt {}: {message}", .path.display())]
    Checkpoint {
        /// The checkpoint.
        path: PathBuf,
        /// Missing, unexpected or mis-shaped entries.
        message: String,
    },
    /// A call argument does not fit (batch sizes, shapes).
    #[error("translation network: invalid argument `{name}`: {message}")]
    Argument {
        /// The argument.
        name: &'static str,
        /// What was expected.
        message: String,
    },
    /// A libtorch error.
    #[error("translation network: libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Shorthand for results of this module.
pub type Result<T> = std::result::Result<T, TranslationError>;

/// Builds a [`TranslationError::Config`].
pub(crate) fn config_err(key: impl Into<String>, message: impl Into<String>) -> TranslationError {
    TranslationError::Config {
        key: key.into(),
        message: message.into(),
    }
}

/// Builds a [`TranslationError::Argument`].
pub(crate) fn arg_err(name: &'static str, message: impl Into<String>) -> TranslationError {
    TranslationError::Argument {
        name,
        message: message.into(),
    }
}
