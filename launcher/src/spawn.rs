//! Starting one worker: the torchrun environment contract, its own process group, death with
//! the launcher (`PR_SET_PDEATHSIG`), piped output and a waiter thread that reports its exit.

use std::ffi::OsString;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread;

use slt_launch::store::{attempt_token, ENV_TOKEN};

use crate::logs::{RankLog, Reader, Stream};
use crate::signals::signal_group;

/// The environment shared by all workers of one attempt; [`GroupEnv::for_local_rank`] adds the
/// per-worker part.
#[derive(Clone, Debug)]
pub struct GroupEnv {
    /// Workers on this node (`--nproc-per-node`).
    pub local_world_size: u32,
    /// Number of nodes (`--nnodes`).
    pub nnodes: u32,
    /// This node's rank (`--node-rank`), exported as GROUP_RANK.
    pub node_rank: u32,
    /// MASTER_ADDR.
    pub master_addr: String,
    /// MASTER_PORT.
    pub master_port: u16,
    /// TORCHELASTIC_RESTART_COUNT: 0 for the first attempt.
    pub restart_count: u32,
    /// TORCHELASTIC_MAX_RESTARTS.
    pub max_restarts: u32,
    /// SLT_RUN_ID (and TORCHELASTIC_RUN_ID), stable across restarts.
    pub run_id: String,
    /// SLT_DIST_BACKEND, when `--backend` was given.
    pub backend: Option<String>,
    /// OMP_NUM_THREADS to set, when the launcher's environment does not set it.
    pub omp_num_threads: Option<usize>,
}

impl GroupEnv {
    /// Global world size.
    pub fn world_size(&self) -> u32 {
        self.nnodes * self.local_world_size
    }

    /// Global rank of `local_rank` on this node.
    pub fn rank(&self, local_rank: u32) -> u32 {
        self.node_rank * self.local_world_size + local_rank
    }

    /// The rendezvous store's token for this attempt (exported as SLT_RUN_TOKEN).
    pub fn run_token(&self) -> String {
        attempt_token(&self.run_id, self.restart_count)
    }

    /// The variables exported to the worker with `local_rank` (on top of the launcher's own
    /// environment, which workers inherit).
    pub fn for_local_rank(&self, local_rank: u32) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("RANK", self.rank(local_rank).to_string()),
            ("LOCAL_RANK", local_rank.to_string()),
            ("WORLD_SIZE", self.world_size().to_string()),
            ("LOCAL_WORLD_SIZE", self.local_world_size.to_string()),
            ("GROUP_RANK", self.node_rank.to_string()),
            ("MASTER_ADDR", self.master_addr.clone()),
            ("MASTER_PORT", self.master_port.to_string()),
            ("TORCHELASTIC_RESTART_COUNT", self.restart_count.to_string()),
            ("TORCHELASTIC_MAX_RESTARTS", self.max_restarts.to_string()),
            ("TORCHELASTIC_RUN_ID", self.run_id.clone()),
            ("SLT_RUN_ID", self.run_id.clone()),
            (ENV_TOKEN, self.run_token()),
        ];
        if let Some(backend) = &self.backend {
            env.push(("SLT_DIST_BACKEND", backend.clone()));
        }
        if let Some(n) = self.omp_num_threads {
            env.push(("OMP_NUM_THREADS", n.to_string()));
        }
        env
    }
}

/// Why a worker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// The command is empty.
    #[error("no worker command given")]
    EmptyCommand,
    /// `fork`/`exec` failed (command not found, not executable, …).
    #[error("cannot start rank {rank}: {program}: {source}")]
    Exec {
        /// The rank that failed to start.
        rank: u32,
        /// The program, as given.
        program: String,
        /// The OS error.
        source: io::Error,
    },
    /// A reader or waiter thread could not be created.
    #[error("cannot start the supervision threads of rank {rank}: {source}")]
    Thread {
        /// The rank concerned.
        rank: u32,
        /// The OS error.
        source: io::Error,
    },
}

impl SpawnError {
    /// The launcher's exit code for this error, as a shell would report it: 127 when the
    /// program does not exist, 126 when it cannot be executed, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Exec { source, .. } => match source.kind() {
                io::ErrorKind::NotFound => 127,
                io::ErrorKind::PermissionDenied => 126,
                _ => 1,
            },
            _ => 1,
        }
    }
}

