//! End-to-end tests of the `slt-launch` binary with `bash` workers.
//!
//! Every wait is a poll with a generous deadline (the tests must pass on a loaded 2-core
//! machine); no fixed sleep decides a result. Workers report their pids (and readiness) through
//! files in a per-test temporary directory, passed to them as `$D`.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_slt-launch");
const DEADLINE: Duration = Duration::from_secs(20);

/// A running launcher whose stdout and stderr are collected in the background.
struct Launch {
    child: Child,
    out: Arc<Mutex<String>>,
    err: Arc<Mutex<String>>,
}

impl Launch {
    /// Starts `slt-launch ARGS -- bash -c SCRIPT` with `$D` = `dir`.
    fn start(dir: &Path, args: &[&str], script: &str) -> Self {
        Self::start_with(dir, args, script, &[])
    }

    fn start_with(dir: &Path, args: &[&str], script: &str, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .args(["--", "bash", "-c", script])
            .env("D", dir)
            .env_remove("OMP_NUM_THREADS")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start slt-launch");
        let collect = |mut r: Box<dyn Read + Send>| {
            let buf = Arc::new(Mutex::new(String::new()));
            let sink = Arc::clone(&buf);
            thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    let text = String::from_utf8_lossy(&chunk[..n]).into_owned();
                    sink.lock().expect("lock").push_str(&text);
                }
            });
            buf
        };
        let out = collect(Box::new(child.stdout.take().expect("stdout")));
        let err = collect(Box::new(child.stderr.take().expect("stderr")));
        Self { child, out, err }
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn stdout(&self) -> String {
        self.out.lock().expect("lock").clone()
    }

    fn stderr(&self) -> String {
        self.err.lock().expect("lock").clone()
    }

    /// Waits for the launcher to exit (panics after `timeout`); also lets the output
    /// collectors catch up.
    fn wait(&mut self, timeout: Duration) -> (ExitStatus, Duration) {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                // The pipes close when the launcher (and everything holding them) is gone.
                thread::sleep(Duration::from_millis(50));
                return (status, start.elapsed());
            }
            if start.elapsed() > timeout {
                panic!(
                    "slt-launch did not exit within {timeout:?}\nstdout:\n{}\nstderr:\n{}",
                    self.stdout(),
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0, "kill launcher");
    }
}

