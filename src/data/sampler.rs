//! `torch.utils.data.DistributedSampler` semantics with a resumable cursor.
//!
//! Training: every epoch the dataset indices are shuffled with a generator keyed by
//! (seed, epoch) — the same permutation on every rank — padded by repeating indices from the
//! front until the length is a multiple of the world size, and rank `r` takes positions
//! `r, r + world, r + 2·world, …`. Evaluation: the order is sequential and nothing is padded,
//! so gathered hypotheses cover every sample exactly once.
//!
//! Batches are consecutive chunks of a rank's shard (`drop_last = False`, as the reference).
//! A [`SamplerCursor`] (epoch, next batch) identifies a position exactly, so a resumed run
//! continues with the very batch it would have seen.

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use super::rng::{data_rng, Purpose};

/// Position in the stream of batches: the next batch to produce is `batch` of `epoch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct SamplerCursor {
    /// 0-based epoch.
    pub epoch: u64,
    /// 0-based index of the next batch within the epoch.
    pub batch: usize,
}

/// How the indices of one epoch are ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleOrder {
    /// A permutation drawn from (seed, epoch).
    Shuffled {
        /// Base seed (the reference's DistributedSampler uses 0).
        seed: u64,
    },
    /// 0, 1, 2, …
    Sequential,
}

/// How shards are made equal across ranks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShardPadding {
    /// Repeat indices from the front so every rank gets `ceil(n / world)` samples
    /// (DistributedSampler with `drop_last = False`; used for training).
    RepeatToEqual,
    /// No repetition: shards differ by at most one sample (used for evaluation).
    None,
}

/// One rank's view of a dataset, batch by batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributedSampler {
    dataset_len: usize,
    rank: usize,
    world_size: usize,
    batch_size: usize,
    order: SampleOrder,
    padding: ShardPadding,
}

/// A sampler built with impossible parameters.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SamplerError {
    /// rank ≥ world size, world size 0 or batch size 0.
    #[error("invalid sampler: rank {rank}, world size {world_size}, batch size {batch_size}")]
    Invalid {
        /// The rank given.
        rank: usize,
        /// The world size given.
        world_size: usize,
        /// The batch size given.
        batch_size: usize,
    },
}

impl DistributedSampler {
    /// A sampler over `dataset_len` samples.
    pub fn new(
        dataset_len: usize,
        rank: usize,
        world_size: usize,
        batch_size: usize,
        order: SampleOrder,
        padding: ShardPadding,
    ) -> Result<Self, SamplerError> {
        if world_size == 0 || rank >= world_size || batch_size == 0 {
            return Err(SamplerError::Invalid {
                rank,
                world_size,
                batch_size,
            });
        }
        Ok(Self {
            dataset_len,
            rank,
            world_size,
            batch_size,
            order,
            padding,
        })
    }

    /// The training sampler: shuffled when `shuffle`, padded to equal shards.
    pub fn train(
        dataset_len: usize,
        rank: usize,
        world_size: usize,
        batch_size: usize,
        shuffle: bool,
        seed: u64,
    ) -> Result<Self, SamplerError> {
        let order = if shuffle {
            SampleOrder::Shuffled { seed }
        } else {
            SampleOrder::Sequential
        };
        Self::new(
            dataset_len,
            rank,
            world_size,
            batch_size,
            order,
            ShardPadding::RepeatToEqual,
        )
    }

    /// The evaluation sampler: sequential, sharded without repetition.
    pub fn eval(
        dataset_len: usize,
        rank: usize,
        world_size: usize,
        batch_size: usize,
    ) -> Result<Self, SamplerError> {
        Self::new(
            dataset_len,
            rank,
            world_size,
            batch_size,
            SampleOrder::Sequential,
            ShardPadding::None,
        )
    }

    /// Number of samples this rank sees per epoch.
    pub fn shard_len(&self) -> usize {
        match self.padding {
            ShardPadding::RepeatToEqual => self.dataset_len.div_ceil(self.world_size),
            ShardPadding::None => {
                (self.dataset_len + self.world_size - 1 - self.rank) / self.world_size
            }
        }
    }