/// A started worker. Its process id is also its process-group id.
pub struct Worker {
    /// Global rank.
    pub rank: u32,
    /// Process id (= process-group id).
    pub pid: u32,
    /// Reader threads of stdout and stderr.
    pub readers: Vec<Reader>,
}

impl Worker {
    /// The worker's process-group id.
    pub fn pgid(&self) -> i32 {
        // Process ids are positive and below 2^22 on Linux, so this cannot wrap.
        self.pid as i32
    }
}

/// Starts `command` as the worker `local_rank` with the environment of `group`.
///
/// The child is placed in its own process group (so the launcher can signal it and everything
/// it forks, and a terminal's Ctrl-C reaches only the launcher, which forwards it once), gets
/// `PR_SET_PDEATHSIG = SIGKILL`, has stdin closed and stdout/stderr piped to reader threads
/// that feed `log`. When the worker exits, `on_exit` is called on its waiter thread with the
/// status.
///
/// With `watchdog_fd` (the write end of the watchdog's pipe, see watchdog.rs) the child
/// registers its own process group there before it execs, so no process of the worker can
/// ever run unregistered: a registration written by the launcher after `spawn` returns could
/// come too late if the launcher is SIGKILLed in between.
///
/// Must be called from a thread that outlives the worker (the launcher's main thread): the
/// kernel sends the parent-death signal when the *thread* that forked the child exits.
pub fn spawn_worker(
    command: &[OsString],
    group: &GroupEnv,
    local_rank: u32,
    log: Arc<RankLog>,
    watchdog_fd: Option<RawFd>,
    on_exit: impl FnOnce(io::Result<ExitStatus>) + Send + 'static,
) -> Result<Worker, SpawnError> {
    let rank = group.rank(local_rank);
    let (program, args) = command.split_first().ok_or(SpawnError::EmptyCommand)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .envs(group.for_local_rank(local_rank))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // operations are allowed. It calls prctl(2), getppid(2), getpid(2), signal(2) and write(2),
    // which are plain system calls, formats into a stack buffer, and builds io::Error values
    // from raw OS error codes, which does not allocate. It takes no locks and touches no memory
    // shared with other threads of the launcher. `watchdog_fd` stays open in the child until
    // exec (the launcher keeps it open while it spawns; it is close-on-exec).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(
                libc::PR_SET_PDEATHSIG,
                libc::SIGKILL as libc::c_ulong,
                0,
                0,
                0,
            ) != 0
            {
                return Err(io::Error::last_os_error());
            }
            // If the launcher died between fork and prctl, the signal was never armed and we
            // have been re-parented: do not exec a worker nobody supervises.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            if let Some(fd) = watchdog_fd {
                let mut buf = [0u8; 16];
                let len = registration_line(libc::getpid(), &mut buf);
                // A vanished watchdog must not kill the worker with SIGPIPE: ignore it for
                // this one write (an ignored signal is discarded, not left pending).
                let old = libc::signal(libc::SIGPIPE, libc::SIG_IGN);
                // One write of < PIPE_BUF bytes: atomic with respect to other writers.
                libc::write(fd, buf.as_ptr().cast(), len);
                libc::signal(libc::SIGPIPE, old);
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|source| SpawnError::Exec {
        rank,
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    let pid = child.id();
    // Without its threads the worker cannot be supervised: kill its group before reporting.
    let abandon = |source| {
        let _ = signal_group(pid as i32, libc::SIGKILL);
        SpawnError::Thread { rank, source }
    };
    let mut readers = Vec::with_capacity(2);
    if let Some(out) = child.stdout.take() {
        readers.push(Reader::spawn(out, Stream::Stdout, Arc::clone(&log)).map_err(abandon)?);
    }
    if let Some(err) = child.stderr.take() {
        readers.push(Reader::spawn(err, Stream::Stderr, log).map_err(abandon)?);
    }
    thread::Builder::new()
        .name(format!("slt-launch-wait{rank}"))
        .spawn(move || on_exit(child.wait()))
        .map_err(abandon)?;
    Ok(Worker { rank, pid, readers })
}

