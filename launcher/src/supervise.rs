//! The agent: a small state machine modelled on torch.distributed.elastic's
//! `SimpleElasticAgent` (INIT → HEALTHY → FAILED/SUCCEEDED → restart).
//!
//! ```text
//!   INIT ──spawn──▶ HEALTHY ──all exit 0──▶ SUCCEEDED ──▶ exit 0
//!    ▲                │  │
//!    │ restarts left  │  └─SIGINT/SIGTERM──▶ STOPPING ──▶ exit 128+sig
//!    └──── FAILED ◀───┘ first non-zero exit or signal death
//!            └─ no restarts left ──▶ summary, exit with the first failure's code
//! ```
//!
//! The agent is event driven: each worker has a waiter thread that reports its exit, and the
//! signal listener reports signals, on one channel. Exits are therefore seen in the order the
//! kernel reported them, which is what makes "first failing rank" meaningful when one crash
//! makes its peers fail a moment later. Stopping a group is always the same: a signal to every
//! worker's process group, up to `--grace-period` for them to exit, then SIGKILL.

use std::ffi::OsString;
use std::path::PathBuf;
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use libc::c_int;

use slt_launch::store::{self, join_host_port, StoreClient, StoreServer};

use crate::logs::{self, RankFilter, RankLog};
use crate::signals::{self, is_stop_signal, live_groups, signal_group, signal_name};
use crate::spawn::{spawn_worker, GroupEnv, Worker};
use crate::status::{Failure, Summary, WorkerExit};
use crate::watchdog::Watchdog;

/// How long to wait for a worker to be reaped after SIGKILL before giving up on it.
const REAP_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for the last output of exited workers to be read.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// Polling period while waiting for process groups to empty.
const POLL: Duration = Duration::from_millis(50);

/// Everything the agent needs; built by `main` from the command line.
pub struct AgentConfig {
    /// The worker command line.
    pub command: Vec<OsString>,
    /// Shared worker environment (its restart count is set by the agent).
    pub env: GroupEnv,
    /// The bound socket of the rendezvous store this launcher hosts (node 0); `None` when
    /// another node's launcher hosts it at MASTER_ADDR:MASTER_PORT.
    pub store: Option<std::net::TcpListener>,
    /// `--log-dir`.
    pub log_dir: Option<PathBuf>,
    /// `--ranks-to-console`.
    pub console: RankFilter,
    /// `--grace-period`.
    pub grace_period: Duration,
}

/// A message to the agent.
enum Event {
    /// A worker of attempt `restart_count` ended.
    Exited {
        restart_count: u32,
        local_rank: u32,
        exit: WorkerExit,
        at: Instant,
    },
    /// The launcher received a signal.
    Signal(c_int),
}

/// The agent's state (torch.distributed.elastic's `WorkerState`, plus the data each carries).
enum State {
    /// About to start attempt `restart_count`.
    Init,
    /// Workers are running.
    Healthy,
    /// A worker failed; the group must be stopped, then restarted or given up.
    Failed(Failure),
    /// Every worker exited 0.
    Succeeded,
    /// The launcher was told to stop by this signal.
    Stopping(c_int),
}

/// One worker as the agent tracks it.
struct Slot {
    worker: Worker,
    exit: Option<WorkerExit>,
    /// The last signal the launcher sent to this worker's group.
    sent: Option<c_int>,
}

/// The workers of one attempt.
struct Group {
    restart_count: u32,
    started: Instant,
    slots: Vec<Slot>,
}

impl Group {
    fn all_exited(&self) -> bool {
        self.slots.iter().all(|s| s.exit.is_some())
    }

    fn pgids(&self) -> Vec<i32> {
        self.slots.iter().map(|s| s.worker.pgid()).collect()
    }

    /// Slots whose process group still has live members.
    fn live(&self) -> Vec<usize> {
        let alive = live_groups(&self.pgids());
        (0..self.slots.len()).filter(|&i| alive[i]).collect()
    }

    /// Every worker reaped and every process group empty.
    fn all_gone(&self) -> bool {
        self.all_exited() && self.live().is_empty()
    }

    /// Sends `sig` to every live process group; returns the ranks signalled.
    fn signal(&mut self, sig: c_int) -> Vec<u32> {
        let mut ranks = Vec::new();
        for i in self.live() {
            let slot = &mut self.slots[i];
            match signal_group(slot.worker.pgid(), sig) {
                Ok(true) => {
                    slot.sent = Some(sig);
                    ranks.push(slot.worker.rank);
                }
                Ok(false) => {}
                Err(e) => logs::say(format_args!(
                    "cannot send {} to rank {}: {e}",
                    signal_name(sig),
                    slot.worker.rank
                )),
            }
        }
        ranks
    }

