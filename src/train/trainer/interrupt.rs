//! Graceful stop on SIGTERM, SIGINT and SIGUSR1 (SLURM's usual pre-preemption signal): the
//! handler only records the signal; the trainer checks between steps, writes a resume
//! checkpoint and returns, so a preempted job loses no finished step.

use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

/// Signals that request a checkpoint-and-stop.
pub const STOP_SIGNALS: [i32; 3] = [
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGUSR1,
];

/// The first stop signal received (0 = none yet).
#[derive(Debug, Clone)]
pub struct StopFlag {
    signal: Arc<AtomicI32>,
}

impl StopFlag {
    /// A flag that only [`StopFlag::raise`] sets (tests, library use).
    pub fn manual() -> Self {
        StopFlag {
            signal: Arc::new(AtomicI32::new(0)),
        }
    }

    /// A flag set by [`STOP_SIGNALS`]. A second SIGINT/SIGTERM while the first is being handled
    /// terminates the process immediately (the default action), so a stuck run can still be
    /// stopped from the keyboard.
    pub fn from_signals() -> std::io::Result<Self> {
        let flag = Self::manual();
        for signal in STOP_SIGNALS {
            let seen = Arc::clone(&flag.signal);
            // SAFETY: the handler only performs atomic operations and, on a repeated signal,
            // `_exit`-style termination via `emulate_default_handler`, all async-signal-safe.
            unsafe {
                signal_hook::low_level::register(signal, move || {
                    if seen.swap(signal, Ordering::SeqCst) != 0
                        && signal != signal_hook::consts::SIGUSR1
                    {
                        let _ = signal_hook::low_level::emulate_default_handler(signal);
                    }
                })?;
            }
        }
        Ok(flag)
    }

    /// Records `signal` as if it had been delivered.
    pub fn raise(&self, signal: i32) {
        let _ = self
            .signal
            .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// The signal received, if any.
    pub fn received(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            signal => Some(signal),
        }
    }
}
