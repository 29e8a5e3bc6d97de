//! The rendezvous store: a small TCP key-value service hosted by the node-0 launcher (or, when
//! no launcher is used, by rank 0 itself).
//!
//! Workers use it to exchange what they need before collectives exist: peer addresses, the
//! NCCL unique id, "I am ready" flags. Operations: set / get (waiting) / try_get / wait / add /
//! compare_set / delete / barrier. Every request carries the run token, so a worker of another
//! run — or a leftover of an earlier attempt of this run — is refused with a clear error, and
//! every blocking operation has a timeout whose error names the missing keys or ranks.
//!
//! ```no_run
//! use slt_launch::store::{ClientOptions, StoreClient, StoreServer};
//! let server = StoreServer::bind("127.0.0.1:0", "run/0")?;
//! let addr = server.local_addr().to_string();
//! let mut c = StoreClient::connect(&addr, "run/0", ClientOptions::default())?;
//! c.set("peer/0", b"10.0.0.1:4000")?;
//! assert_eq!(c.get("peer/0")?, b"10.0.0.1:4000");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod client;
pub mod protocol;
mod server;

use std::io;
use std::time::Duration;

pub use client::{ClientOptions, StoreClient};
pub use server::StoreServer;

/// Environment variable carrying the run token to workers.
pub const ENV_TOKEN: &str = "SLT_RUN_TOKEN";
/// Environment variable overriding [`ClientOptions::connect_timeout`] (seconds).
pub const ENV_CONNECT_TIMEOUT: &str = "SLT_STORE_CONNECT_TIMEOUT";
/// Environment variable overriding [`ClientOptions::timeout`] (seconds).
pub const ENV_TIMEOUT: &str = "SLT_STORE_TIMEOUT";

/// The token of attempt `attempt` (the restart count) of run `run_id`: `"{run_id}/{attempt}"`.
/// It changes with every restart, so a worker left over from a failed attempt cannot disturb
/// the next one, and the refusal message says which run and attempt each side belongs to.
pub fn attempt_token(run_id: &str, attempt: u32) -> String {
    format!("{run_id}/{attempt}")
}

/// `host:port`, with brackets around an IPv6 literal (`[::1]:29500`).
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// [`ClientOptions`] with the timeouts of [`ENV_CONNECT_TIMEOUT`] and [`ENV_TIMEOUT`] (seconds)
/// applied over the defaults; the error names the variable and its value.
pub fn options_from_env() -> Result<ClientOptions, String> {
    let mut opts = ClientOptions::default();
    for (var, slot) in [
        (ENV_CONNECT_TIMEOUT, &mut opts.connect_timeout),
        (ENV_TIMEOUT, &mut opts.timeout),
    ] {
        if let Ok(v) = std::env::var(var) {
            let secs: f64 = v
                .trim()
                .parse()
                .map_err(|e| format!("{var}={v:?} is not a number of seconds: {e}"))?;
            *slot = Duration::try_from_secs_f64(secs)
                .map_err(|_| format!("{var}={v:?} must be a finite number of seconds ≥ 0"))?;
        }
    }
    Ok(opts)
}

/// Errors of store clients. Each names the store's address and the operation.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be made within the connect window.
    #[error(
        "cannot reach the rendezvous store at {addr} (tried for {waited:.1?}): {source}; \
         is the launcher running, and are MASTER_ADDR/MASTER_PORT right?"
    )]
    Unreachable {
        /// The store's address.
        addr: String,
        /// How long connecting was tried.
        waited: Duration,
        /// The last connection error.
        source: io::Error,
    },
    /// The store belongs to another run or another attempt of this one.
    #[error("the rendezvous store at {addr} refused this worker: {detail}")]
    TokenMismatch {
        /// The store's address.
        addr: String,
        /// The server's explanation (both tokens).
        detail: String,
    },
    /// A `get`/`wait` ran out of time.
    #[error("store {op} at {addr}: key(s) {keys:?} still missing after {waited:.1?}")]
    Timeout {
        /// The store's address.
        addr: String,
        /// `get` or `wait`.
        op: &'static str,
        /// The keys that were missing at the deadline.
        keys: Vec<String>,
        /// The timeout.
        waited: Duration,
    },
    /// A barrier ran out of time.
    #[error(
        "store barrier {name:?} at {addr}: only {} of {world} ranks arrived within {waited:.1?}; \
         missing rank(s) {missing:?}",
        arrived.len()
    )]
    BarrierTimeout {
        /// The store's address.
        addr: String,
        /// The barrier's name.
        name: String,
        /// Ranks that had arrived.
        arrived: Vec<u32>,
        /// Ranks that had not.
        missing: Vec<u32>,
        /// The barrier's world size.
        world: u32,
        /// The timeout.
        waited: Duration,
    },
    /// The connection failed or the store stopped answering.
    #[error("store {op} at {addr}: connection lost: {source} (did the launcher exit?)")]
    Disconnected {
        /// The store's address.
        addr: String,
        /// The operation.
        op: &'static str,
        /// The I/O error.
        source: io::Error,
    },
    /// The store refused the operation (e.g. `add` on a non-integer, a barrier world size
    /// that differs between ranks, the store shutting down).
    #[error("store {op} at {addr} refused: {detail}")]
    Refused {
        /// The store's address.
        addr: String,
        /// The operation.
        op: &'static str,
        /// The server's explanation.
        detail: String,
    },
    /// The store answered something this client does not understand.
    #[error("store {op} at {addr}: protocol error: {detail}")]
    Protocol {
        /// The store's address.
        addr: String,
        /// The operation.
        op: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// A key is empty or too long.
    #[error("invalid store key {key:?}: {reason}")]
    InvalidKey {
        /// The key (cut to 80 characters).
        key: String,
        /// What is wrong with it.
        reason: String,
    },
}

#[cfg(test)]
mod tests;
