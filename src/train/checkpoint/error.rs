//! Errors of writing, verifying and loading checkpoints.

use std::io;
use std::path::PathBuf;

use tch::TchError;

/// Errors of writing, verifying and loading checkpoints.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A file-system operation failed.
    #[error("checkpoint: {action} `{path}`: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A checkpoint name that cannot be a directory name here.
    #[error("checkpoint name `{name}` is invalid: {reason}")]
    InvalidName {
        /// The name.
        name: String,
        /// Why.
        reason: &'static str,
    },
    /// Two tensors with one name in a file to write.
    #[error("checkpoint `{checkpoint}`: tensor `{tensor}` appears twice in `{file}`")]
    DuplicateTensor {
        /// Checkpoint name.
        checkpoint: String,
        /// File.
        file: &'static str,
        /// Tensor name.
        tensor: String,
    },
    /// A checkpoint that does not exist.
    #[error("checkpoint `{checkpoint}` not found in `{dir}`")]
    NotFound {
        /// Checkpoint name.
        checkpoint: String,
        /// The `ckpts` directory.
        dir: PathBuf,
    },
    /// A checkpoint with a missing, truncated or corrupted file.
    #[error("checkpoint `{checkpoint}` is incomplete or corrupt: `{file}`: {reason}")]
    Incomplete {
        /// Checkpoint name.
        checkpoint: String,
        /// The offending file.
        file: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A tensor file that libtorch/safetensors could not write or read.
    #[error("checkpoint `{checkpoint}`: `{file}`: {source}")]
    Tensors {
        /// Checkpoint name.
        checkpoint: String,
        /// File.
        file: &'static str,
        /// The error.
        #[source]
        source: TchError,
    },
    /// `state.json` that does not parse or serialise.
    #[error("checkpoint `{checkpoint}`: `{file}`: {source}")]
    Json {
        /// Checkpoint name.
        checkpoint: String,
        /// File.
        file: &'static str,
        /// The error.
        #[source]
        source: serde_json::Error,
    },
    /// Copying a tensor into the model failed.
    #[error("checkpoint: copying `{name}` into the model: {source}")]
    Copy {
        /// Variable name.
        name: String,
        /// The error.
        #[source]
        source: TchError,
    },
    /// The model's variables and the checkpoint's tensors differ.
    #[error("checkpoint: {source_name} does not match the model: {report}")]
    ModelMismatch {
        /// What was loaded.
        source_name: String,
        /// [`LoadReport`] summary.
        report: String,
    },
    /// Checkpoints exist but none is complete.
    #[error("no complete checkpoint in `{dir}`: {}", skipped.join("; "))]
    NoCompleteCheckpoint {
        /// The `ckpts` directory.
        dir: PathBuf,
        /// Why each was rejected.
        skipped: Vec<String>,
    },
}
