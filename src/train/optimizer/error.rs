//! Errors of the optimizer.

use tch::TchError;

/// Errors of the optimizer and of restoring its state.
#[derive(Debug, thiserror::Error)]
pub enum OptimizerError {
    /// A libtorch operation failed.
    #[error("optimizer: {context}: {source}")]
    Torch {
        /// What was being done, naming the parameter.
        context: String,
        /// The libtorch error.
        #[source]
        source: TchError,
    },
    /// The VarStore lists a trainable tensor that none of its names refers to.
    #[error("optimizer: trainable variable #{index} of the VarStore has no name")]
    UnnamedVariable {
        /// Position in the VarStore's trainable list.
        index: usize,
    },
    /// The VarStore's lock was poisoned by a panic elsewhere.
    #[error("optimizer: the VarStore lock is poisoned")]
    PoisonedVarStore,
    /// A learning-rate vector does not have one entry per group.
    #[error("optimizer: expected {expected} learning rates (groups: {groups}), got {got}")]
    LrCount {
        /// Number of groups.
        expected: usize,
        /// Number of rates given.
        got: usize,
        /// Group names, comma separated.
        groups: String,
    },
    /// A group name that the optimizer does not have.
    #[error("optimizer: unknown parameter group `{group}` (groups: {groups})")]
    UnknownGroup {
        /// The requested group.
        group: String,
        /// Existing group names, comma separated.
        groups: String,
    },
    /// Saved state whose groups differ from this model's groups.
    #[error(
        "optimizer state: groups {saved:?} of the checkpoint differ from the model's {model:?}"
    )]
    GroupMismatch {
        /// Group names in the saved state.
        saved: Vec<String>,
        /// Group names of this optimizer.
        model: Vec<String>,
    },
    /// Saved state for a parameter this optimizer does not have.
    #[error("optimizer state: parameter `{param}` has state but is not a parameter of the model")]
    UnexpectedParam {
        /// The parameter name.
        param: String,
    },
    /// A state tensor that the saved step counts call for is missing.
    #[error("optimizer state: tensor `{key}` is missing")]
    MissingTensor {
        /// Tensor name, e.g. `vl_mapper.mapping.0.weight.exp_avg`.
        key: String,
    },
    /// A state tensor that no parameter claims.
    #[error("optimizer state: unexpected tensor `{key}` (no parameter with a step count owns it)")]
    UnexpectedTensor {
        /// Tensor name.
        key: String,
    },
    /// A state tensor whose shape differs from its parameter's.
    #[error("optimizer state: tensor `{key}` has shape {found:?}, its parameter has {expected:?}")]
    ShapeMismatch {
        /// Tensor name.
        key: String,
        /// Parameter shape.
        expected: Vec<i64>,
        /// Saved shape.
        found: Vec<i64>,
    },
}

pub(super) fn torch_err(context: impl Into<String>) -> impl FnOnce(TchError) -> OptimizerError {
    let context = context.into();
    move |source| OptimizerError::Torch { context, source }
}
