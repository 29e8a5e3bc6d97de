//! Library part of `slt-launch`: the rendezvous store (protocol, server, client), shared by the
//! launcher, which hosts the store, and by `slt` workers, which connect to it.
//!
//! The launcher binary itself (spawning, supervision, signals) lives in `main.rs` and its
//! modules; this crate is free of tch so that the launcher builds without libtorch.

pub mod store;
