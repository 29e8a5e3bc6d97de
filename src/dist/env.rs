//! Who am I in the job: rank, world size, node and rendezvous address, read from the
//! environment of whatever started the process.
//!
//! Sources, in order of precedence:
//! 1. `slt-launch` or torchrun: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK,
//!    MASTER_ADDR, MASTER_PORT, TORCHELASTIC_RESTART_COUNT, SLT_RUN_ID/TORCHELASTIC_RUN_ID,
//!    SLT_RUN_TOKEN (set only by slt-launch, whose store then already runs).
//! 2. `srun` (a SLURM job step): SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_LOCALID,
//!    SLURM_NODEID, SLURM_STEP_TASKS_PER_NODE; MASTER_ADDR defaults to the first host of the
//!    step's node list and MASTER_PORT to `15000 + job id % 10000` (Lightning's rule). Only
//!    job steps count (SLURM_STEP_NUM_TASKS): a batch script that runs `slt` directly is a
//!    single process, not rank 0 of a world that never comes.
//! 3. `mpirun`: OMPI_COMM_WORLD_* (Open MPI) or PMI_RANK/PMI_SIZE (MPICH's hydra).
//! 4. Nothing: a single process.
//!
//! Every error names the variable and its value.

use std::fmt;

/// What started this process.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Launcher {
    /// Nothing: one process.
    Single,
    /// `slt-launch` (or torchrun): the torchrun variables.
    Torchrun,
    /// A SLURM job step (`srun`).
    Slurm,
    /// `mpirun` (Open MPI or MPICH).
    Mpi,
}

impl fmt::Display for Launcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Single => "single process",
            Self::Torchrun => "slt-launch/torchrun",
            Self::Slurm => "srun",
            Self::Mpi => "mpirun",
        })
    }
}

/// A variable that is missing or malformed.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// A variable the detected launcher always sets is missing.
    #[error("{launcher} environment: {var} is not set (it is needed together with {with})")]
    Missing {
        /// The launcher whose variables were found.
        launcher: Launcher,
        /// The missing variable.
        var: &'static str,
        /// The variable whose presence selected this launcher.
        with: &'static str,
    },
    /// A variable does not hold what it should.
    #[error("{var}={value:?}: {expected}")]
    Invalid {
        /// The variable.
        var: &'static str,
        /// Its value.
        value: String,
        /// What was expected.
        expected: String,
    },
}

/// The process's place in the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DistEnv {
    /// Global rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
    /// Rank on this node (selects the GPU).
    pub local_rank: usize,
    /// Processes on this node.
    pub local_world_size: usize,
    /// This node's index (GROUP_RANK, SLURM_NODEID).
    pub node_rank: usize,
    /// Host of the rendezvous store (rank 0's node).
    pub master_addr: String,
    /// Port of the rendezvous store, when known.
    pub master_port: Option<u16>,
    /// Run id, the same on all ranks and across restarts.
    pub run_id: String,
    /// Restart count (0 for the first attempt).
    pub restart_count: u32,
    /// SLT_RUN_TOKEN: set when slt-launch hosts the store.
    pub run_token: Option<String>,
    /// SLT_DIST_BACKEND as given (`tcp`, `mpi`, `nccl`), if set.
    pub backend: Option<String>,
    /// What started the process.
    pub launcher: Launcher,
}

impl DistEnv {
    /// A single process (rank 0 of 1).
    pub fn single() -> Self {
        Self {
            rank: 0,
            world_size: 1,
            local_rank: 0,
            local_world_size: 1,
            node_rank: 0,
            master_addr: "127.0.0.1".into(),
            master_port: None,
            run_id: "single".into(),
            restart_count: 0,
            run_token: None,
            backend: None,
            launcher: Launcher::Single,
        }
    }

