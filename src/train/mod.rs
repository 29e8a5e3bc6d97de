//! Training machinery shared by all tasks.
pub mod checkpoint;
pub mod exact_float;
pub mod optimizer;
pub mod schedule;
pub mod task;
pub mod tasks;
pub mod trainer;
