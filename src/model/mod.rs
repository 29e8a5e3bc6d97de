//! Networks in tch, with parameters named like the reference's state dicts, and import of
//! checkpoints written by other programs.
pub mod ctc;
pub mod import;
pub mod mbart;
pub mod recognition;
pub mod s3d;
pub mod translation;
pub mod visual_head;