    /// How each rank other than `except` ended, for the summary.
    fn describe_others(&self, except: u32) -> Vec<(u32, String)> {
        let slots = self.slots.iter().filter(|s| s.worker.rank != except);
        slots.map(|s| (s.worker.rank, s.describe())).collect()
    }
}

impl Slot {
    /// How the worker ended, and whether the launcher's signal did it.
    fn describe(&self) -> String {
        match (&self.exit, self.sent) {
            (None, _) => "still running (did not exit after SIGKILL)".to_string(),
            (Some(e @ WorkerExit::Signal { signo, .. }), Some(sig)) if *signo == sig => {
                format!("{e}, sent by slt-launch")
            }
            (Some(e), Some(sig)) => format!("{e} after slt-launch sent {}", signal_name(sig)),
            (Some(e), None) => e.to_string(),
        }
    }
}

/// The launcher's supervisor for one launch (all attempts).
pub struct Agent {
    cfg: AgentConfig,
    store: Option<StoreServer>,
    logs: Vec<Arc<RankLog>>,
    tx: Sender<Event>,
    rx: Receiver<Event>,
    signals: signals::SignalListener,
    watchdog: Option<Watchdog>,
    restart_count: u32,
    stop_signal: Option<c_int>,
    earlier: Vec<Failure>,
    group: Option<Group>,
}

