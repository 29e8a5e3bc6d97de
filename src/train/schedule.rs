//! Learning-rate schedule: torch's `CosineAnnealingLR` as the reference steps it.
//!
//! The reference calls `scheduler.step()` once at the *start* of every epoch, before the batch
//! loop (spec §5), so 0-based epoch `e` trains with the rates after `e + 1` steps, about
//! `eta_min + (base − eta_min)(1 + cos(π(e+1)/T_max))/2`, and with `T_max = total_epoch` the last
//! epoch runs at `eta_min`.
//!
//! torch 2.x computes the rates *recursively* from the group's current rate, not with the closed
//! form, and the two differ in the last bits. [`CosineAnnealing`] reproduces the recursion
//! operation by operation (`tests/optimizer_parity.rs` compares it with torch 2.13 bit for bit),
//! and [`CosineAnnealing::lr_at`] replays it, so a resumed run gets the same rates as an
//! uninterrupted one.

use std::f64::consts::PI;

use serde::{Deserialize, Serialize};

use crate::config::OptimizationConfig;

/// Errors of the schedule.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// `t_max` must be positive.
    #[error("cosine annealing: t_max must be positive")]
    ZeroTMax,
    /// Restored state whose vectors disagree.
    #[error("cosine annealing state: {base} base rates but {current} current rates")]
    LengthMismatch {
        /// Number of base rates.
        base: usize,
        /// Number of current rates.
        current: usize,
    },
    /// Restored state with a negative epoch counter.
    #[error("cosine annealing state: last_epoch {0} is negative")]
    NegativeEpoch(i64),
}

/// Serialisable state of [`CosineAnnealing`] (torch: `last_epoch`, `base_lrs`, `_last_lr`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CosineAnnealingState {
    /// Period in epochs.
    pub t_max: usize,
    /// Floor rate.
    #[serde(with = "crate::train::exact_float::scalar")]
    pub eta_min: f64,
    /// Initial rate of every group.
    #[serde(with = "crate::train::exact_float::vec")]
    pub base_lrs: Vec<f64>,
    /// Number of `step` calls so far (0 right after construction).
    pub last_epoch: i64,
    /// Current rate of every group.
    #[serde(with = "crate::train::exact_float::vec")]
    pub lrs: Vec<f64>,
}

/// `CosineAnnealingLR(T_max, eta_min)` over one rate per parameter group.
#[derive(Debug, Clone, PartialEq)]
pub struct CosineAnnealing {
    state: CosineAnnealingState,
}

impl CosineAnnealing {
    /// A fresh schedule (torch right after construction: `last_epoch = 0`, rates = `base_lrs`).
    pub fn new(t_max: usize, eta_min: f64, base_lrs: Vec<f64>) -> Result<Self, ScheduleError> {
        if t_max == 0 {
            return Err(ScheduleError::ZeroTMax);
        }
        Ok(CosineAnnealing {
            state: CosineAnnealingState {
                t_max,
                eta_min,
                lrs: base_lrs.clone(),
                base_lrs,
                last_epoch: 0,
            },
        })
    }

    /// The schedule of `training.optimization` over the optimizer's initial group rates.
    pub fn from_config(
        config: &OptimizationConfig,
        base_lrs: Vec<f64>,
    ) -> Result<Self, ScheduleError> {
        Self::new(config.t_max, config.eta_min, base_lrs)
    }

    /// Restores a saved state.
    pub fn from_state(state: CosineAnnealingState) -> Result<Self, ScheduleError> {
        if state.t_max == 0 {
            return Err(ScheduleError::ZeroTMax);
        }
        if state.base_lrs.len() != state.lrs.len() {
            return Err(ScheduleError::LengthMismatch {
                base: state.base_lrs.len(),
                current: state.lrs.len(),
            });
        }
        if state.last_epoch < 0 {
            return Err(ScheduleError::NegativeEpoch(state.last_epoch));
        }
        Ok(CosineAnnealing { state })
    }

    /// The state to save.
    pub fn state(&self) -> &CosineAnnealingState {
        &self.state
    }

    /// Current rates, one per group.
    pub fn lrs(&self) -> &[f64] {
        &self.state.lrs
    }