    /// Reads the process environment.
    pub fn from_env() -> Result<Self, EnvError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the variables through `get` (for tests and embedding).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, EnvError> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let mut env = if get("RANK").is_some() || get("WORLD_SIZE").is_some() {
            torchrun(&get)?
        } else if get("SLURM_STEP_NUM_TASKS").is_some() && get("SLURM_PROCID").is_some() {
            slurm(&get)?
        } else if get("OMPI_COMM_WORLD_SIZE").is_some() || get("PMI_SIZE").is_some() {
            mpi(&get)?
        } else {
            Self::single()
        };
        env.backend = get("SLT_DIST_BACKEND").map(|b| b.trim().to_ascii_lowercase());
        if env.rank >= env.world_size {
            return Err(EnvError::Invalid {
                var: "RANK",
                value: env.rank.to_string(),
                expected: format!("a rank below the world size {}", env.world_size),
            });
        }
        if env.local_rank >= env.local_world_size {
            return Err(EnvError::Invalid {
                var: "LOCAL_RANK",
                value: env.local_rank.to_string(),
                expected: format!(
                    "a local rank below the local world size {}",
                    env.local_world_size
                ),
            });
        }
        Ok(env)
    }

    /// Whether more than one process takes part.
    pub fn is_distributed(&self) -> bool {
        self.world_size > 1
    }

    /// `host:port` of the rendezvous store, when the port is known.
    pub fn store_addr(&self) -> Option<String> {
        self.master_port
            .map(|p| slt_launch::store::join_host_port(&self.master_addr, p))
    }
}

type Get<'a> = &'a dyn Fn(&str) -> Option<String>;