impl Drop for Launch {
    fn drop(&mut self) {
        // A failed test must not leave a launcher behind; its workers follow it (PDEATHSIG).
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `cond` every 20 ms until it holds; panics with `what` after [`DEADLINE`].
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `pid` is a live process (a zombie awaiting an absent reaper counts as dead).
fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks existence.
    if unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Reads the pids the workers wrote into `{dir}/{prefix}.{rank}`, waiting for `n` of them.
fn read_pids(dir: &Path, prefix: &str, n: usize) -> Vec<i32> {
    let read = || -> Vec<i32> {
        (0..n)
            .filter_map(|r| std::fs::read_to_string(dir.join(format!("{prefix}.{r}"))).ok())
            .filter_map(|s| s.trim().parse().ok())
            .collect()
    };
    wait_until(&format!("{n} {prefix} files"), || read().len() == n);
    read()
}

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

// Worker scripts poll with `while` + arithmetic, never `$(…)`: signals sent to a worker's
// process group also hit a command-substitution subshell, which would silently end the loop.

/// Writes `$D/pid.$RANK` atomically (readers never see a half-written file).
const WRITE_PID: &str = "echo $$ > $D/pid.$RANK.tmp && mv $D/pid.$RANK.tmp $D/pid.$RANK";

#[test]
fn workers_get_the_torchrun_environment() {
    let dir = tempdir();
    let script = "echo \"env rank=$RANK local=$LOCAL_RANK world=$WORLD_SIZE lws=$LOCAL_WORLD_SIZE \
                  group=$GROUP_RANK addr=$MASTER_ADDR port=$MASTER_PORT restart=$TORCHELASTIC_RESTART_COUNT \
                  run=$SLT_RUN_ID backend=$SLT_DIST_BACKEND omp=$OMP_NUM_THREADS\"";
    let mut l = Launch::start(
        dir.path(),
        &["--nproc-per-node", "3", "--backend", "tcp"],
        script,
    );
    let (status, _) = l.wait(DEADLINE);
    let out = l.stdout();
    assert_eq!(
        status.code(),
        Some(0),
        "stdout:\n{out}\nstderr:\n{}",
        l.stderr()
    );
    let mut ports = BTreeSet::new();
    let mut runs = BTreeSet::new();
    for rank in 0..3 {
        let prefix = format!("[rank{rank}]: env ");
        let line = out
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .unwrap_or_else(|| panic!("no env line of rank {rank} in:\n{out}"));
        let field = |k: &str| {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{k}=")))
                .unwrap_or_else(|| panic!("{k} missing in {line:?}"))
                .to_string()
        };
        assert_eq!(field("rank"), rank.to_string());
        assert_eq!(field("local"), rank.to_string());
        assert_eq!(field("world"), "3");
        assert_eq!(field("lws"), "3");
        assert_eq!(field("group"), "0");
        assert_eq!(field("addr"), "127.0.0.1");
        assert_eq!(field("restart"), "0");
        assert_eq!(field("backend"), "tcp");
        let omp: usize = field("omp").parse().expect("OMP_NUM_THREADS is a number");
        assert!(omp >= 1);
        let port: u16 = field("port").parse().expect("MASTER_PORT is a port");
        assert_ne!(port, 0);
        ports.insert(port);
        runs.insert(field("run"));
    }
    assert_eq!(ports.len(), 1, "all ranks must see the same MASTER_PORT");
    assert_eq!(runs.len(), 1, "all ranks must see the same SLT_RUN_ID");
    assert!(
        l.stderr().contains("OMP_NUM_THREADS is not set"),
        "{}",
        l.stderr()
    );
}

#[test]
fn preset_omp_threads_and_fixed_port_and_run_id_are_kept() {
    let dir = tempdir();
    let args = [
        "--nproc-per-node",
        "2",
        "--master-port",
        "29513",
        "--run-id",
        "my-run",
    ];
    let script = "echo \"omp=$OMP_NUM_THREADS port=$MASTER_PORT run=$SLT_RUN_ID\"";
    let mut l = Launch::start_with(dir.path(), &args, script, &[("OMP_NUM_THREADS", "3")]);
    let (status, _) = l.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", l.stderr());
    let out = l.stdout();
    for rank in 0..2 {
        let expect = format!("[rank{rank}]: omp=3 port=29513 run=my-run");
        assert!(out.contains(&expect), "{expect:?} not in:\n{out}");
    }
    assert!(!l.stderr().contains("OMP_NUM_THREADS is not set"));
}

#[test]
fn failing_rank_stops_the_others_and_is_named() {
    let dir = tempdir();
    // Rank 1 fails once the other two are running (so their pids are known).
    let script = format!(
        "{WRITE_PID}; if [ $RANK = 1 ]; then \
           i=0; while [ $i -lt 400 ] && ! [ -e $D/pid.0 -a -e $D/pid.2 ]; do sleep 0.05; i=$((i+1)); done; \
           echo 'rank one gives up' >&2; exit 3; \
         fi; exec sleep 1000"
    );
    let args = ["--nproc-per-node", "3", "--grace-period", "2"];
    let mut l = Launch::start(dir.path(), &args, &script);
    let pids = read_pids(dir.path(), "pid", 3);
    let (status, elapsed) = l.wait(DEADLINE);
    let err = l.stderr();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(
        elapsed < Duration::from_secs(2 + 10),
        "took {elapsed:?}\n{err}"
    );
    assert!(err.contains("root cause (first failing rank):"), "{err}");
    assert!(err.contains("rank:     1 (local rank 1)"), "{err}");
    assert!(err.contains("status:   exit code 3"), "{err}");
    assert!(
        err.contains("    rank one gives up"),
        "tail missing:\n{err}"
    );
    assert!(err.contains("rank 0: killed by signal SIGTERM"), "{err}");
    for pid in pids {
        assert!(!alive(pid), "worker {pid} survived the launcher");
    }
}

#[test]
fn worker_killed_by_a_signal_is_reported_by_name() {
    let dir = tempdir();
    let script = format!(
        "{WRITE_PID}; if [ $RANK = 0 ]; then \
           i=0; while [ $i -lt 400 ] && ! [ -e $D/pid.1 -a -e $D/pid.2 ]; do sleep 0.05; i=$((i+1)); done; \
           kill -9 $$; \
         fi; exec sleep 1000"
    );
    let mut l = Launch::start(dir.path(), &["--nproc-per-node", "3"], &script);
    let pids = read_pids(dir.path(), "pid", 3);
    let (status, _) = l.wait(Duration::from_secs(10));
    let err = l.stderr();
    assert_eq!(status.code(), Some(128 + 9), "{err}");
    assert!(err.contains("rank:     0 (local rank 0)"), "{err}");
    assert!(
        err.contains("status:   killed by signal SIGKILL (9)"),
        "{err}"
    );
    for pid in &pids[1..] {
        assert!(!alive(*pid), "worker {pid} survived");
    }
}

#[test]
fn workers_ignoring_sigterm_are_killed_after_the_grace_period() {
    let dir = tempdir();
    // `trap '' TERM` survives exec: the sleep ignores SIGTERM.
    let script = format!(
        "{WRITE_PID}; if [ $RANK = 1 ]; then \
           i=0; while [ $i -lt 400 ] && ! [ -e $D/pid.0 ]; do sleep 0.05; i=$((i+1)); done; \
           exit 3; \
         fi; trap '' TERM; exec sleep 1000"
    );
    let args = ["--nproc-per-node", "2", "--grace-period", "1.5"];
    let mut l = Launch::start(dir.path(), &args, &script);
    let pids = read_pids(dir.path(), "pid", 2);
    let (status, elapsed) = l.wait(DEADLINE);
    let err = l.stderr();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(
        elapsed >= Duration::from_millis(1500),
        "grace not honoured: {elapsed:?}"
    );
    assert!(
        err.contains("sent SIGKILL to the process groups of rank(s) [0]"),
        "{err}"
    );
    assert!(
        err.contains("rank 0: killed by signal SIGKILL (9), sent by slt-launch"),
        "{err}"
    );
    assert!(!alive(pids[0]), "worker survived");
}

#[test]
fn second_sigint_skips_the_grace_period() {
    let dir = tempdir();
    let script = format!("trap '' INT; {WRITE_PID}; exec sleep 1000");
    let args = ["--nproc-per-node", "2", "--grace-period", "60"];
    let mut l = Launch::start(dir.path(), &args, &script);
    let pids = read_pids(dir.path(), "pid", 2);
    l.signal(libc::SIGINT);
    wait_until("the first SIGINT to be forwarded", || {
        l.stderr().contains("received SIGINT")
    });
    l.signal(libc::SIGINT);
    let (status, _) = l.wait(DEADLINE);
    let err = l.stderr();
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("(second stop signal)"), "{err}");
    for pid in pids {
        assert!(!alive(pid), "worker {pid} survived");
    }
}

#[test]
fn stop_signal_during_a_failure_cancels_the_restart() {
    let dir = tempdir();
    let script = format!(
        "{WRITE_PID}; if [ $RANK = 1 ]; then \
           i=0; while [ $i -lt 400 ] && ! [ -e $D/pid.0 ]; do sleep 0.05; i=$((i+1)); done; \
           exit 3; \
         fi; trap '' TERM INT; exec sleep 1000"
    );
    let args = [
        "--nproc-per-node",
        "2",
        "--max-restarts",
        "5",
        "--grace-period",
        "60",
    ];
    let mut l = Launch::start(dir.path(), &args, &script);
    wait_until("the launcher to stop the group", || {
        l.stderr().contains("stopping the worker group")
    });
    l.signal(libc::SIGINT); // no restart, but the grace period still runs…
    wait_until("the SIGINT to be forwarded", || {
        l.stderr().contains("received SIGINT")
    });
    l.signal(libc::SIGINT); // …until a second one.
    let (status, _) = l.wait(DEADLINE);
    let err = l.stderr();
    assert_eq!(status.code(), Some(3), "{err}");
    assert!(!err.contains("restarting"), "{err}");
    assert!(err.contains("restarts used: 0/5"), "{err}");
}

#[test]
fn group_is_restarted_after_a_failure() {
    let dir = tempdir();
    let log_dir = dir.path().join("logs");
    let log_arg = log_dir.to_str().expect("utf-8 path");
    // Only rank 0 fails, after its echo (a failing rank 1 could get rank 0 stopped before it
    // printed anything); rank 1 waits in attempt 0 until the launcher stops it.
    let script = "echo \"attempt $TORCHELASTIC_RESTART_COUNT\"; \
                  [ \"$TORCHELASTIC_RESTART_COUNT\" = 1 ] && exit 0; \
                  [ \"$RANK\" = 0 ] && exit 5; exec sleep 100";
    let args = [
        "--nproc-per-node",
        "2",
        "--max-restarts",
        "1",
        "--log-dir",
        log_arg,
    ];
    let mut l = Launch::start(dir.path(), &args, script);
    let (status, _) = l.wait(DEADLINE);
    let err = l.stderr();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.contains("restarting the worker group (restart 1 of 1)"),
        "{err}"
    );
    let log = std::fs::read_to_string(log_dir.join("rank0.log")).expect("rank0.log");
    assert_eq!(
        log,
        "attempt 0\n----- slt-launch: restart 1 (TORCHELASTIC_RESTART_COUNT=1) -----\nattempt 1\n"
    );
}

