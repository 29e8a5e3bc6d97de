//! The collective-communication trait every backend implements, its errors, and the
//! single-process implementation.
//!
//! All operations are blocking and must be called by every rank of the group in the same
//! order with matching arguments (same length, same root). Backends check what they can (the
//! TCP ring compares an operation header with its neighbour before any data moves) and report
//! a mismatch as an error naming the peer, instead of hanging or mixing up buffers.
//!
//! Tensor helpers are provided methods on top of the slice operations: a contiguous CPU tensor
//! is reduced in place through its memory; any other tensor (non-contiguous, on a GPU) goes
//! through a contiguous CPU copy. A backend that can do better (NCCL on device memory)
//! overrides them.

use std::fmt;
use std::io;
use std::time::Duration;

use tch::{Device, Kind, Tensor};

/// The collective operations, for error messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    /// Connecting the group.
    Setup,
    /// Sum all-reduce of `f32`.
    AllReduceF32,
    /// Sum all-reduce of `f64`.
    AllReduceF64,
    /// Broadcast of bytes.
    Broadcast,
    /// All-gather of byte strings.
    AllGather,
    /// Barrier.
    Barrier,
}

impl Op {
    /// Short name (`all_reduce_sum_f32`, …).
    pub fn name(self) -> &'static str {
        match self {
            Self::Setup => "setup",
            Self::AllReduceF32 => "all_reduce_sum_f32",
            Self::AllReduceF64 => "all_reduce_sum_f64",
            Self::Broadcast => "broadcast",
            Self::AllGather => "all_gather_bytes",
            Self::Barrier => "barrier",
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A failed collective. Each variant names the operation and, where one is to blame, the peer
/// rank; `rank` is the rank that reports the error.
#[derive(Debug, thiserror::Error)]
pub enum CollectiveError {
    /// The peer closed its connection (it exited, crashed, or failed an operation itself).
    #[error("rank {rank}: {op}: peer rank {peer} closed the connection (it exited or failed)")]
    PeerClosed {
        /// Reporting rank.
        rank: usize,
        /// The operation.
        op: Op,
        /// The peer.
        peer: usize,
    },
    /// Nothing arrived from (or could be sent to) the peer within the operation timeout.
    #[error(
        "rank {rank}: {op}: no progress with peer rank {peer} within {timeout:?} (is it stuck, \
         or busy outside the collective, e.g. evaluating alone? see SLT_DIST_TIMEOUT)"
    )]
    Timeout {
        /// Reporting rank.
        rank: usize,
        /// The operation.
        op: Op,
        /// The peer waited for.
        peer: usize,
        /// The operation timeout.
        timeout: Duration,
    },
    /// Another I/O error on the connection with a peer.
    #[error("rank {rank}: {op}: connection with peer rank {peer}: {source}")]
    Io {
        /// Reporting rank.
        rank: usize,
        /// The operation.
        op: Op,
        /// The peer.
        peer: usize,
        /// The I/O error.
        source: io::Error,
    },
    /// The peer called a different operation, or the same one with other arguments.
    #[error("rank {rank}: {op}: peer rank {peer} is out of step: this rank runs {mine}, the peer runs {theirs}")]
    Mismatch {
        /// Reporting rank.
        rank: usize,
        /// The operation.
        op: Op,
        /// The peer.
        peer: usize,
        /// This rank's call.
        mine: String,
        /// The peer's call.
        theirs: String,
    },
    /// An earlier operation failed; the group cannot be used any more.
    #[error("rank {rank}: {op}: the process group is unusable after an earlier failure: {cause}")]
    Broken {
        /// Reporting rank.
        rank: usize,
        /// The operation now refused.
        op: Op,
        /// The first failure.
        cause: String,
    },
    /// The arguments are invalid (root out of range, unsupported tensor kind, …).
    #[error("rank {rank}: {op}: {what}")]
    Invalid {
        /// Reporting rank.
        rank: usize,
        /// The operation.
        op: Op,
        /// What is wrong.
        what: String,
    },
    /// A tensor operation failed while packing or unpacking.
    #[error("rank {rank}: {op}: tensor error: {source}")]
    Tensor {
        /// Reporting rank.
        rank: usize,
        /// The operation.
        op: Op,
        /// The tch error.
        source: tch::TchError,
    },
}

/// Collective communication within a fixed group of `world_size()` ranks.
pub trait Collective: Send {
    /// This process's rank, `0..world_size()`.
    fn rank(&self) -> usize;

    /// Number of ranks in the group.
    fn world_size(&self) -> usize;

    /// The backend's name (`single`, `tcp`, `mpi`, …).
    fn backend(&self) -> &'static str;

    /// Replaces `buf` on every rank by the element-wise sum over all ranks. Every rank gets
    /// bitwise identical results.
    fn all_reduce_sum_f32(&mut self, buf: &mut [f32]) -> Result<(), CollectiveError>;

    /// [`Collective::all_reduce_sum_f32`] for `f64`.
    fn all_reduce_sum_f64(&mut self, buf: &mut [f64]) -> Result<(), CollectiveError>;

