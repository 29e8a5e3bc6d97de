//! `slt-launch`: starts one worker process per device on this node with torchrun's environment
//! contract, supervises them as one gang, and never leaves a worker behind.
//!
//! ```text
//! slt-launch --nproc-per-node 2 --log-dir runs/logs -- slt train --config cfg.yaml
//! slt-launch --nproc-per-node 8 --max-restarts 3 --backend nccl -- slt train --config cfg.yaml
//! ```
//!
//! Each worker gets RANK, LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR,
//! MASTER_PORT, TORCHELASTIC_RESTART_COUNT, TORCHELASTIC_MAX_RESTARTS, TORCHELASTIC_RUN_ID,
//! SLT_RUN_ID, SLT_RUN_TOKEN, SLT_DIST_BACKEND (with `--backend`) and OMP_NUM_THREADS (unless
//! already set). Node 0's launcher hosts the rendezvous store (`slt_launch::store`) on
//! MASTER_PORT before it starts any worker; SLT_RUN_TOKEN (`{run id}/{restart count}`) admits
//! the workers of the current attempt only.
//! When a worker fails, all workers are stopped (SIGTERM to each process group, SIGKILL after
//! the grace period) and either restarted (`--max-restarts`) or reported: the summary names the
//! first failing rank, its exit status and its last lines of output, and the launcher exits
//! with that worker's code (128 + signal for a signal).

mod logs;
mod port;
mod signals;
mod spawn;
mod status;
mod supervise;
mod watchdog;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};

use crate::logs::RankFilter;
use crate::spawn::GroupEnv;
use crate::supervise::{Agent, AgentConfig};

/// Collective backends a worker may be told to use (exported as SLT_DIST_BACKEND).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// Ring all-reduce over TCP (CPU).
    Tcp,
    /// MPI (when slt is built with the `mpi` feature).
    Mpi,
    /// NCCL (GPU).
    Nccl,
}

/// Start and supervise data-parallel workers on this node (torchrun's contract).
#[derive(Parser, Debug)]
#[command(
    name = "slt-launch",
    version,
    after_help = "Example:\n  slt-launch --nproc-per-node 2 --log-dir logs -- slt train --config cfg.yaml"
)]
struct Args {
    /// Number of workers to start on this node (one per device).
    #[arg(long, alias = "nproc_per_node", value_parser = clap::value_parser!(u32).range(1..))]
    nproc_per_node: u32,

    /// Number of nodes. With more than 1, every node needs the same `--master-addr` (node 0's
    /// address), `--master-port` and `--run-id`; node 0's launcher hosts the store.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    nnodes: u32,

    /// Rank of this node (exported as GROUP_RANK).
    #[arg(long, alias = "node_rank", default_value_t = 0)]
    node_rank: u32,

    /// Address of the rank-0 host (MASTER_ADDR).
    #[arg(long, alias = "master_addr", default_value = "127.0.0.1")]
    master_addr: String,

    /// Port of the rendezvous store hosted by node 0 (MASTER_PORT); omitted or 0: a free port
    /// is picked (single node only).
    #[arg(long, alias = "master_port")]
    master_port: Option<u16>,

    /// How many times the whole worker group is restarted after a failure.
    #[arg(long, alias = "max_restarts", default_value_t = 0)]
    max_restarts: u32,

    /// Directory for per-rank logs `rank{r}.log` (stdout and stderr).
    #[arg(long, alias = "log_dir")]
    log_dir: Option<PathBuf>,

    /// Ranks whose output is echoed to the console: `all`, `none`, or e.g. `0,2-3`.
    #[arg(
        long = "ranks-to-console",
        visible_alias = "tee",
        default_value = "all"
    )]
    ranks_to_console: RankFilter,

    /// Collective backend for the workers (exported as SLT_DIST_BACKEND).
    #[arg(long, value_enum)]
    backend: Option<Backend>,

    /// Seconds workers get to exit after SIGTERM before they are killed.
    #[arg(
        long,
        default_value = "5",
        value_parser = parse_seconds,
        value_name = "SECONDS",
        allow_negative_numbers = true
    )]
    grace_period: Duration,

    /// Run id (SLT_RUN_ID); default: a random one, the same for all restarts.
    #[arg(long, alias = "run_id")]
    run_id: Option<String>,

    /// The worker command and its arguments (after `--`).
    #[arg(required = true, trailing_var_arg = true, value_name = "COMMAND")]
    command: Vec<OsString>,
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|e| format!("{s:?} is not a number of seconds: {e}"))?;
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s:?} must be a finite number ≥ 0"))
}

