//! Data-parallel helpers: start every rank from rank 0's weights, and average gradients.
//!
//! ```no_run
//! # fn demo(vs: &tch::nn::VarStore, pg: &mut slt::dist::ProcessGroup) -> Result<(), slt::dist::ddp::DdpError> {
//! use slt::dist::ddp::{average_gradients, broadcast_parameters, DEFAULT_BUCKET_BYTES};
//! // After building (or loading) the model, before the first step; the order of the
//! // variables must be the same on all ranks (sort by name).
//! let mut named: Vec<_> = vs.variables().into_iter().collect();
//! named.sort_by(|a, b| a.0.cmp(&b.0));
//! let tensors: Vec<_> = named.into_iter().map(|(_, t)| t).collect();
//! broadcast_parameters(&tensors, pg.collective())?;
//! // After each backward:
//! average_gradients(&tensors, pg.collective(), DEFAULT_BUCKET_BYTES)?;
//! # Ok(()) }
//! ```

use std::hash::Hasher;

use tch::{Device, Kind, TchError, Tensor};

use super::collective::{Collective, CollectiveError};

/// Gradient bucket size: torch DDP's 25 MiB.
pub const DEFAULT_BUCKET_BYTES: usize = 25 * 1024 * 1024;
/// Parameter broadcast bucket size.
const BROADCAST_BUCKET_BYTES: usize = 64 * 1024 * 1024;

/// A failure of a DDP helper.
#[derive(Debug, thiserror::Error)]
pub enum DdpError {
    /// The underlying collective failed.
    #[error(transparent)]
    Collective(#[from] CollectiveError),
    /// The ranks hold different models (count, shapes or kinds of the tensors).
    #[error(
        "the model differs between ranks: rank {rank} has {theirs}, rank 0 has {root} \
         (same config and the same parameter order on every rank?)"
    )]
    ModelMismatch {
        /// The first rank that differs from rank 0.
        rank: usize,
        /// Rank 0's description (tensor count and layout hash).
        root: String,
        /// That rank's description.
        theirs: String,
    },
    /// A tensor cannot be handled (kind, layout).
    #[error("tensor #{index}: {what}")]
    Unsupported {
        /// Index in the slice given.
        index: usize,
        /// What is wrong.
        what: String,
    },
    /// A tensor operation failed.
    #[error("tensor #{index}: {source}")]
    Tensor {
        /// Index in the slice given.
        index: usize,
        /// The tch error.
        source: TchError,
    },
}

/// Copies rank 0's values of `tensors` (parameters and buffers, any kind, any device) into
/// every rank's tensors. First checks that all ranks hold the same tensor count, shapes and
/// kinds, so a config mismatch is an error on every rank rather than garbage or a hang.
pub fn broadcast_parameters(
    tensors: &[Tensor],
    collective: &mut dyn Collective,
) -> Result<(), DdpError> {
    if collective.world_size() == 1 {
        return Ok(());
    }
    check_same_layout(tensors, collective)?;
    let is_root = collective.rank() == 0;
    let mut start = 0;
    while start < tensors.len() {
        // Bucket [start, end): at least one tensor, at most BROADCAST_BUCKET_BYTES otherwise.
        let mut end = start;
        let mut bytes = 0usize;
        while end < tensors.len() {
            let b = byte_size(&tensors[end]);
            if end > start && bytes + b > BROADCAST_BUCKET_BYTES {
                break;
            }
            bytes += b;
            end += 1;
        }
        let mut buf = vec![0u8; bytes];
        if is_root {
            let mut at = 0;
            for (index, t) in tensors.iter().enumerate().take(end).skip(start) {
                let b = byte_size(t);
                t.f_copy_data_u8(&mut buf[at..at + b], t.numel())
                    .map_err(|source| DdpError::Tensor { index, source })?;
                at += b;
            }
        }
        collective.broadcast(&mut buf, 0)?;
        if !is_root {
            let mut at = 0;
            for (index, t) in tensors.iter().enumerate().take(end).skip(start) {
                let b = byte_size(t);
                let terr = |source| DdpError::Tensor { index, source };
                let src = Tensor::f_from_data_size(&buf[at..at + b], &t.size(), t.kind())
                    .map_err(terr)?;
                let mut dst = t.shallow_clone();
                tch::no_grad(|| dst.f_copy_(&src)).map_err(terr)?;
                at += b;
            }
        }
        start = end;
    }
    Ok(())
}

