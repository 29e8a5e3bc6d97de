//! How a worker ended, the launcher's exit code derived from it, and the exit summary that
//! names the root cause (torchrun's `@record` error summary, without needing the worker's
//! cooperation).

use std::fmt::{self, Write as _};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::ExitStatus;
use std::time::Duration;

use crate::signals::signal_name;

/// How a worker process ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WorkerExit {
    /// Exited normally with this code.
    Code(i32),
    /// Died of a signal.
    Signal {
        /// The signal number.
        signo: i32,
        /// Whether the kernel wrote a core dump.
        core_dumped: bool,
    },
    /// Waiting for the worker failed (should not happen; kept rather than panicking).
    WaitFailed(String),
}

impl WorkerExit {
    /// Converts an [`ExitStatus`] from `wait`.
    pub fn from_status(status: ExitStatus) -> Self {
        match (status.code(), status.signal()) {
            (Some(code), _) => Self::Code(code),
            (None, Some(signo)) => Self::Signal {
                signo,
                core_dumped: status.core_dumped(),
            },
            // Stopped/continued statuses are never reported by `wait` without WUNTRACED.
            (None, None) => Self::WaitFailed(format!("unexpected wait status {status:?}")),
        }
    }

    /// Whether the worker succeeded (exit code 0).
    pub fn is_success(&self) -> bool {
        matches!(self, Self::Code(0))
    }

    /// The launcher's exit code for this failure: the code itself, 128 + signal for a signal
    /// (as shells report it), 1 when the status is unknown.
    pub fn launcher_exit_code(&self) -> i32 {
        match self {
            Self::Code(code) => *code,
            Self::Signal { signo, .. } => 128 + signo,
            Self::WaitFailed(_) => 1,
        }
    }
}

impl fmt::Display for WorkerExit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Code(code) => write!(f, "exit code {code}"),
            Self::Signal { signo, core_dumped } => {
                write!(f, "killed by signal {} ({signo})", signal_name(*signo))?;
                if *core_dumped {
                    f.write_str(", core dumped")?;
                }
                Ok(())
            }
            Self::WaitFailed(msg) => write!(f, "unknown status ({msg})"),
        }
    }
}

/// The first worker failure of one attempt.
#[derive(Clone, Debug)]
pub struct Failure {
    /// Global rank of the failing worker.
    pub rank: u32,
    /// Its local rank on this node.
    pub local_rank: u32,
    /// Its process id.
    pub pid: u32,
    /// How it ended.
    pub exit: WorkerExit,
    /// Time from the start of the attempt to the failure.
    pub elapsed: Duration,
    /// The restart count of the attempt (0 for the first).
    pub restart_count: u32,
}

impl Failure {
    /// One line: `rank 1 (pid 4242) exit code 3 after 2.0 s`.
    pub fn one_line(&self) -> String {
        format!(
            "rank {} (local rank {}, pid {}) {} after {:.1} s",
            self.rank,
            self.local_rank,
            self.pid,
            self.exit,
            self.elapsed.as_secs_f64()
        )
    }
}

/// What the summary needs to know about the attempt that failed last.
pub struct Summary<'a> {
    /// The root cause.
    pub failure: &'a Failure,
    /// Last lines of the failing rank's output, oldest first.
    pub tail: &'a [String],
    /// The failing rank's log file, if any.
    pub log_path: Option<&'a Path>,
    /// `(rank, how it ended)` for every other rank of the attempt.
    pub others: &'a [(u32, String)],
    /// First failures of earlier attempts that were restarted.
    pub earlier: &'a [Failure],
    /// `--max-restarts`.
    pub max_restarts: u32,
}

