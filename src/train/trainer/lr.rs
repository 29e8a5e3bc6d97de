//! The learning rate of every step: the reference's per-epoch cosine annealing, optionally
//! scaled by a linear warm-up over the first optimizer steps (*slt extension*).

use crate::train::schedule::CosineAnnealing;

/// Cosine annealing (stepped at epoch starts) times an optional linear warm-up.
#[derive(Debug, Clone)]
pub struct LrSchedule {
    /// The per-epoch schedule (its state goes into checkpoints).
    pub cosine: CosineAnnealing,
    /// Warm-up length in optimizer steps (0 = none).
    pub warmup_steps: usize,
}

impl LrSchedule {
    /// Warm-up factor of the step that follows `global_step` completed steps.
    pub fn warmup_factor(&self, global_step: u64) -> f64 {
        if self.warmup_steps == 0 {
            return 1.0;
        }
        ((global_step + 1) as f64 / self.warmup_steps as f64).min(1.0)
    }

    /// Group rates for the step that follows `global_step` completed steps. Without warm-up
    /// these are exactly the cosine schedule's rates (no multiplication, so bitwise the
    /// reference's).
    pub fn rates(&self, global_step: u64) -> Vec<f64> {
        let factor = self.warmup_factor(global_step);
        if factor == 1.0 {
            return self.cosine.lrs().to_vec();
        }
        self.cosine.lrs().iter().map(|lr| lr * factor).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_ramps_linearly_then_leaves_the_cosine_rates_untouched() {
        let cosine = CosineAnnealing::new(10, 0.0, vec![1e-3, 2e-3]).expect("schedule");
        let schedule = LrSchedule {
            cosine,
            warmup_steps: 4,
        };
        assert_eq!(schedule.rates(0), vec![0.25e-3, 0.5e-3]);
        assert_eq!(schedule.rates(1), vec![0.5e-3, 1e-3]);
        assert_eq!(schedule.rates(3), vec![1e-3, 2e-3]);
        assert_eq!(schedule.rates(100), vec![1e-3, 2e-3]);
        let plain = LrSchedule {
            cosine: CosineAnnealing::new(10, 0.0, vec![1e-3]).expect("schedule"),
            warmup_steps: 0,
        };
        assert_eq!(plain.rates(0), vec![1e-3]);
    }
}