/// Averages the gradients of `params` over all ranks, in place.
///
/// Parameters with `requires_grad() == false` are skipped (the same on every rank, since the
/// model is). The others are packed, in the order given, into buckets of up to
/// `bucket_bytes` (one kind per bucket, Float or Double), summed with one all-reduce per
/// bucket, divided by the world size and written back. A parameter without a gradient on
/// some ranks counts as zeros there and receives the average; one without a gradient on every
/// rank keeps no gradient (torch DDP's rule for globally unused parameters), so an optimizer
/// that skips gradient-less parameters behaves the same with 1 or N ranks.
pub fn average_gradients(
    params: &[Tensor],
    collective: &mut dyn Collective,
    bucket_bytes: usize,
) -> Result<(), DdpError> {
    let world = collective.world_size();
    if world == 1 {
        return Ok(());
    }
    let trainable: Vec<usize> = (0..params.len())
        .filter(|&i| params[i].requires_grad())
        .collect();
    // Which parameters have a gradient on at least one rank (a count per parameter).
    let mut present: Vec<f32> = trainable
        .iter()
        .map(|&i| f32::from(u8::from(params[i].grad().defined())))
        .collect();
    collective.all_reduce_sum_f32(&mut present)?;
    let used: Vec<usize> = trainable
        .iter()
        .zip(&present)
        .filter(|(_, &n)| n > 0.0)
        .map(|(&i, _)| i)
        .collect();
    for &i in &used {
        if !matches!(params[i].kind(), Kind::Float | Kind::Double) {
            return Err(DdpError::Unsupported {
                index: i,
                what: format!(
                    "gradient averaging supports Float and Double parameters, not {:?}",
                    params[i].kind()
                ),
            });
        }
    }
    let mut start = 0;
    while start < used.len() {
        let kind = params[used[start]].kind();
        let device = params[used[start]].device();
        let mut end = start;
        let mut bytes = 0usize;
        while end < used.len() {
            let p = &params[used[end]];
            let b = byte_size(p);
            if p.kind() != kind || p.device() != device || (end > start && bytes + b > bucket_bytes)
            {
                break;
            }
            bytes += b;
            end += 1;
        }
        reduce_bucket(params, &used[start..end], kind, device, collective)?;
        start = end;
    }
    Ok(())
}

/// Packs the gradients of `members` into one flat tensor, all-reduces it, divides by the world
/// size and writes the slices back (creating gradients where a rank had none).
fn reduce_bucket(
    params: &[Tensor],
    members: &[usize],
    kind: Kind,
    device: Device,
    collective: &mut dyn Collective,
) -> Result<(), DdpError> {
    let total: i64 = members.iter().map(|&i| params[i].numel() as i64).sum();
    let first = members.first().copied().unwrap_or(0);
    let mut flat = Tensor::f_zeros([total], (kind, device)).map_err(|source| DdpError::Tensor {
        index: first,
        source,
    })?;
    let mut at = 0i64;
    for &i in members {
        let n = params[i].numel() as i64;
        let grad = params[i].grad();
        if grad.defined() {
            let terr = |source| DdpError::Tensor { index: i, source };
            let src = grad.f_reshape([-1]).map_err(terr)?;
            tch::no_grad(|| flat.f_narrow(0, at, n)?.f_copy_(&src)).map_err(terr)?;
        }
        at += n;
    }
    collective.all_reduce_tensor(&mut flat)?;
    let world = collective.world_size() as f64;
    tch::no_grad(|| flat.f_div_scalar_(world).map(drop)).map_err(|source| DdpError::Tensor {
        index: first,
        source,
    })?;
    let mut at = 0i64;
    for &i in members {
        let p = &params[i];
        let n = p.numel() as i64;
        let terr = |source| DdpError::Tensor { index: i, source };
        let mut grad = p.grad();
        if !grad.defined() {
            grad = zero_grad_of(p).map_err(terr)?;
        }
        let src = flat
            .f_narrow(0, at, n)
            .and_then(|s| s.f_view(p.size().as_slice()));
        let src = src.map_err(terr)?;
        tch::no_grad(|| grad.f_copy_(&src)).map_err(terr)?;
        at += n;
    }
    Ok(())
}