fn parse<T: std::str::FromStr>(var: &'static str, value: &str, what: &str) -> Result<T, EnvError>
where
    T::Err: fmt::Display,
{
    value.trim().parse().map_err(|e| EnvError::Invalid {
        var,
        value: value.to_string(),
        expected: format!("{what} ({e})"),
    })
}

fn required(
    get: Get<'_>,
    launcher: Launcher,
    var: &'static str,
    with: &'static str,
) -> Result<usize, EnvError> {
    let v = get(var).ok_or(EnvError::Missing {
        launcher,
        var,
        with,
    })?;
    parse(var, &v, "a non-negative integer")
}

fn optional(get: Get<'_>, var: &'static str, default: usize) -> Result<usize, EnvError> {
    get(var).map_or(Ok(default), |v| parse(var, &v, "a non-negative integer"))
}

fn port(get: Get<'_>) -> Result<Option<u16>, EnvError> {
    get("MASTER_PORT")
        .map(|v| parse("MASTER_PORT", &v, "a TCP port number"))
        .transpose()
}

fn positive_world(var: &'static str, n: usize) -> Result<usize, EnvError> {
    if n == 0 {
        return Err(EnvError::Invalid {
            var,
            value: "0".into(),
            expected: "a world size of at least 1".into(),
        });
    }
    Ok(n)
}

fn torchrun(get: Get<'_>) -> Result<DistEnv, EnvError> {
    let l = Launcher::Torchrun;
    let rank = required(get, l, "RANK", "WORLD_SIZE")?;
    let world = positive_world("WORLD_SIZE", required(get, l, "WORLD_SIZE", "RANK")?)?;
    let local_rank = optional(get, "LOCAL_RANK", rank)?;
    let local_world = optional(get, "LOCAL_WORLD_SIZE", world)?;
    Ok(DistEnv {
        rank,
        world_size: world,
        local_rank,
        local_world_size: positive_world("LOCAL_WORLD_SIZE", local_world)?,
        node_rank: optional(get, "GROUP_RANK", 0)?,
        master_addr: get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
        master_port: port(get)?,
        run_id: get("SLT_RUN_ID")
            .or_else(|| get("TORCHELASTIC_RUN_ID"))
            .unwrap_or_else(|| "none".into()),
        restart_count: optional(get, "TORCHELASTIC_RESTART_COUNT", 0)? as u32,
        run_token: get(slt_launch::store::ENV_TOKEN),
        backend: None,
        launcher: l,
    })
}

fn slurm(get: Get<'_>) -> Result<DistEnv, EnvError> {
    let l = Launcher::Slurm;
    let rank = required(get, l, "SLURM_PROCID", "SLURM_STEP_NUM_TASKS")?;
    let world = positive_world(
        "SLURM_STEP_NUM_TASKS",
        required(get, l, "SLURM_STEP_NUM_TASKS", "SLURM_PROCID")?,
    )?;
    let local_world = match get("SLURM_STEP_TASKS_PER_NODE") {
        // "2(x3),1": the count of the first node; nodes are filled in order, and the local
        // world size only sizes per-node resources.
        Some(v) => {
            let first = v.split([',', '(']).next().unwrap_or("");
            parse(
                "SLURM_STEP_TASKS_PER_NODE",
                first,
                "a task count like 2(x3)",
            )?
        }
        None => world,
    };
    let job = get("SLURM_JOB_ID").unwrap_or_else(|| "0".into());
    let step = get("SLURM_STEP_ID").unwrap_or_else(|| "0".into());
    let master_addr = match get("MASTER_ADDR") {
        Some(a) => a,
        None => {
            let list = get("SLURM_STEP_NODELIST")
                .or_else(|| get("SLURM_JOB_NODELIST"))
                .ok_or(EnvError::Missing {
                    launcher: l,
                    var: "SLURM_STEP_NODELIST",
                    with: "SLURM_PROCID (or set MASTER_ADDR)",
                })?;
            first_host(&list).ok_or_else(|| EnvError::Invalid {
                var: "SLURM_STEP_NODELIST",
                value: list.clone(),
                expected: "a SLURM node list like node[01-04],gpu7".into(),
            })?
        }
    };
    let master_port = match port(get)? {
        Some(p) => Some(p),
        None => {
            let id: u64 = parse("SLURM_JOB_ID", &job, "a job id")?;
            Some(15000 + (id % 10000) as u16)
        }
    };
    Ok(DistEnv {
        rank,
        world_size: world,
        local_rank: optional(get, "SLURM_LOCALID", 0)?,
        local_world_size: positive_world("SLURM_STEP_TASKS_PER_NODE", local_world)?,
        node_rank: optional(get, "SLURM_NODEID", 0)?,
        master_addr,
        master_port,
        run_id: format!("slurm-{job}.{step}"),
        restart_count: optional(get, "SLURM_RESTART_COUNT", 0)? as u32,
        run_token: None,
        backend: None,
        launcher: l,
    })
}

fn mpi(get: Get<'_>) -> Result<DistEnv, EnvError> {
    let l = Launcher::Mpi;
    let (rank, world, local_rank, local_world) = if get("OMPI_COMM_WORLD_SIZE").is_some() {
        let world = required(get, l, "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK")?;
        (
            required(get, l, "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE")?,
            world,
            optional(get, "OMPI_COMM_WORLD_LOCAL_RANK", 0)?,
            optional(get, "OMPI_COMM_WORLD_LOCAL_SIZE", world)?,
        )
    } else {
        let world = required(get, l, "PMI_SIZE", "PMI_RANK")?;
        (
            required(get, l, "PMI_RANK", "PMI_SIZE")?,
            world,
            optional(get, "MPI_LOCALRANKID", 0)?,
            optional(get, "MPI_LOCALNRANKS", world)?,
        )
    };
    Ok(DistEnv {
        rank,
        world_size: positive_world("MPI world size", world)?,
        local_rank,
        local_world_size: positive_world("MPI local world size", local_world)?,
        node_rank: 0,
        master_addr: get("MASTER_ADDR").unwrap_or_else(|| "127.0.0.1".into()),
        master_port: port(get)?,
        run_id: get("SLT_RUN_ID").unwrap_or_else(|| "mpi".into()),
        restart_count: 0,
        run_token: None,
        backend: None,
        launcher: l,
    })
}

/// The first host of a SLURM node list: `gpu[07-09,12],cpu1` → `gpu07`.
pub fn first_host(list: &str) -> Option<String> {
    let list = list.trim();
    let end = list
        .char_indices()
        .find(|&(_, c)| c == ',' || c == '[')
        .map_or(list.len(), |(i, _)| i);
    let prefix = &list[..end];
    if list[end..].starts_with('[') {
        let inner = &list[end + 1..];
        let first = inner.split([',', '-', ']']).next()?;
        if first.is_empty() || !first.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        return Some(format!("{prefix}{first}"));
    }
    (!prefix.is_empty()).then(|| prefix.to_string())
}

#[cfg(test)]
mod tests;