#[test]
fn restarts_run_out_then_the_last_failure_is_reported() {
    let dir = tempdir();
    let script = "echo \"attempt $TORCHELASTIC_RESTART_COUNT\"; exit 7";
    let args = ["--nproc-per-node", "1", "--max-restarts", "2"];
    let mut l = Launch::start(dir.path(), &args, script);
    let (status, _) = l.wait(DEADLINE);
    let err = l.stderr();
    assert_eq!(status.code(), Some(7), "{err}");
    assert!(err.contains("restarts used: 2/2"), "{err}");
    assert!(
        err.contains("    attempt 2\n"),
        "tail of the last attempt:\n{err}"
    );
    assert!(
        !err.contains("    attempt 1\n"),
        "tail must be of the last attempt:\n{err}"
    );
    assert!(err.contains("earlier attempts (restarted):"), "{err}");
    assert_eq!(l.stdout().matches("attempt").count(), 3);
}

#[test]
fn sigterm_to_the_launcher_reaches_workers_and_exits_143() {
    let dir = tempdir();
    let script =
        format!("trap 'echo term > $D/term.$RANK; exit 0' TERM; {WRITE_PID}; sleep 1000 & wait");
    let mut l = Launch::start(dir.path(), &["--nproc-per-node", "3"], &script);
    let pids = read_pids(dir.path(), "pid", 3);
    l.signal(libc::SIGTERM);
    let (status, _) = l.wait(DEADLINE);
    assert_eq!(status.code(), Some(143), "{}", l.stderr());
    for rank in 0..3 {
        assert!(
            dir.path().join(format!("term.{rank}")).exists(),
            "rank {rank} did not get SIGTERM\n{}",
            l.stderr()
        );
    }
    for pid in pids {
        assert!(!alive(pid), "worker {pid} survived");
    }
}