impl Agent {
    /// Installs the signal handlers, opens the per-rank logs and starts the watchdog. Nothing
    /// is spawned yet.
    pub fn new(mut cfg: AgentConfig) -> anyhow::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let signal_tx = tx.clone();
        let signals = signals::listen(move |sig| {
            let _ = signal_tx.send(Event::Signal(sig));
        })
        .context("cannot install signal handlers")?;
        if let Some(dir) = &cfg.log_dir {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create --log-dir {}", dir.display()))?;
        }
        let mut rank_logs = Vec::new();
        for local_rank in 0..cfg.env.local_world_size {
            let rank = cfg.env.rank(local_rank);
            let log = RankLog::open(rank, cfg.log_dir.as_deref(), cfg.console.contains(rank))
                .context("cannot open the log file")?;
            rank_logs.push(log);
        }
        let watchdog = match (!Watchdog::disabled()).then(Watchdog::start) {
            None => None,
            Some(Ok(w)) => Some(w),
            Some(Err(e)) => {
                logs::say(format_args!(
                    "warning: cannot start the watchdog ({e}); workers' children may outlive a SIGKILLed launcher"
                ));
                None
            }
        };
        let store = match cfg.store.take() {
            None => None,
            Some(listener) => {
                cfg.env.master_port = listener
                    .local_addr()
                    .context("cannot read the store's port")?
                    .port();
                let token = store::attempt_token(&cfg.env.run_id, 0);
                let server = StoreServer::start(listener, &token)
                    .context("cannot start the rendezvous store")?;
                Some(server)
            }
        };
        Ok(Self {
            cfg,
            store,
            logs: rank_logs,
            tx,
            rx,
            signals,
            watchdog,
            restart_count: 0,
            stop_signal: None,
            earlier: Vec::new(),
            group: None,
        })
    }

    /// Runs the launch to the end; returns the launcher's exit code.
    pub fn run(mut self) -> i32 {
        let mut state = State::Init;
        let code = loop {
            state = match state {
                State::Init => match self.stop_signal {
                    Some(sig) => break 128 + sig,
                    None => match self.start_group() {
                        Ok(()) => State::Healthy,
                        Err(code) => break code,
                    },
                },
                State::Healthy => self.monitor(),
                State::Failed(failure) => {
                    logs::say(format_args!(
                        "{}; stopping the worker group",
                        failure.one_line()
                    ));
                    self.stop_group(Some(libc::SIGTERM));
                    if self.stop_signal.is_none() && self.restart_count < self.cfg.env.max_restarts
                    {
                        self.restart_count += 1;
                        logs::say(format_args!(
                            "restarting the worker group (restart {} of {})",
                            self.restart_count, self.cfg.env.max_restarts
                        ));
                        self.earlier.push(failure);
                        State::Init
                    } else {
                        self.print_summary(&failure);
                        break failure.exit.launcher_exit_code();
                    }
                }
                State::Succeeded => {
                    self.stop_leftovers();
                    break 0;
                }
                State::Stopping(sig) => {
                    self.stop_group(None);
                    self.print_stopped(sig);
                    break 128 + sig;
                }
            };
        };
        self.finish();
        code
    }

    /// INIT: spawns the workers of attempt `restart_count`. On a spawn failure the workers
    /// already started are stopped and the exit code is returned.
    fn start_group(&mut self) -> Result<(), i32> {
        let mut env = self.cfg.env.clone();
        env.restart_count = self.restart_count;
        let mut group = Group {
            restart_count: self.restart_count,
            started: Instant::now(),
            slots: Vec::new(),
        };
        if self.restart_count > 0 {
            for log in &self.logs {
                log.begin_restart(self.restart_count);
            }
        }
        match &self.store {
            Some(server) if self.restart_count > 0 => server.reset(&env.run_token()),
            Some(_) => {}
            None => {
                if let Err(e) = check_remote_store(&env) {
                    logs::say(format_args!("error: {e}"));
                    return Err(1);
                }
            }
        }
        for (local_rank, log) in (0..env.local_world_size).zip(&self.logs) {
            let tx = self.tx.clone();
            let restart_count = self.restart_count;
            let on_exit = move |status: std::io::Result<std::process::ExitStatus>| {
                let exit = match status {
                    Ok(s) => WorkerExit::from_status(s),
                    Err(e) => WorkerExit::WaitFailed(e.to_string()),
                };
                let at = Instant::now();
                let _ = tx.send(Event::Exited {
                    restart_count,
                    local_rank,
                    exit,
                    at,
                });
            };
            let watchdog_fd = self.watchdog.as_ref().and_then(Watchdog::registration_fd);
            let log = Arc::clone(log);
            match spawn_worker(
                &self.cfg.command,
                &env,
                local_rank,
                log,
                watchdog_fd,
                on_exit,
            ) {
                Ok(worker) => {
                    group.slots.push(Slot {
                        worker,
                        exit: None,
                        sent: None,
                    });
                }
                Err(e) => {
                    logs::say(format_args!("error: {e}"));
                    self.group = Some(group);
                    self.stop_group(Some(libc::SIGTERM));
                    return Err(e.exit_code());
                }
            }
        }
        self.group = Some(group);
        Ok(())
    }

    /// HEALTHY: waits for the first failure, success of all, or a stop signal.
    fn monitor(&mut self) -> State {
        loop {
            let Some(event) = self.next_event(Duration::from_secs(1)) else {
                continue;
            };
            let Some(group) = &mut self.group else {
                return State::Succeeded;
            };
            match event {
                Event::Exited {
                    restart_count,
                    local_rank,
                    exit,
                    at,
                } => {
                    if restart_count != group.restart_count {
                        continue;
                    }
                    let Some(slot) = group.slots.get_mut(local_rank as usize) else {
                        continue;
                    };
                    slot.exit = Some(exit.clone());
                    if !exit.is_success() {
                        return State::Failed(Failure {
                            rank: slot.worker.rank,
                            local_rank,
                            pid: slot.worker.pid,
                            exit,
                            elapsed: at.saturating_duration_since(group.started),
                            restart_count,
                        });
                    }
                    if group.all_exited() {
                        return State::Succeeded;
                    }
                }
                Event::Signal(sig) => {
                    self.forward(sig);
                    if is_stop_signal(sig) {
                        self.stop_signal = Some(sig);
                        return State::Stopping(sig);
                    }
                }
            }
        }
    }

    /// Forwards a signal received by the launcher to every live worker process group.
    fn forward(&mut self, sig: c_int) {
        let Some(group) = &mut self.group else { return };
        let ranks = group.signal(sig);
        logs::say(format_args!(
            "received {}; forwarded to the process groups of {} worker(s)",
            signal_name(sig),
            ranks.len()
        ));
    }

    /// Stops the current group: sends `first` (if any) to every live process group, waits up
    /// to the grace period for all of them to empty, sends SIGKILL to the rest and reaps.
    /// A second SIGINT/SIGTERM during the wait skips the rest of the grace period.
    fn stop_group(&mut self, first: Option<c_int>) {
        if let (Some(sig), Some(group)) = (first, &mut self.group) {
            group.signal(sig);
        }
        let deadline = Instant::now() + self.cfg.grace_period;
        let mut hurry = false;
        while !hurry && !self.group_gone() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            if let Some(event) = self.next_event((deadline - now).min(POLL)) {
                hurry = self.absorb(event);
            }
        }
        let Some(group) = &mut self.group else { return };
        if !group.all_gone() {
            let ranks = group.signal(libc::SIGKILL);
            if !ranks.is_empty() {
                logs::say(format_args!(
                    "sent SIGKILL to the process groups of rank(s) {ranks:?} ({})",
                    if hurry {
                        "second stop signal".to_string()
                    } else {
                        format!(
                            "still running after the {:?} grace period",
                            self.cfg.grace_period
                        )
                    }
                ));
            }
        }
        let deadline = Instant::now() + REAP_TIMEOUT;
        while !self.group.as_ref().is_none_or(Group::all_exited) && Instant::now() < deadline {
            if let Some(event) = self.next_event(POLL) {
                self.absorb(event);
            }
        }
        self.release_group();
    }

    /// SUCCEEDED: every worker exited 0, but some may have left processes behind in their
    /// process groups (a forgotten background job, a data-loader child). Stop those too.
    fn stop_leftovers(&mut self) {
        let Some(group) = &self.group else { return };
        let live = group.live();
        if !live.is_empty() {
            let ranks: Vec<u32> = live.iter().map(|&i| group.slots[i].worker.rank).collect();
            logs::say(format_args!(
                "rank(s) {ranks:?} exited 0 but left processes in their process group; stopping them"
            ));
            self.stop_group(Some(libc::SIGTERM));
        } else {
            self.release_group();
        }
    }

    /// Handles an event that arrives while the group is being stopped: records exits,
    /// forwards signals, and remembers a stop request. Returns `true` for a *second* stop
    /// request, which means "kill now".
    fn absorb(&mut self, event: Event) -> bool {
        match event {
            Event::Signal(sig) => {
                self.forward(sig);
                if !is_stop_signal(sig) {
                    return false;
                }
                let again = self.stop_signal.is_some();
                self.stop_signal.get_or_insert(sig);
                again
            }
            Event::Exited {
                restart_count,
                local_rank,
                exit,
                ..
            } => {
                let Some(group) = &mut self.group else {
                    return false;
                };
                if restart_count == group.restart_count {
                    if let Some(slot) = group.slots.get_mut(local_rank as usize) {
                        slot.exit = Some(exit);
                    }
                }
                false
            }
        }
    }

    fn group_gone(&self) -> bool {
        self.group.as_ref().is_none_or(Group::all_gone)
    }

    /// Unregisters emptied process groups from the watchdog and waits for the readers of
    /// exited workers to deliver their last lines.
    fn release_group(&mut self) {
        let Some(group) = &self.group else { return };
        let live = group.live();
        if let Some(w) = &mut self.watchdog {
            for (i, slot) in group.slots.iter().enumerate() {
                if !live.contains(&i) {
                    w.unwatch(slot.worker.pgid());
                }
            }
        }
        let readers = group.slots.iter().flat_map(|s| &s.worker.readers);
        logs::wait_readers(readers, DRAIN_TIMEOUT);
    }

    fn next_event(&self, timeout: Duration) -> Option<Event> {
        // The agent owns a sender, so the channel cannot disconnect; a timeout is `None`.
        self.rx.recv_timeout(timeout).ok()
    }

    fn print_summary(&self, failure: &Failure) {
        let Some(group) = &self.group else { return };
        let Some(log) = group
            .slots
            .iter()
            .position(|s| s.worker.rank == failure.rank)
            .and_then(|i| self.logs.get(i))
        else {
            return;
        };
        let tail = log.tail();
        let others = group.describe_others(failure.rank);
        let summary = Summary {
            failure,
            tail: &tail,
            log_path: log.path(),
            others: &others,
            earlier: &self.earlier,
            max_restarts: self.cfg.env.max_restarts,
        };
        eprint_raw(&summary.render());
    }

    fn print_stopped(&self, sig: c_int) {
        let mut text = format!(
            "slt-launch: stopped by {}; exiting with code {}\n",
            signal_name(sig),
            128 + sig
        );
        if let Some(group) = &self.group {
            for slot in &group.slots {
                text.push_str(&format!(
                    "  rank {}: {}\n",
                    slot.worker.rank,
                    slot.describe()
                ));
            }
        }
        eprint_raw(&text);
    }

    fn finish(self) {
        self.signals.close();
        if let Some(server) = self.store {
            server.shutdown();
        }
        if let Some(w) = self.watchdog {
            w.finish();
        }
    }
}

/// On a node other than 0: connects to node 0's store once (retrying for the connect window)
/// so that an unreachable store or a mismatched `--run-id` is reported before any worker
/// starts.
fn check_remote_store(env: &GroupEnv) -> Result<(), String> {
    let addr = join_host_port(&env.master_addr, env.master_port);
    let opts = store::options_from_env()?;
    logs::say(format_args!(
        "node {}: checking the rendezvous store of node 0 at {addr} (up to {:?})",
        env.node_rank, opts.connect_timeout
    ));
    StoreClient::connect(&addr, &env.run_token(), opts)
        .map(drop)
        .map_err(|e| e.to_string())
}

fn eprint_raw(text: &str) {
    use std::io::Write as _;
    let _ = std::io::stderr().lock().write_all(text.as_bytes());
}