/// Formats `+PID\n` into `buf` without allocating (it runs between fork and exec); returns
/// the length.
fn registration_line(pid: libc::pid_t, buf: &mut [u8; 16]) -> usize {
    let mut digits = [0u8; 12];
    let mut n = pid.unsigned_abs();
    let mut len = 0;
    loop {
        digits[len] = b'0' + (n % 10) as u8;
        len += 1;
        n /= 10;
        if n == 0 || len == digits.len() {
            break;
        }
    }
    buf[0] = b'+';
    for i in 0..len {
        buf[1 + i] = digits[len - 1 - i];
    }
    buf[1 + len] = b'\n';
    len + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group() -> GroupEnv {
        GroupEnv {
            local_world_size: 4,
            nnodes: 2,
            node_rank: 1,
            master_addr: "10.0.0.1".into(),
            master_port: 29500,
            restart_count: 2,
            max_restarts: 3,
            run_id: "abc".into(),
            backend: Some("nccl".into()),
            omp_num_threads: Some(7),
        }
    }

    #[test]
    fn env_contract_matches_torchrun() {
        let env: std::collections::HashMap<_, _> = group().for_local_rank(3).into_iter().collect();
        let get = |k: &str| env.get(k).map(String::as_str);
        assert_eq!(get("RANK"), Some("7"));
        assert_eq!(get("LOCAL_RANK"), Some("3"));
        assert_eq!(get("WORLD_SIZE"), Some("8"));
        assert_eq!(get("LOCAL_WORLD_SIZE"), Some("4"));
        assert_eq!(get("GROUP_RANK"), Some("1"));
        assert_eq!(get("MASTER_ADDR"), Some("10.0.0.1"));
        assert_eq!(get("MASTER_PORT"), Some("29500"));
        assert_eq!(get("TORCHELASTIC_RESTART_COUNT"), Some("2"));
        assert_eq!(get("SLT_RUN_ID"), Some("abc"));
        assert_eq!(get("SLT_RUN_TOKEN"), Some("abc/2"));
        assert_eq!(get("SLT_DIST_BACKEND"), Some("nccl"));
        assert_eq!(get("OMP_NUM_THREADS"), Some("7"));
        let mut g = group();
        g.backend = None;
        g.omp_num_threads = None;
        let keys: Vec<_> = g.for_local_rank(0).into_iter().map(|(k, _)| k).collect();
        assert!(!keys.contains(&"SLT_DIST_BACKEND") && !keys.contains(&"OMP_NUM_THREADS"));
    }

    #[test]
    fn registration_lines() {
        let mut buf = [0u8; 16];
        for (pid, text) in [(0, "+0\n"), (7, "+7\n"), (4194304, "+4194304\n")] {
            let len = registration_line(pid, &mut buf);
            assert_eq!(&buf[..len], text.as_bytes());
        }
        let len = registration_line(libc::pid_t::MAX, &mut buf);
        assert_eq!(&buf[..len], format!("+{}\n", libc::pid_t::MAX).as_bytes());
    }

    #[test]
    fn missing_program_is_127() {
        let log = RankLog::open(0, None, false).expect("log");
        let cmd = vec![OsString::from("/nonexistent/slt-worker")];
        let err = spawn_worker(&cmd, &group(), 0, log, None, |_| {})
            .err()
            .expect("spawn must fail");
        assert_eq!(err.exit_code(), 127);
        assert!(err.to_string().contains("/nonexistent/slt-worker"), "{err}");
        assert!(matches!(
            spawn_worker(
                &[],
                &group(),
                0,
                RankLog::open(0, None, false).expect("log"),
                None,
                |_| {}
            ),
            Err(SpawnError::EmptyCommand)
        ));
    }

    #[test]
    fn worker_runs_in_own_group_and_reports_exit() {
        let log = RankLog::open(0, None, false).expect("log");
        let (tx, rx) = std::sync::mpsc::channel();
        let cmd: Vec<OsString> = [
            "sh",
            "-c",
            "echo pgid=$(cut -d' ' -f5 /proc/$$/stat); exit 4",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let w = spawn_worker(&cmd, &group(), 0, Arc::clone(&log), None, move |s| {
            let _ = tx.send(s.map(crate::status::WorkerExit::from_status).ok());
        })
        .expect("spawn");
        let exit = rx
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("exit");
        assert_eq!(exit, Some(crate::status::WorkerExit::Code(4)));
        assert!(crate::logs::wait_readers(
            &w.readers,
            std::time::Duration::from_secs(20)
        ));
        assert_eq!(log.tail(), vec![format!("pgid={}", w.pid)]);
    }
}