#[test]
fn sigusr1_is_forwarded_and_does_not_stop_the_launch() {
    let dir = tempdir();
    let script = format!(
        "trap 'touch $D/usr1.$RANK' USR1; {WRITE_PID}; \
         i=0; while [ $i -lt 400 ]; do [ -e $D/usr1.$RANK ] && exit 0; sleep 0.05; i=$((i+1)); done; \
         exit 9"
    );
    let mut l = Launch::start(dir.path(), &["--nproc-per-node", "2"], &script);
    read_pids(dir.path(), "pid", 2);
    l.signal(libc::SIGUSR1);
    let (status, _) = l.wait(DEADLINE);
    let err = l.stderr();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(err.contains("received SIGUSR1; forwarded"), "{err}");
}

#[test]
fn concurrent_launchers_get_different_ports() {
    let dir = tempdir();
    let script = "echo \"port=$MASTER_PORT\"";
    let mut a = Launch::start(dir.path(), &["--nproc-per-node", "1"], script);
    let mut b = Launch::start(dir.path(), &["--nproc-per-node", "1"], script);
    let port = |l: &mut Launch| {
        let (status, _) = l.wait(DEADLINE);
        assert_eq!(status.code(), Some(0), "{}", l.stderr());
        let out = l.stdout();
        let p: u16 = out
            .trim()
            .strip_prefix("[rank0]: port=")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {out:?}"));
        p
    };
    let (pa, pb) = (port(&mut a), port(&mut b));
    assert!(pa != 0 && pb != 0);
    assert_ne!(pa, pb);
}

