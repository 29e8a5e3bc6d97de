//! Subcommand implementations of the `slt` binary (argument parsing and reporting only; the
//! work is done by the library).
pub mod bench;
pub mod data;
pub mod demo;
pub mod stream;
pub mod train;