impl Args {
    /// Checks what clap cannot: single-node limits, the rank list, the run id.
    fn validate(&self) -> Result<(), String> {
        if self.nnodes > 1 {
            let missing: Vec<&str> = [
                (self.master_port.is_none_or(|p| p == 0), "--master-port"),
                (self.run_id.is_none(), "--run-id"),
            ]
            .into_iter()
            .filter_map(|(miss, name)| miss.then_some(name))
            .collect();
            if !missing.is_empty() {
                return Err(format!(
                    "--nnodes {}: a multi-node launch needs {} on every node (the same values \
                     everywhere), so that the other nodes find node 0's rendezvous store",
                    self.nnodes,
                    missing.join(" and ")
                ));
            }
            if self.max_restarts > 0 {
                return Err(format!(
                    "--max-restarts {} with --nnodes {}: restarts are only coordinated within \
                     one node; use --max-restarts 0 for multi-node launches",
                    self.max_restarts, self.nnodes
                ));
            }
        }
        if self.node_rank >= self.nnodes {
            return Err(format!(
                "--node-rank {} must be smaller than --nnodes {}",
                self.node_rank, self.nnodes
            ));
        }
        let world = u64::from(self.nnodes) * u64::from(self.nproc_per_node);
        if let Some(max) = self.ranks_to_console.max_rank() {
            if u64::from(max) >= world {
                return Err(format!(
                    "--ranks-to-console {}: rank {max} does not exist (world size {world})",
                    self.ranks_to_console
                ));
            }
        }
        if self.master_addr.trim().is_empty() {
            return Err("--master-addr must not be empty".into());
        }
        if let Some(id) = &self.run_id {
            if id.is_empty() || id.chars().any(char::is_control) {
                return Err(format!(
                    "--run-id {id:?} must be non-empty, without control characters"
                ));
            }
        }
        Ok(())
    }

    /// The agent's configuration. Node 0 binds the rendezvous store's socket here (a busy
    /// `--master-port` is an error now, not a failing worker later).
    fn into_config(self) -> anyhow::Result<AgentConfig> {
        let store = if self.node_rank == 0 {
            let public = self.nnodes > 1 || !port::is_loopback(&self.master_addr);
            let listener = port::bind_store(self.master_port, public).map_err(|e| {
                let what = match self.master_port {
                    Some(p) if p != 0 => format!("--master-port {p}"),
                    _ => "a free port".to_string(),
                };
                let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
                    " (another launcher or a leftover worker holds it; omit --master-port to \
                     let slt-launch pick a free port)"
                } else {
                    ""
                };
                anyhow::anyhow!(
                    "cannot bind the rendezvous store to {what} on {}: {e}{hint}",
                    if public {
                        "all interfaces"
                    } else {
                        "127.0.0.1"
                    }
                )
            })?;
            Some(listener)
        } else {
            None
        };
        let master_port = match &store {
            Some(l) => l.local_addr()?.port(),
            None => self.master_port.unwrap_or(0),
        };
        let env = GroupEnv {
            local_world_size: self.nproc_per_node,
            nnodes: self.nnodes,
            node_rank: self.node_rank,
            master_addr: self.master_addr,
            master_port,
            restart_count: 0,
            max_restarts: self.max_restarts,
            run_id: self.run_id.unwrap_or_else(random_run_id),
            backend: self
                .backend
                .and_then(|b| b.to_possible_value())
                .map(|v| v.get_name().to_string()),
            omp_num_threads: omp_num_threads(self.nproc_per_node),
        };
        Ok(AgentConfig {
            command: self.command,
            env,
            store,
            log_dir: self.log_dir,
            console: self.ranks_to_console,
            grace_period: self.grace_period,
        })
    }
}