#[test]
fn sigkilled_launcher_takes_its_workers_along() {
    // The watchdog is disabled so that this checks PR_SET_PDEATHSIG on its own.
    let dir = tempdir();
    let script = format!("{WRITE_PID}; exec sleep 1000");
    let env = [("SLT_LAUNCH_NO_WATCHDOG", "1")];
    let mut l = Launch::start_with(dir.path(), &["--nproc-per-node", "2"], &script, &env);
    let pids = read_pids(dir.path(), "pid", 2);
    l.signal(libc::SIGKILL);
    l.wait(DEADLINE);
    wait_until("workers to die with the launcher", || {
        pids.iter().all(|&p| !alive(p))
    });
}

#[test]
fn sigkilled_launcher_takes_workers_children_along() {
    // PDEATHSIG is not inherited by a worker's children; the watchdog kills their groups.
    let dir = tempdir();
    let script =
        "sleep 1000 & echo $! > $D/child.$RANK.tmp && mv $D/child.$RANK.tmp $D/child.$RANK; wait";
    let mut l = Launch::start(dir.path(), &["--nproc-per-node", "2"], script);
    let children = read_pids(dir.path(), "child", 2);
    l.signal(libc::SIGKILL);
    l.wait(DEADLINE);
    wait_until("the workers' children to die with the launcher", || {
        children.iter().all(|&p| !alive(p))
    });
}

#[test]
fn leftover_children_of_successful_workers_are_stopped() {
    let dir = tempdir();
    let script = "sleep 1000 & echo $! > $D/child.$RANK; exit 0";
    let mut l = Launch::start(dir.path(), &["--nproc-per-node", "2"], script);
    let (status, _) = l.wait(DEADLINE);
    let err = l.stderr();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(
        err.contains("left processes in their process group"),
        "{err}"
    );
    for pid in read_pids(dir.path(), "child", 2) {
        assert!(!alive(pid), "leftover {pid} survived");
    }
}

#[test]
fn log_files_and_console_filter() {
    let dir = tempdir();
    let log_dir = dir.path().join("logs");
    let log_arg = log_dir.to_str().expect("utf-8 path");
    let script = "echo \"out of $RANK\"; echo \"err of $RANK\" >&2";
    let args = ["--nproc-per-node", "2", "--log-dir", log_arg, "--tee", "1"];
    let mut l = Launch::start(dir.path(), &args, script);
    let (status, _) = l.wait(DEADLINE);
    assert_eq!(status.code(), Some(0), "{}", l.stderr());
    assert_eq!(l.stdout(), "[rank1]: out of 1\n");
    assert!(l.stderr().contains("[rank1]: err of 1\n"), "{}", l.stderr());
    assert!(!l.stderr().contains("[rank0]"), "{}", l.stderr());
    for rank in 0..2 {
        let log = std::fs::read_to_string(log_dir.join(format!("rank{rank}.log"))).expect("log");
        assert!(log.contains(&format!("out of {rank}\n")), "{log}");
        assert!(log.contains(&format!("err of {rank}\n")), "{log}");
    }
}

#[test]
fn missing_command_exits_127() {
    let out = Command::new(BIN)
        .args(["--nproc-per-node", "2", "--", "/nonexistent/slt-worker"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(127), "{err}");
    assert!(
        err.contains("cannot start rank 0: /nonexistent/slt-worker"),
        "{err}"
    );
}

#[test]
fn incomplete_multi_node_launch_is_refused_clearly() {
    let out = Command::new(BIN)
        .args(["--nproc-per-node", "2", "--nnodes", "2", "--", "true"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("needs --master-port and --run-id"), "{err}");
}

#[test]
fn busy_master_port_is_an_immediate_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port().to_string();
    let start = Instant::now();
    let out = Command::new(BIN)
        .args([
            "--nproc-per-node",
            "1",
            "--master-port",
            &port,
            "--",
            "true",
        ])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(start.elapsed() < DEADLINE);
    assert!(
        err.contains(&format!("--master-port {port}")) && err.contains("omit --master-port"),
        "{err}"
    );
}