    /// Number of batches per epoch on this rank (the last one may be short).
    pub fn batches_per_epoch(&self) -> usize {
        self.shard_len().div_ceil(self.batch_size)
    }

    /// This rank's sample indices for `epoch`, in order.
    pub fn shard(&self, epoch: u64) -> Vec<usize> {
        let mut indices: Vec<usize> = (0..self.dataset_len).collect();
        if let SampleOrder::Shuffled { seed } = self.order {
            indices.shuffle(&mut data_rng(seed, epoch, 0, Purpose::Shuffle));
        }
        if self.padding == ShardPadding::RepeatToEqual && !indices.is_empty() {
            let total = self.shard_len() * self.world_size;
            let mut next = 0;
            while indices.len() < total {
                indices.push(indices[next]);
                next += 1;
            }
        }
        indices
            .into_iter()
            .skip(self.rank)
            .step_by(self.world_size)
            .collect()
    }

    /// The batches of `epoch` from `first_batch` on, each with the cursor that follows it.
    pub fn batches(&self, epoch: u64, first_batch: usize) -> Vec<(SamplerCursor, Vec<usize>)> {
        let shard = self.shard(epoch);
        shard
            .chunks(self.batch_size)
            .enumerate()
            .skip(first_batch)
            .map(|(i, chunk)| {
                (
                    SamplerCursor {
                        epoch,
                        batch: i + 1,
                    },
                    chunk.to_vec(),
                )
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_a_padded_permutation_and_agree_across_ranks() {
        let world = 3;
        let samplers: Vec<_> = (0..world)
            .map(|r| DistributedSampler::train(10, r, world, 2, true, 7).unwrap())
            .collect();
        let mut all: Vec<usize> = samplers.iter().flat_map(|s| s.shard(4)).collect();
        assert_eq!(all.len(), 12, "padded to a multiple of the world size");
        assert!(samplers.iter().all(|s| s.shard_len() == 4));
        all.sort_unstable();
        all.dedup();
        assert_eq!(all, (0..10).collect::<Vec<_>>(), "every sample is seen");
        assert_eq!(samplers[1].shard(4), samplers[1].shard(4), "deterministic");
        assert_ne!(samplers[1].shard(4), samplers[1].shard(5), "epochs differ");
    }

    #[test]
    fn padding_repeats_from_the_front_like_torch() {
        // Unshuffled, 5 samples over 4 ranks: [0 1 2 3 4 0 1 2] → rank 1 gets [1, 0].
        let s = DistributedSampler::train(5, 1, 4, 1, false, 0).unwrap();
        assert_eq!(s.shard(0), vec![1, 0]);
        // Fewer samples than ranks: the list is repeated as often as needed.
        let s = DistributedSampler::train(2, 4, 5, 1, false, 0).unwrap();
        assert_eq!(s.shard(0), vec![0]);
    }

    #[test]
    fn eval_shards_are_sequential_and_disjoint() {
        let shards: Vec<Vec<usize>> = (0..3)
            .map(|r| DistributedSampler::eval(7, r, 3, 2).unwrap().shard(0))
            .collect();
        assert_eq!(shards, vec![vec![0, 3, 6], vec![1, 4], vec![2, 5]]);
        assert_eq!(
            DistributedSampler::eval(7, 2, 3, 2)
                .unwrap()
                .batches_per_epoch(),
            1
        );
    }

    #[test]
    fn resuming_from_a_cursor_gives_the_remaining_batches() {
        let s = DistributedSampler::train(11, 0, 1, 3, true, 1).unwrap();
        let full = s.batches(2, 0);
        assert_eq!(full.len(), 4);
        assert_eq!(full.last().map(|b| b.1.len()), Some(2), "drop_last = False");
        let (cursor, _) = full[1].clone();
        let rest = s.batches(cursor.epoch, cursor.batch);
        assert_eq!(rest, full[2..].to_vec());
    }

    #[test]
    fn invalid_parameters_are_rejected() {
        assert!(DistributedSampler::train(4, 2, 2, 1, true, 0).is_err());
        assert!(DistributedSampler::train(4, 0, 0, 1, true, 0).is_err());
        assert!(DistributedSampler::eval(4, 0, 1, 0).is_err());
    }
}
