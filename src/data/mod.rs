//! Everything between files on disk and batches of tensors.
pub mod annotation;
pub mod augment;
pub mod dataset;
pub mod decode;
pub mod g2t_gloss;
pub mod gloss;
pub mod loader;
pub mod pack;
pub mod pickle;
pub mod rng;
pub mod sampler;
pub mod sampling;
pub mod source;
pub mod synth;
pub mod text_tokenizer;
pub mod validate;
pub mod zip_index;
