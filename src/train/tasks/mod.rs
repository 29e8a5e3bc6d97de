//! The training stages as [`crate::train::task::Task`]s: data, model and decoding of each.

pub mod gloss2text;
pub mod sign2gloss;

pub use gloss2text::Gloss2TextTask;
pub use sign2gloss::Sign2GlossTask;