/// Gives `p` a zero gradient (tch cannot assign `.grad` directly): back-propagates
/// `0 · sum(p)`, which accumulates zeros of `p`'s shape into a fresh gradient.
fn zero_grad_of(p: &Tensor) -> Result<Tensor, TchError> {
    tch::with_grad(|| p.f_sum(p.kind())?.f_mul_scalar(0.0)?.f_backward())?;
    let g = p.grad();
    if g.defined() {
        Ok(g)
    } else {
        Err(TchError::Torch(
            "could not create a gradient for a parameter without one".into(),
        ))
    }
}

fn byte_size(t: &Tensor) -> usize {
    t.numel() * t.kind().elt_size_in_bytes()
}

/// All ranks compare (tensor count, hash of kinds and shapes) with rank 0's.
fn check_same_layout(tensors: &[Tensor], collective: &mut dyn Collective) -> Result<(), DdpError> {
    let mut h = Fnv64::default();
    for t in tensors {
        h.write(format!("{:?}", t.kind()).as_bytes());
        for d in t.size() {
            h.write_i64(d);
        }
        h.write_u8(b';');
    }
    let mut mine = Vec::with_capacity(16);
    mine.extend_from_slice(&(tensors.len() as u64).to_le_bytes());
    mine.extend_from_slice(&h.finish().to_le_bytes());
    let all = collective.all_gather_bytes(&mine)?;
    let describe = |b: &[u8]| {
        let word = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[i..i + 8]);
            u64::from_le_bytes(a)
        };
        if b.len() == 16 {
            format!("{} tensors (layout hash {:016x})", word(0), word(8))
        } else {
            format!("an unreadable layout ({} bytes)", b.len())
        }
    };
    if let Some(rank) = all.iter().position(|b| *b != all[0]) {
        return Err(DdpError::ModelMismatch {
            rank,
            root: describe(&all[0]),
            theirs: describe(&all[rank]),
        });
    }
    Ok(())
}

/// FNV-1a, 64 bit: a stable hash (std's is randomly keyed per process).
struct Fnv64(u64);

impl Default for Fnv64 {
    fn default() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }
}

impl Hasher for Fnv64 {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::SingleProcess;

    #[test]
    fn single_process_leaves_everything_alone() {
        let p = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        (&p * 3.0).sum(Kind::Float).backward();
        average_gradients(&[p.shallow_clone()], &mut SingleProcess, 8).expect("average");
        assert_eq!(Vec::<f32>::try_from(p.grad()).expect("grad"), [3.0, 3.0]);
        broadcast_parameters(&[p.shallow_clone()], &mut SingleProcess).expect("broadcast");
    }

    #[test]
    fn zero_grad_is_created_with_the_parameter_shape() {
        let p = Tensor::from_slice(&[f32::INFINITY, 2.0, 3.0])
            .view([3, 1])
            .set_requires_grad(true);
        assert!(!p.grad().defined());
        let g = zero_grad_of(&p).expect("grad");
        assert_eq!(g.size(), [3, 1]);
        assert_eq!(
            Vec::<f32>::try_from(g.view(-1)).expect("vec"),
            [0.0, 0.0, 0.0]
        );
    }

    #[test]
    fn fnv_is_stable() {
        let mut h = Fnv64::default();
        h.write(b"a");
        assert_eq!(h.finish(), 0xaf63_dc4c_8601_ec8c);
    }
}
