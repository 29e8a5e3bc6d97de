//! Networks in tch, with parameters named like the reference's state dicts, and import of
//! checkpoints written by other programs.
pub mod import;