/// OMP_NUM_THREADS for the workers, when the environment does not set it: the cores this
/// process may use, shared evenly, at least 1. Prints a note, as torchrun does.
fn omp_num_threads(nproc: u32) -> Option<usize> {
    if std::env::var_os("OMP_NUM_THREADS").is_some() {
        return None;
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = (cores / nproc as usize).max(1);
    logs::say(format_args!(
        "OMP_NUM_THREADS is not set; setting it to {threads} for each worker \
         ({cores} cores / {nproc} workers) to avoid oversubscription. Set it to tune."
    ));
    Some(threads)
}

/// 16 random hex digits from the OS (falling back to a randomly keyed hash of time and pid).
fn random_run_id() -> String {
    use std::io::Read;
    let mut bytes = [0u8; 8];
    let from_os = std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    let n = match from_os {
        Ok(()) => u64::from_le_bytes(bytes),
        Err(_) => {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::hash::RandomState::new().build_hasher();
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
            h.write_u128(now.map_or(0, |d| d.as_nanos()));
            h.write_u32(std::process::id());
            h.finish()
        }
    };
    format!("{n:016x}")
}

fn main() -> ExitCode {
    if std::env::args_os()
        .nth(1)
        .is_some_and(|a| a == watchdog::ARG)
    {
        return exit_code(watchdog::run());
    }
    let args = Args::parse();
    if let Err(msg) = args.validate() {
        Args::command()
            .error(ErrorKind::ValueValidation, msg)
            .exit();
    }
    let code = match args.into_config().and_then(Agent::new) {
        Ok(agent) => agent.run(),
        Err(e) => {
            logs::say(format_args!("error: {e:#}"));
            1
        }
    };
    exit_code(code)
}

/// Exit codes outside 0..=255 cannot be returned by a process; they become 1.
fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Args, String> {
        let argv = std::iter::once("slt-launch").chain(args.iter().copied());
        let args = Args::try_parse_from(argv).map_err(|e| e.to_string())?;
        args.validate()?;
        Ok(args)
    }

    #[test]
    fn defaults_and_trailing_command() {
        let a = parse(&["--nproc-per-node", "2", "--", "sh", "-c", "echo --x"]).expect("valid");
        assert_eq!(a.nnodes, 1);
        assert_eq!(a.master_addr, "127.0.0.1");
        assert_eq!(a.master_port, None);
        assert_eq!(a.grace_period, Duration::from_secs(5));
        assert_eq!(a.ranks_to_console, RankFilter::All);
        assert_eq!(a.command, ["sh", "-c", "echo --x"].map(OsString::from));
        // torchrun spelling, and no `--` before the command.
        let b = parse(&["--nproc_per_node=3", "--tee", "0", "python", "-u", "t.py"]).expect("ok");
        assert_eq!(b.nproc_per_node, 3);
        assert_eq!(b.command.len(), 3);
    }

    #[test]
    fn rejects_bad_values() {
        let err = |a: &[&str]| parse(a).expect_err("must be rejected");
        assert!(err(&["--nproc-per-node", "0", "--", "x"]).contains("nproc-per-node"));
        assert!(err(&["--nproc-per-node", "1"]).contains("COMMAND"));
        let multi = err(&["--nproc-per-node", "1", "--nnodes", "2", "--", "x"]);
        assert!(
            multi.contains("needs --master-port and --run-id"),
            "{multi}"
        );
        let multi = err(&[
            "--nproc-per-node",
            "1",
            "--nnodes",
            "2",
            "--master-port",
            "29400",
            "--run-id",
            "r",
            "--max-restarts",
            "1",
            "--",
            "x",
        ]);
        assert!(multi.contains("--max-restarts 0"), "{multi}");
        parse(&[
            "--nproc-per-node",
            "1",
            "--nnodes",
            "2",
            "--node-rank",
            "1",
            "--master-port",
            "29400",
            "--run-id",
            "r",
            "--",
            "x",
        ])
        .expect("a complete multi-node command line");
        assert!(
            err(&["--nproc-per-node", "1", "--node-rank", "1", "--", "x"]).contains("node-rank")
        );
        assert!(err(&["--nproc-per-node", "2", "--tee", "2", "--", "x"]).contains("rank 2"));
        assert!(err(&["--nproc-per-node", "1", "--grace-period", "-1", "--", "x"]).contains("≥ 0"));
        assert!(err(&["--nproc-per-node", "1", "--backend", "gloo", "--", "x"]).contains("gloo"));
        assert!(err(&["--nproc-per-node", "1", "--run-id", "", "--", "x"]).contains("run-id"));
    }

    #[test]
    fn run_ids_are_random_hex() {
        let (a, b) = (random_run_id(), random_run_id());
        assert_eq!(a.len(), 16);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