    /// Number of steps taken.
    pub fn last_epoch(&self) -> i64 {
        self.state.last_epoch
    }

    /// torch's `scheduler.step()`: advances `last_epoch` and returns the new rates. The trainer
    /// calls it at the start of every epoch and hands the rates to the optimizer.
    pub fn step(&mut self) -> &[f64] {
        let state = &mut self.state;
        state.last_epoch += 1;
        let epoch = state.last_epoch;
        let t_max = state.t_max as i64;
        let t = state.t_max as f64;
        let eta_min = state.eta_min;
        // Operation order as in torch/optim/lr_scheduler.py (CosineAnnealingLR.get_lr).
        if (epoch - 1 - t_max).rem_euclid(2 * t_max) == 0 {
            for (lr, base) in state.lrs.iter_mut().zip(&state.base_lrs) {
                *lr += (base - eta_min) * (1.0 - (PI / t).cos()) / 2.0;
            }
        } else {
            let ratio =
                (1.0 + (PI * epoch as f64 / t).cos()) / (1.0 + (PI * (epoch - 1) as f64 / t).cos());
            for lr in &mut state.lrs {
                *lr = ratio * (*lr - eta_min) + eta_min;
            }
        }
        &state.lrs
    }

    /// The rates 0-based epoch `epoch` trains with when the schedule is stepped at every epoch
    /// start (after `epoch + 1` steps from a fresh schedule), bitwise what an uninterrupted run
    /// computes.
    pub fn lr_at(&self, epoch: usize) -> Vec<f64> {
        let mut replay = CosineAnnealing {
            state: CosineAnnealingState {
                lrs: self.state.base_lrs.clone(),
                last_epoch: 0,
                ..self.state.clone()
            },
        };
        for _ in 0..=epoch {
            replay.step();
        }
        replay.state.lrs
    }

    /// The textbook closed form `eta_min + (base − eta_min)(1 + cos(π·last_epoch/T_max))/2` (what
    /// torch's `_get_closed_form_lr` returns); equal to [`CosineAnnealing::step`]'s rates up to
    /// rounding.
    pub fn closed_form(&self, last_epoch: i64) -> Vec<f64> {
        let t = self.state.t_max as f64;
        let eta_min = self.state.eta_min;
        self.state
            .base_lrs
            .iter()
            .map(|base| {
                eta_min + (base - eta_min) * (1.0 + (PI * last_epoch as f64 / t).cos()) / 2.0
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_epoch_runs_at_eta_min_and_matches_the_closed_form() {
        let mut schedule = CosineAnnealing::new(40, 0.0, vec![1e-3, 1e-5]).expect("schedule");
        let mut seen = Vec::new();
        for epoch in 0..40 {
            let lrs = schedule.step().to_vec();
            let closed = schedule.closed_form(epoch + 1);
            for (a, b) in lrs.iter().zip(&closed) {
                assert!((a - b).abs() <= 1e-12 * b.abs().max(1e-12), "{a} vs {b}");
            }
            seen.push(lrs);
        }
        assert_eq!(seen[39], [0.0, 0.0]);
        assert!(seen[0][0] < 1e-3 && seen[0][0] > 0.99e-3);
    }

    #[test]
    fn lr_at_replays_and_state_round_trips() {
        let mut schedule = CosineAnnealing::new(5, 1e-6, vec![2e-3]).expect("schedule");
        let mut history = Vec::new();
        for _ in 0..13 {
            history.push(schedule.step().to_vec());
        }
        for (epoch, lrs) in history.iter().enumerate() {
            assert_eq!(&schedule.lr_at(epoch), lrs, "epoch {epoch}");
        }
        let json = serde_json::to_string(schedule.state()).expect("json");
        let mut back =
            CosineAnnealing::from_state(serde_json::from_str(&json).expect("parse")).expect("ok");
        assert_eq!(back, schedule);
        assert_eq!(back.step(), schedule.step());
        assert!(CosineAnnealing::new(0, 0.0, vec![1.0]).is_err());
        let mut broken = schedule.state().clone();
        broken.lrs.push(1.0);
        assert!(CosineAnnealing::from_state(broken).is_err());
    }
}
