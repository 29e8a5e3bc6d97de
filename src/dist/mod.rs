//! Distributed training: process-group environment, rendezvous store, collectives.
//!
//! - [`env`]: rank, world size, node and store address from `slt-launch`/torchrun, `srun` or
//!   `mpirun` variables ([`DistEnv`]).
//! - the rendezvous store lives in the launcher crate (`slt_launch::store`, re-exported here):
//!   `slt-launch` hosts it on node 0 and workers connect with SLT_RUN_TOKEN; without the
//!   launcher (under `srun`), rank 0 hosts it itself.
//! - [`collective`]: the [`Collective`] trait (all-reduce, broadcast, all-gather, barrier) and
//!   [`SingleProcess`]; [`tcp`]: the ring backend over TCP; `mpi` (cargo feature `mpi`): rsmpi;
//!   `nccl` (cargo feature `nccl`): NCCL on CUDA tensors through cudarc.
//! - [`ddp`]: parameter broadcast and bucketed gradient averaging.
//!
//! The trainer needs one call:
//!
//! ```no_run
//! let mut pg = slt::dist::init_from_env()?;
//! if pg.is_main() { /* write checkpoints, logs */ }
//! let mut grads = vec![0.0f32; 10];
//! pg.collective().all_reduce_sum_f32(&mut grads)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Environment knobs: SLT_DIST_BACKEND (`tcp`, `mpi`, `nccl`; default `tcp` when the world
//! has more than one rank, `mpi` under mpirun when built with the `mpi` feature), SLT_DIST_TIMEOUT (seconds one collective may take, default 1800;
//! a dead peer is detected at once regardless), SLT_TCP_ADDR (IP the ring listens on; default
//! the interface that reaches the store), SLT_STORE_CONNECT_TIMEOUT (default 30 s) and
//! SLT_STORE_TIMEOUT (default 300 s).

pub mod collective;
pub mod ddp;
pub mod env;
#[cfg(feature = "mpi")]
pub mod mpi;
#[cfg(feature = "nccl")]
pub mod nccl;
pub mod tcp;

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::str::FromStr;
use std::time::Duration;

pub use collective::{Collective, CollectiveError, Op, SingleProcess};
pub use env::{DistEnv, EnvError, Launcher};
pub use slt_launch::store::{ClientOptions, StoreClient, StoreError, StoreServer};
pub use tcp::{TcpCollective, TcpOptions};

/// Environment variable selecting the collective backend.
pub const ENV_BACKEND: &str = "SLT_DIST_BACKEND";
/// Environment variable with the collective timeout in seconds.
pub const ENV_TIMEOUT: &str = "SLT_DIST_TIMEOUT";
/// Environment variable with the IP address the TCP ring listens on.
pub const ENV_TCP_ADDR: &str = "SLT_TCP_ADDR";

/// A failure to set up the process group.
#[derive(Debug, thiserror::Error)]
pub enum DistError {
    /// The launcher's environment is incomplete or malformed.
    #[error(transparent)]
    Env(#[from] EnvError),
    /// The rendezvous store failed (unreachable, wrong token, timeout).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The first collective (the set-up barrier) failed.
    #[error(transparent)]
    Collective(#[from] CollectiveError),
    /// A socket could not be set up.
    #[error("{what}: {source}")]
    Setup {
        /// What was being done.
        what: String,
        /// The OS error.
        source: io::Error,
    },
    /// Inconsistent settings.
    #[error("{0}")]
    Config(String),
    /// The requested backend is not part of this build or cannot run here.
    #[error("collective backend {backend:?} is unavailable: {why}")]
    Unavailable {
        /// The backend asked for.
        backend: String,
        /// Why it cannot be used.
        why: String,
    },
}

/// The collective backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// World of one: no communication.
    Single,
    /// Ring over TCP (CPU).
    Tcp,
    /// MPI (cargo feature `mpi`).
    Mpi,
    /// NCCL (GPU).
    Nccl,
}

impl FromStr for Backend {
    type Err = DistError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tcp" => Ok(Self::Tcp),
            "mpi" => Ok(Self::Mpi),
            "nccl" => Ok(Self::Nccl),
            "single" => Ok(Self::Single),
            other => Err(DistError::Config(format!(
                "{ENV_BACKEND}={other:?}: expected tcp, mpi or nccl"
            ))),
        }
    }
}

