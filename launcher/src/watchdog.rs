//! A tiny helper process that kills the workers' process groups if the launcher itself is
//! killed with SIGKILL.
//!
//! `PR_SET_PDEATHSIG` kills each worker when the launcher dies, but it is not inherited across
//! `fork`: a worker's own children (data-loader processes, `sh -c` pipelines) would survive,
//! re-parented to init, and keep holding GPU memory — the orphan problem of pytorch#1223 and
//! EgoVerse#682. The watchdog closes that gap. It is the launcher binary re-executed with a
//! hidden first argument, in its own process group, ignoring the usual termination signals.
//! It learns on a pipe which process groups exist: each worker writes `+PGID` itself before
//! it execs (so even a launcher killed right after `fork` leaves no unregistered group), the
//! launcher writes `-PGID` once a group is empty, and `bye` when it finished cleaning up. If the pipe reaches EOF without `bye`, the
//! launcher died abruptly and the watchdog sends SIGKILL to every group still registered.

use std::collections::BTreeSet;
use std::io::{self, BufRead, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use crate::signals::signal_group;

/// The hidden first argument that turns `slt-launch` into the watchdog.
pub const ARG: &str = "__slt-launch-watchdog";

/// The launcher's end of the watchdog.
pub struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    /// Whether the watchdog is disabled with `SLT_LAUNCH_NO_WATCHDOG=1` (for tests that check
    /// `PR_SET_PDEATHSIG` on its own, and for debugging).
    pub fn disabled() -> bool {
        std::env::var_os("SLT_LAUNCH_NO_WATCHDOG").is_some_and(|v| v == "1")
    }

    /// Starts the watchdog (the running executable, via `/proc/self/exe`, so it works even if
    /// the binary was replaced on disk since the launch).
    pub fn start() -> io::Result<Self> {
        let mut child = Command::new("/proc/self/exe")
            .arg(ARG)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        Ok(Self { child, stdin })
    }

    /// The write end of the pipe, for workers to register their own process group from
    /// `pre_exec` (see `spawn::spawn_worker`); `None` once the watchdog is gone.
    pub fn registration_fd(&self) -> Option<RawFd> {
        self.stdin.as_ref().map(AsRawFd::as_raw_fd)
    }

    /// Unregisters a process group that has no members left.
    pub fn unwatch(&mut self, pgid: i32) {
        self.send(&format!("-{pgid}"));
    }

    /// Tells the watchdog that the launcher cleaned up, and waits (briefly) for it to exit.
    pub fn finish(mut self) {
        self.send("bye");
        self.stdin = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    fn send(&mut self, line: &str) {
        if let Some(stdin) = &mut self.stdin {
            // One write per line: workers write their registrations to the same pipe, and
            // writes below PIPE_BUF bytes do not interleave.
            if stdin.write_all(format!("{line}\n").as_bytes()).is_err() {
                crate::logs::say(format_args!(
                    "warning: the watchdog is gone; workers' children may outlive a SIGKILLed launcher"
                ));
                self.stdin = None;
            }
        }
    }
}

/// The watchdog's main: returns its exit code.
pub fn run() -> i32 {
    // Started through /proc/self/exe, the process would show up as `exe` in ps/top.
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes, which this is.
    unsafe {
        libc::prctl(libc::PR_SET_NAME, c"slt-launch-wd".as_ptr(), 0, 0, 0);
    }
    for sig in [
        libc::SIGINT,
        libc::SIGTERM,
        libc::SIGHUP,
        libc::SIGQUIT,
        libc::SIGUSR1,
        libc::SIGUSR2,
        libc::SIGPIPE,
    ] {
        // SAFETY: setting a disposition to SIG_IGN installs no handler code; this runs
        // single-threaded at the start of the process.
        unsafe {
            libc::signal(sig, libc::SIG_IGN);
        }
    }
    let mut groups = BTreeSet::new();
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let line = line.trim();
        if line == "bye" {
            return 0;
        }
        if let Some(Ok(pgid)) = line.strip_prefix('+').map(str::parse::<i32>) {
            if pgid > 1 {
                groups.insert(pgid);
            }
        } else if let Some(Ok(pgid)) = line.strip_prefix('-').map(str::parse::<i32>) {
            groups.remove(&pgid);
        }
    }
    // EOF without `bye`: the launcher died without cleaning up.
    for pgid in groups {
        let _ = signal_group(pgid, libc::SIGKILL);
    }
    0
}
