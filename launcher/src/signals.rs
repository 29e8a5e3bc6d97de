//! Signals: the ones the launcher catches and forwards, sending signals to worker process
//! groups, and signal names for messages.
//!
//! Handlers only record the signal (signal-hook's self-pipe); a listener thread turns each one
//! into a callback on an ordinary thread, so no launcher logic ever runs inside a handler.

use std::io;
use std::thread;

use libc::c_int;
use signal_hook::iterator::{Handle, Signals};

/// Signals the launcher catches and forwards to every worker's process group.
///
/// SIGUSR1 is SLURM's usual pre-emption warning (`--signal=USR1@T`) and SIGUSR2 submitit's;
/// both are forwarded and never end the launcher. SIGINT and SIGTERM also stop the launch.
pub const FORWARDED: [c_int; 5] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGUSR1,
    libc::SIGUSR2,
];

/// Whether `sig`, received by the launcher, means "stop the whole launch, no more restarts".
pub fn is_stop_signal(sig: c_int) -> bool {
    sig == libc::SIGINT || sig == libc::SIGTERM
}

/// A running signal listener; dropping it keeps the handlers installed (they must stay for the
/// whole launch), [`SignalListener::close`] ends the listener thread.
pub struct SignalListener {
    handle: Handle,
}

impl SignalListener {
    /// Stops the listener thread. Signals that arrive afterwards are still caught (and ignored).
    pub fn close(&self) {
        self.handle.close();
    }
}

/// Installs handlers for [`FORWARDED`] and calls `on_signal` on a listener thread for each
/// signal received, in order of arrival.
pub fn listen(on_signal: impl Fn(c_int) + Send + 'static) -> io::Result<SignalListener> {
    let mut signals = Signals::new(FORWARDED)?;
    let handle = signals.handle();
    thread::Builder::new()
        .name("slt-launch-signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                on_signal(sig);
            }
        })?;
    Ok(SignalListener { handle })
}

/// Sends `sig` to every process in the process group `pgid`.
///
/// Returns `Ok(false)` when the group has no members left (ESRCH), `Ok(true)` when it was sent.
pub fn signal_group(pgid: i32, sig: c_int) -> io::Result<bool> {
    if pgid <= 1 {
        // killpg(0 or 1, …) would hit our own group or be invalid; never do that.
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("refusing to signal process group {pgid}"),
        ));
    }
    // SAFETY: killpg has no memory-safety preconditions; pgid > 1 was checked above.
    let rc = unsafe { libc::killpg(pgid, sig) };
    if rc == 0 {
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::ESRCH) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// For each process group in `pgids`, whether it still has a live member.
///
/// `killpg(pgid, 0)` answers "does any member exist", but zombies count as members: a worker's
/// child that was re-parented to an init that never reaps would keep its group "alive"
/// forever. So groups that `killpg` reports as existing are checked once more against
/// `/proc/*/stat`, ignoring zombies. Without a readable `/proc`, `killpg`'s answer is used.
pub fn live_groups(pgids: &[i32]) -> Vec<bool> {
    let mut alive: Vec<bool> = pgids
        .iter()
        .map(|&pgid| {
            if pgid <= 1 {
                return false;
            }
            // SAFETY: signal 0 only checks existence and permission; no memory is touched.
            let rc = unsafe { libc::killpg(pgid, 0) };
            // EPERM means members exist that we may not signal: alive.
            rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
        })
        .collect();
    if alive.iter().any(|&a| a) {
        if let Some(live) = non_zombie_pgids() {
            for (a, pgid) in alive.iter_mut().zip(pgids) {
                *a = *a && live.contains(pgid);
            }
        }
    }
    alive
}

/// The process groups of all processes that are not zombies, from `/proc`.
fn non_zombie_pgids() -> Option<std::collections::HashSet<i32>> {
    let mut live = std::collections::HashSet::new();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        // The process may have vanished since read_dir: skip it.
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        if let Some((state, pgrp)) = parse_stat(&stat) {
            if state != 'Z' && state != 'X' {
                live.insert(pgrp);
            }
        }
    }
    Some(live)
}

/// `(state, pgrp)` from the text of `/proc/PID/stat`: `pid (comm) S ppid pgrp …`, where comm
/// may itself contain spaces and parentheses.
fn parse_stat(stat: &str) -> Option<(char, i32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// The conventional name of a signal, `SIGTERM`, or `signal 42` for unnamed ones.
pub fn signal_name(sig: c_int) -> String {
    let name = match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        libc::SIGCHLD => "SIGCHLD",
        libc::SIGCONT => "SIGCONT",
        libc::SIGSTOP => "SIGSTOP",
        libc::SIGTSTP => "SIGTSTP",
        libc::SIGTTIN => "SIGTTIN",
        libc::SIGTTOU => "SIGTTOU",
        libc::SIGURG => "SIGURG",
        libc::SIGXCPU => "SIGXCPU",
        libc::SIGXFSZ => "SIGXFSZ",
        libc::SIGVTALRM => "SIGVTALRM",
        libc::SIGPROF => "SIGPROF",
        libc::SIGWINCH => "SIGWINCH",
        libc::SIGIO => "SIGIO",
        libc::SIGSYS => "SIGSYS",
        _ => return format!("signal {sig}"),
    };
    name.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_common_signals() {
        assert_eq!(signal_name(libc::SIGKILL), "SIGKILL");
        assert_eq!(signal_name(libc::SIGTERM), "SIGTERM");
        assert_eq!(signal_name(libc::SIGUSR1), "SIGUSR1");
        assert_eq!(signal_name(1000), "signal 1000");
    }

    #[test]
    fn only_int_and_term_stop_the_launch() {
        let stops: Vec<_> = FORWARDED
            .into_iter()
            .filter(|&s| is_stop_signal(s))
            .collect();
        assert_eq!(stops, vec![libc::SIGINT, libc::SIGTERM]);
    }

    #[test]
    fn refuses_to_signal_own_or_init_group() {
        assert!(signal_group(0, 0).is_err());
        assert!(signal_group(1, 0).is_err());
        assert_eq!(live_groups(&[0, 1]), vec![false, false]);
    }

    #[test]
    fn parses_proc_stat_with_odd_comm() {
        assert_eq!(parse_stat("42 (a) b) S 1 4242 4242 0"), Some(('S', 4242)));
        assert_eq!(parse_stat("42 (x) Z 1 7"), Some(('Z', 7)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_group_is_alive() {
        // SAFETY: getpgrp has no preconditions.
        let own = unsafe { libc::getpgrp() };
        if own > 1 {
            assert_eq!(live_groups(&[own]), vec![true]);
        }
    }

    #[test]
    fn group_of_a_reaped_child_is_gone() {
        use std::os::unix::process::CommandExt;
        let mut child = std::process::Command::new("true")
            .process_group(0)
            .spawn()
            .expect("spawn true");
        let pgid = child.id() as i32;
        child.wait().expect("wait");
        assert_eq!(live_groups(&[pgid]), vec![false]);
        assert!(!signal_group(pgid, libc::SIGTERM).expect("killpg"));
    }
}