/// Timeouts and addresses for [`init`].
#[derive(Clone, Debug, Default)]
pub struct InitOptions {
    /// Store client timeouts.
    pub store: ClientOptions,
    /// TCP backend settings.
    pub tcp: TcpOptions,
}

impl InitOptions {
    /// Defaults with SLT_DIST_TIMEOUT, SLT_TCP_ADDR, SLT_STORE_CONNECT_TIMEOUT and
    /// SLT_STORE_TIMEOUT applied.
    pub fn from_env() -> Result<Self, DistError> {
        let store = slt_launch::store::options_from_env().map_err(DistError::Config)?;
        let mut tcp = TcpOptions {
            setup_timeout: store.timeout,
            ..TcpOptions::default()
        };
        if let Ok(v) = std::env::var(ENV_TIMEOUT) {
            let secs: f64 = v.trim().parse().map_err(|e| {
                DistError::Config(format!(
                    "{ENV_TIMEOUT}={v:?} is not a number of seconds: {e}"
                ))
            })?;
            tcp.timeout = Duration::try_from_secs_f64(secs)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| {
                    DistError::Config(format!("{ENV_TIMEOUT}={v:?} must be a positive number"))
                })?;
        }
        if let Ok(v) = std::env::var(ENV_TCP_ADDR) {
            tcp.listen_ip = Some(v.trim().parse().map_err(|e| {
                DistError::Config(format!("{ENV_TCP_ADDR}={v:?} is not an IP address: {e}"))
            })?);
        }
        Ok(Self { store, tcp })
    }
}

/// This process's membership in the job: its environment, the collective backend and the
/// store connection (kept for later exchanges, e.g. of an NCCL id).
pub struct ProcessGroup {
    env: DistEnv,
    backend: Backend,
    collective: Box<dyn Collective>,
    store: Option<StoreClient>,
    /// The store rank 0 hosts when no launcher does (kept alive for the group's lifetime).
    _server: Option<StoreServer>,
}

impl std::fmt::Debug for ProcessGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProcessGroup")
            .field("env", &self.env)
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl ProcessGroup {
    /// A group of one process.
    pub fn single() -> Self {
        Self {
            env: DistEnv::single(),
            backend: Backend::Single,
            collective: Box::new(SingleProcess),
            store: None,
            _server: None,
        }
    }

    /// Global rank.
    pub fn rank(&self) -> usize {
        self.env.rank
    }

    /// Number of ranks.
    pub fn world_size(&self) -> usize {
        self.env.world_size
    }

    /// Rank on this node (selects the device).
    pub fn local_rank(&self) -> usize {
        self.env.local_rank
    }

    /// Whether this is rank 0 (the one that writes checkpoints and logs).
    pub fn is_main(&self) -> bool {
        self.env.rank == 0
    }

    /// The environment the group was built from.
    pub fn env(&self) -> &DistEnv {
        &self.env
    }

    /// The backend in use.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The collectives.
    pub fn collective(&mut self) -> &mut dyn Collective {
        self.collective.as_mut()
    }

    /// The store connection (none for a single process).
    pub fn store(&mut self) -> Option<&mut StoreClient> {
        self.store.as_mut()
    }
}

/// [`init`] with the process environment and [`InitOptions::from_env`].
pub fn init_from_env() -> Result<ProcessGroup, DistError> {
    init(DistEnv::from_env()?, &InitOptions::from_env()?)
}

