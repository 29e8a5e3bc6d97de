//! Errors of the CTC loss and decoders.

/// What can go wrong when computing the recognition loss or decoding.
#[derive(Debug, thiserror::Error)]
pub enum CtcError {
    /// A tensor or slice has a shape the operation cannot take.
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// The expected shape, in words.
        expected: String,
        /// The shape that was passed.
        got: String,
    },
    /// A sequence length is negative or longer than the time axis.
    #[error("{what}[{index}] = {value} is outside 0..={max}")]
    Length {
        /// Which argument.
        what: &'static str,
        /// Position in the batch.
        index: usize,
        /// The offending value.
        value: i64,
        /// The largest valid value.
        max: usize,
    },
    /// The beam width must be at least 1 (as TensorFlow requires).
    #[error("beam width must be >= 1, got {0}")]
    BeamWidth(usize),
    /// An error raised by libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}
