//! Everything between files on disk and batches of tensors.
pub mod annotation;
pub mod augment;
pub mod decode;
pub mod gloss;
pub mod pickle;
pub mod rng;
pub mod sampling;
pub mod source;
pub mod zip_index;