/// Joins the process group described by `env`: a [`SingleProcess`] for a world of one,
/// otherwise connects to the store (hosting it on rank 0 when no launcher does) and builds the
/// backend named by `env.backend` (default `tcp`).
pub fn init(env: DistEnv, opts: &InitOptions) -> Result<ProcessGroup, DistError> {
    let requested = env.backend.as_deref().map(Backend::from_str).transpose()?;
    if env.world_size == 1 {
        return Ok(ProcessGroup {
            env,
            ..ProcessGroup::single()
        });
    }
    let default = if env.launcher == Launcher::Mpi && cfg!(feature = "mpi") {
        Backend::Mpi
    } else {
        Backend::Tcp
    };
    let backend = requested.unwrap_or(default);
    match backend {
        Backend::Tcp => {}
        Backend::Single => {
            return Err(DistError::Config(format!(
                "{ENV_BACKEND}=single, but the world has {} ranks",
                env.world_size
            )))
        }
        #[cfg(feature = "mpi")]
        Backend::Mpi => {
            let expected = (env.launcher != Launcher::Single).then_some((env.rank, env.world_size));
            let mpi = self::mpi::MpiCollective::init(expected)?;
            return Ok(ProcessGroup {
                env,
                backend,
                collective: Box::new(mpi),
                store: None,
                _server: None,
            });
        }
        #[cfg(not(feature = "mpi"))]
        Backend::Mpi => {
            return Err(DistError::Unavailable {
                backend: "mpi".into(),
                why: "this build of slt has no MPI support (rebuild with `--features mpi`); \
                      use tcp"
                    .into(),
            })
        }
        #[cfg(feature = "nccl")]
        Backend::Nccl => {
            // May re-execute the process (NCCL library shim), so before any connection.
            self::nccl::prepare()?;
            let (mut store, _token, server) = connect_store(&env, opts)?;
            let nccl_opts = self::nccl::NcclOptions {
                timeout: opts.tcp.timeout,
                id_key: "nccl/unique_id".into(),
            };
            let nccl = self::nccl::NcclCollective::connect(
                &mut store,
                env.rank,
                env.world_size,
                env.local_rank,
                &nccl_opts,
            )?;
            return Ok(ProcessGroup {
                env,
                backend,
                collective: Box::new(nccl),
                store: Some(store),
                _server: server,
            });
        }
        #[cfg(not(feature = "nccl"))]
        Backend::Nccl => {
            return Err(DistError::Unavailable {
                backend: "nccl".into(),
                why: "this build of slt has no NCCL support (rebuild with `--features nccl`); \
                      use tcp"
                    .into(),
            })
        }
    }
    let (mut store, token, server) = connect_store(&env, opts)?;
    let tcp = TcpCollective::connect(&mut store, env.rank, env.world_size, &token, &opts.tcp)?;
    Ok(ProcessGroup {
        env,
        backend,
        collective: Box::new(tcp),
        store: Some(store),
        _server: server,
    })
}

/// Connects to the launcher's store, or (no SLT_RUN_TOKEN: started by srun/mpirun) hosts it
/// on rank 0 at MASTER_PORT and connects the others to it.
fn connect_store(
    env: &DistEnv,
    opts: &InitOptions,
) -> Result<(StoreClient, String, Option<StoreServer>), DistError> {
    let addr = env.store_addr().ok_or_else(|| {
        DistError::Config(format!(
            "MASTER_PORT is not set: a {}-rank job started by {} needs MASTER_ADDR and \
             MASTER_PORT for the rendezvous store (or use slt-launch)",
            env.world_size, env.launcher
        ))
    })?;
    if let Some(token) = &env.run_token {
        let store = StoreClient::connect(&addr, token, opts.store)?;
        return Ok((store, token.clone(), None));
    }
    let token = slt_launch::store::attempt_token(&env.run_id, env.restart_count);
    let mut server = None;
    if env.rank == 0 {
        let port = env.master_port.unwrap_or(0);
        let ip = if is_loopback_host(&env.master_addr) {
            Ipv4Addr::LOCALHOST
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        let s = StoreServer::bind(SocketAddrV4::new(ip, port), &token).map_err(|source| {
            DistError::Setup {
                what: format!(
                    "rank 0 cannot host the rendezvous store on port {port} (MASTER_PORT; \
                     started by {}, no slt-launch store)",
                    env.launcher
                ),
                source,
            }
        })?;
        server = Some(s);
    }
    // Rank 0 too goes through MASTER_ADDR, so that its connection's local address (which the
    // TCP ring listens on) is the interface the other nodes reach.
    let store = StoreClient::connect(&addr, &token, opts.store)?;
    Ok((store, token, server))
}

fn is_loopback_host(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}