impl Summary<'_> {
    /// Renders the multi-line summary printed on stderr.
    pub fn render(&self) -> String {
        let f = self.failure;
        let rule = "=".repeat(72);
        let mut s = String::new();
        let _ = writeln!(s, "{rule}");
        let _ = writeln!(
            s,
            "slt-launch: worker group FAILED (restarts used: {}/{})",
            f.restart_count, self.max_restarts
        );
        let _ = writeln!(s, "root cause (first failing rank):");
        let _ = writeln!(s, "  rank:     {} (local rank {})", f.rank, f.local_rank);
        let _ = writeln!(s, "  pid:      {}", f.pid);
        let _ = writeln!(s, "  status:   {}", f.exit);
        let _ = writeln!(
            s,
            "  after:    {:.1} s (restart count {})",
            f.elapsed.as_secs_f64(),
            f.restart_count
        );
        match self.log_path {
            Some(p) => {
                let _ = writeln!(s, "  log:      {}", p.display());
            }
            None => {
                let _ = writeln!(s, "  log:      (no --log-dir; last lines kept in memory)");
            }
        }
        if self.tail.is_empty() {
            let _ = writeln!(s, "  output:   (rank {} printed nothing)", f.rank);
        } else {
            let _ = writeln!(s, "  last {} line(s) of rank {}:", self.tail.len(), f.rank);
            for line in self.tail {
                let _ = writeln!(s, "    {line}");
            }
        }
        if !self.others.is_empty() {
            let _ = writeln!(s, "other ranks:");
            for (rank, how) in self.others {
                let _ = writeln!(s, "  rank {rank}: {how}");
            }
        }
        if !self.earlier.is_empty() {
            let _ = writeln!(s, "earlier attempts (restarted):");
            for e in self.earlier {
                let _ = writeln!(s, "  restart count {}: {}", e.restart_count, e.one_line());
            }
        }
        let _ = writeln!(s, "{rule}");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(script: &str) -> ExitStatus {
        std::process::Command::new("sh")
            .args(["-c", script])
            .status()
            .expect("run sh")
    }

    #[test]
    fn exit_codes_and_signals() {
        let ok = WorkerExit::from_status(status_of("exit 0"));
        assert!(ok.is_success());
        let three = WorkerExit::from_status(status_of("exit 3"));
        assert_eq!(three, WorkerExit::Code(3));
        assert_eq!(three.launcher_exit_code(), 3);
        assert_eq!(three.to_string(), "exit code 3");
        let killed = WorkerExit::from_status(status_of("kill -9 $$"));
        assert!(!killed.is_success());
        assert_eq!(killed.launcher_exit_code(), 137);
        assert_eq!(killed.to_string(), "killed by signal SIGKILL (9)");
    }

    #[test]
    fn summary_names_root_cause_and_tail() {
        let failure = Failure {
            rank: 2,
            local_rank: 2,
            pid: 4242,
            exit: WorkerExit::Code(3),
            elapsed: Duration::from_millis(2500),
            restart_count: 1,
        };
        let earlier = Failure {
            rank: 0,
            restart_count: 0,
            exit: WorkerExit::Signal {
                signo: libc::SIGSEGV,
                core_dumped: true,
            },
            ..failure.clone()
        };
        let tail = vec!["Traceback".to_string(), "boom".to_string()];
        let others = vec![(0, "killed by signal SIGTERM (15)".to_string())];
        let text = Summary {
            failure: &failure,
            tail: &tail,
            log_path: None,
            others: &others,
            earlier: std::slice::from_ref(&earlier),
            max_restarts: 1,
        }
        .render();
        assert!(text.contains("restarts used: 1/1"), "{text}");
        assert!(text.contains("rank:     2 (local rank 2)"), "{text}");
        assert!(text.contains("status:   exit code 3"), "{text}");
        assert!(
            text.contains("last 2 line(s) of rank 2:\n    Traceback\n    boom\n"),
            "{text}"
        );
        assert!(text.contains("rank 0: killed by signal SIGTERM"), "{text}");
        assert!(
            text.contains("SIGSEGV (11), core dumped after 2.5 s"),
            "{text}"
        );
    }
}
