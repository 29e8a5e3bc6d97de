//! slt — SingleStream-SLT (sign language translation) training and evaluation with
//! data-parallel training.
//!
//! Module map (dependencies point one way: `config` ← `data`, `train`; `metrics` is a leaf):
//! - [`config`]: the reference's YAML schema as typed structs, overrides, validation.
//! - [`data`]: annotations, gloss vocabularies, video sources, sampling, augmentation,
//!   the distributed sampler, the prefetching loader and the synthetic dataset.
//! - [`model`]: networks and the import of foreign checkpoints (`torch.save` files).
//! - [`train`]: optimizer, learning-rate schedule, checkpoints.
//! - [`metrics`]: WER (with the Phoenix clean-up), BLEU, ROUGE-L.
pub mod config;
pub mod data;
pub mod dist;
pub mod metrics;
pub mod model;
pub mod train;