    /// Copies `root`'s `buf` into `buf` on every other rank (all lengths must be equal).
    fn broadcast(&mut self, buf: &mut [u8], root: usize) -> Result<(), CollectiveError>;

    /// Every rank's `data` (lengths may differ), indexed by rank.
    fn all_gather_bytes(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError>;

    /// Returns once every rank has entered the barrier.
    fn barrier(&mut self) -> Result<(), CollectiveError>;

    /// Sum all-reduce of an `f32` or `f64` tensor, in place.
    fn all_reduce_tensor(&mut self, t: &mut Tensor) -> Result<(), CollectiveError> {
        let (rank, op) = (self.rank(), op_for_kind(t.kind()));
        let Some(op) = op else {
            return Err(CollectiveError::Invalid {
                rank,
                op: Op::AllReduceF32,
                what: format!(
                    "all_reduce_tensor needs a Float or Double tensor, got {:?}",
                    t.kind()
                ),
            });
        };
        with_cpu_memory(t, rank, op, |mem| match mem {
            Memory::F32(s) => self.all_reduce_sum_f32(s),
            Memory::F64(s) => self.all_reduce_sum_f64(s),
            Memory::Bytes(_) => unreachable_kind(rank, op),
        })
    }

    /// Copies `root`'s tensor into `t` on every rank (any kind; same shape and kind everywhere).
    fn broadcast_tensor(&mut self, t: &mut Tensor, root: usize) -> Result<(), CollectiveError> {
        let rank = self.rank();
        with_cpu_memory(t, rank, Op::Broadcast, |mem| match mem {
            Memory::Bytes(b) => self.broadcast(b, root),
            Memory::F32(s) => self.broadcast(bytemuck::cast_slice_mut(s), root),
            Memory::F64(s) => self.broadcast(bytemuck::cast_slice_mut(s), root),
        })
    }
}

fn op_for_kind(kind: Kind) -> Option<Op> {
    match kind {
        Kind::Float => Some(Op::AllReduceF32),
        Kind::Double => Some(Op::AllReduceF64),
        _ => None,
    }
}

fn unreachable_kind(rank: usize, op: Op) -> Result<(), CollectiveError> {
    Err(CollectiveError::Invalid {
        rank,
        op,
        what: "internal error: byte view of a float tensor".into(),
    })
}

/// A typed view of a tensor's CPU memory.
pub(crate) enum Memory<'a> {
    /// `Kind::Float`.
    F32(&'a mut [f32]),
    /// `Kind::Double`.
    F64(&'a mut [f64]),
    /// Any other kind, as raw bytes.
    Bytes(&'a mut [u8]),
}

/// Runs `f` on the memory of `t` if it is a contiguous CPU tensor, otherwise on a contiguous
/// CPU copy that is copied back into `t` afterwards.
pub(crate) fn with_cpu_memory<R>(
    t: &mut Tensor,
    rank: usize,
    op: Op,
    f: impl FnOnce(Memory<'_>) -> Result<R, CollectiveError>,
) -> Result<R, CollectiveError> {
    let terr = |source| CollectiveError::Tensor { rank, op, source };
    if t.device() == Device::Cpu && t.is_contiguous() {
        // SAFETY: `t` is a contiguous CPU tensor that we hold mutably; its `numel()` elements
        // of its kind start at `data_ptr()`. No other Rust reference to this memory exists
        // while `f` runs (the caller cannot use `t` meanwhile); views of the same storage held
        // elsewhere are not touched by this thread during the call.
        let mem = unsafe { memory_of(t) };
        return f(mem);
    }
    let mut tmp = t
        .f_to_device(Device::Cpu)
        .and_then(|c| c.f_contiguous())
        .and_then(|c| c.f_detach_copy())
        .map_err(terr)?;
    // SAFETY: `tmp` is a fresh contiguous CPU tensor owned by this function.
    let out = f(unsafe { memory_of(&mut tmp) })?;
    tch::no_grad(|| t.f_copy_(&tmp)).map_err(terr)?;
    Ok(out)
}

/// # Safety
/// `t` must be a contiguous CPU tensor, and no other reference to its memory may be used
/// while the returned view lives.
unsafe fn memory_of(t: &mut Tensor) -> Memory<'_> {
    let n = t.numel();
    let ptr = t.data_ptr();
    if n == 0 || ptr.is_null() {
        return match t.kind() {
            Kind::Float => Memory::F32(&mut []),
            Kind::Double => Memory::F64(&mut []),
            _ => Memory::Bytes(&mut []),
        };
    }
    match t.kind() {
        Kind::Float => Memory::F32(std::slice::from_raw_parts_mut(ptr.cast(), n)),
        Kind::Double => Memory::F64(std::slice::from_raw_parts_mut(ptr.cast(), n)),
        kind => {
            let bytes = n * kind.elt_size_in_bytes();
            Memory::Bytes(std::slice::from_raw_parts_mut(ptr.cast(), bytes))
        }
    }
}

/// The group of one: every operation is a no-op (all-gather returns the caller's data).
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl SingleProcess {
    fn check_root(root: usize) -> Result<(), CollectiveError> {
        if root == 0 {
            Ok(())
        } else {
            Err(CollectiveError::Invalid {
                rank: 0,
                op: Op::Broadcast,
                what: format!("root {root} is outside the world of size 1"),
            })
        }
    }
}

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn world_size(&self) -> usize {
        1
    }

    fn backend(&self) -> &'static str {
        "single"
    }

    fn all_reduce_sum_f32(&mut self, _buf: &mut [f32]) -> Result<(), CollectiveError> {
        Ok(())
    }

    fn all_reduce_sum_f64(&mut self, _buf: &mut [f64]) -> Result<(), CollectiveError> {
        Ok(())
    }

    fn broadcast(&mut self, _buf: &mut [u8], root: usize) -> Result<(), CollectiveError> {
        Self::check_root(root)
    }

    fn all_gather_bytes(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        Ok(vec![data.to_vec()])
    }

    fn barrier(&mut self) -> Result<(), CollectiveError> {
        Ok(())
    }

    fn all_reduce_tensor(&mut self, t: &mut Tensor) -> Result<(), CollectiveError> {
        match op_for_kind(t.kind()) {
            Some(_) => Ok(()),
            None => Err(CollectiveError::Invalid {
                rank: 0,
                op: Op::AllReduceF32,
                what: format!(
                    "all_reduce_tensor needs a Float or Double tensor, got {:?}",
                    t.kind()
                ),
            }),
        }
    }

    fn broadcast_tensor(&mut self, _t: &mut Tensor, root: usize) -> Result<(), CollectiveError> {
        Self::check_root(root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_process_is_identity() {
        let mut c = SingleProcess;
        let mut v = [1.5f32, -2.0];
        c.all_reduce_sum_f32(&mut v).expect("all_reduce");
        assert_eq!(v, [1.5, -2.0]);
        assert_eq!(
            c.all_gather_bytes(b"ab").expect("gather"),
            vec![b"ab".to_vec()]
        );
        c.barrier().expect("barrier");
        let err = c.broadcast(&mut [0u8; 2], 1).expect_err("root 1");
        assert!(err.to_string().contains("root 1"), "{err}");
        let mut t = Tensor::from_slice(&[1i64, 2]);
        let err = c.all_reduce_tensor(&mut t).expect_err("Int64");
        assert!(err.to_string().contains("Int64"), "{err}");
    }

    /// A fake two-rank group whose "other rank" holds fixed data, to test the tensor helpers
    /// (contiguous fast path and the copy path) without processes.
    struct Doubler;

    impl Collective for Doubler {
        fn rank(&self) -> usize {
            0
        }
        fn world_size(&self) -> usize {
            2
        }
        fn backend(&self) -> &'static str {
            "doubler"
        }
        fn all_reduce_sum_f32(&mut self, buf: &mut [f32]) -> Result<(), CollectiveError> {
            buf.iter_mut().for_each(|x| *x *= 2.0);
            Ok(())
        }
        fn all_reduce_sum_f64(&mut self, buf: &mut [f64]) -> Result<(), CollectiveError> {
            buf.iter_mut().for_each(|x| *x *= 2.0);
            Ok(())
        }
        fn broadcast(&mut self, buf: &mut [u8], _root: usize) -> Result<(), CollectiveError> {
            buf.iter_mut().for_each(|b| *b = 7);
            Ok(())
        }
        fn all_gather_bytes(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
            Ok(vec![data.to_vec(), data.to_vec()])
        }
        fn barrier(&mut self) -> Result<(), CollectiveError> {
            Ok(())
        }
    }

    #[test]
    fn tensor_helpers_use_memory_or_a_copy() {
        let mut c = Doubler;
        let mut t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).view([2, 2]);
        c.all_reduce_tensor(&mut t).expect("contiguous");
        assert_eq!(
            Vec::<f32>::try_from(t.view(-1)).expect("vec"),
            [2., 4., 6., 8.]
        );
        // A transposed view is not contiguous: reduced through a copy, written back in place.
        let base = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0]).view([2, 2]);
        let mut tr = base.tr();
        assert!(!tr.is_contiguous());
        c.all_reduce_tensor(&mut tr).expect("strided");
        assert_eq!(
            Vec::<f64>::try_from(base.view(-1)).expect("vec"),
            [2., 4., 6., 8.]
        );
        let mut ints = Tensor::from_slice(&[1i64, 2]);
        c.broadcast_tensor(&mut ints, 0).expect("broadcast");
        assert_eq!(
            Vec::<i64>::try_from(&ints).expect("vec"),
            [0x0707070707070707, 0x0707070707070707]
        );
        let mut empty = Tensor::zeros([0], (Kind::Float, Device::Cpu));
        c.all_reduce_tensor(&mut empty).expect("empty");
    }
}
