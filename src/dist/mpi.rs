//! The `mpi` backend (cargo feature `mpi`): rsmpi over the system MPI, for jobs started by
//! `mpirun -np N` or `srun --mpi=pmi2|pmix`.
//!
//! Rank and world size come from MPI itself; [`MpiCollective::init`] compares them with what
//! the launcher's environment says, which catches the classic `srun` without `--mpi=` mistake
//! (MPICH then starts N independent singletons, each believing it is rank 0 of 1).
//!
//! MPI's default error handler aborts the whole job on a communication error, and `mpirun`
//! then stops every rank, so a dead peer never leaves the others hanging here either; the
//! `Result`s of this backend carry argument errors only. MPI is initialised with
//! `MPI_THREAD_SERIALIZED`: the group may move between threads (the trait requires `Send`),
//! and `&mut self` rules out concurrent calls.

use ::mpi::collective::{CommunicatorCollectives, Root, SystemOperation};
use ::mpi::datatype::PartitionMut;
use ::mpi::environment::{Threading, Universe};
use ::mpi::topology::{Communicator, SimpleCommunicator};

use super::collective::{Collective, CollectiveError, Op};
use super::DistError;

/// A member of `MPI_COMM_WORLD`.
pub struct MpiCollective {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    scratch_f32: Vec<f32>,
    scratch_f64: Vec<f64>,
    // Dropped last: finalises MPI.
    _universe: Universe,
}

// SAFETY: MPI is initialised with MPI_THREAD_SERIALIZED (checked in `init`), which permits MPI
// calls from any thread as long as they are not concurrent; every call goes through `&mut
// self` (or `&self` for rank/size, which make no MPI call), so no two threads can call MPI on
// this group at the same time.
unsafe impl Send for MpiCollective {}

impl std::fmt::Debug for MpiCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpiCollective")
            .field("rank", &self.rank)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl MpiCollective {
    /// Initialises MPI and checks that MPI's rank and world size are `expected` (rank, world)
    /// when given (the launcher environment's view).
    pub fn init(expected: Option<(usize, usize)>) -> Result<Self, DistError> {
        let unavailable = |why: String| DistError::Unavailable {
            backend: "mpi".into(),
            why,
        };
        let (universe, level) = ::mpi::initialize_with_threading(Threading::Serialized)
            .ok_or_else(|| unavailable("MPI was already initialised in this process".into()))?;
        if !matches!(level, Threading::Serialized | Threading::Multiple) {
            return Err(unavailable(format!(
                "the MPI library grants thread level {level:?}, slt needs Serialized"
            )));
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        if let Some((er, ew)) = expected {
            if (er, ew) != (rank, size) {
                return Err(unavailable(format!(
                    "MPI says rank {rank} of {size}, the launcher's environment says rank {er} \
                     of {ew}; under srun pass --mpi=pmi2 (MPICH) or --mpi=pmix (Open MPI), or \
                     use SLT_DIST_BACKEND=tcp"
                )));
            }
        }
        Ok(Self {
            world,
            rank,
            size,
            scratch_f32: Vec::new(),
            scratch_f64: Vec::new(),
            _universe: universe,
        })
    }

    /// The world communicator (for benchmarks and MPI-specific code).
    pub fn communicator(&self) -> &SimpleCommunicator {
        &self.world
    }

    fn count_ok(&self, op: Op, len: usize) -> Result<(), CollectiveError> {
        if len > i32::MAX as usize {
            return Err(CollectiveError::Invalid {
                rank: self.rank,
                op,
                what: format!("{len} elements exceed MPI's count limit of 2^31 - 1"),
            });
        }
        Ok(())
    }
}

impl Collective for MpiCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.size
    }

    fn backend(&self) -> &'static str {
        "mpi"
    }

    fn all_reduce_sum_f32(&mut self, buf: &mut [f32]) -> Result<(), CollectiveError> {
        self.count_ok(Op::AllReduceF32, buf.len())?;
        // rsmpi has no MPI_IN_PLACE: reduce from a copy.
        self.scratch_f32.clear();
        self.scratch_f32.extend_from_slice(buf);
        self.world
            .all_reduce_into(&self.scratch_f32[..], buf, SystemOperation::sum());
        Ok(())
    }

    fn all_reduce_sum_f64(&mut self, buf: &mut [f64]) -> Result<(), CollectiveError> {
        self.count_ok(Op::AllReduceF64, buf.len())?;
        self.scratch_f64.clear();
        self.scratch_f64.extend_from_slice(buf);
        self.world
            .all_reduce_into(&self.scratch_f64[..], buf, SystemOperation::sum());
        Ok(())
    }

    fn broadcast(&mut self, buf: &mut [u8], root: usize) -> Result<(), CollectiveError> {
        if root >= self.size {
            return Err(CollectiveError::Invalid {
                rank: self.rank,
                op: Op::Broadcast,
                what: format!("root {root} is outside world size {}", self.size),
            });
        }
        self.count_ok(Op::Broadcast, buf.len())?;
        self.world.process_at_rank(root as i32).broadcast_into(buf);
        Ok(())
    }

    fn all_gather_bytes(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        let op = Op::AllGather;
        self.count_ok(op, data.len())?;
        let mut lens = vec![0i32; self.size];
        self.world
            .all_gather_into(&(data.len() as i32), &mut lens[..]);
        let mut displs = Vec::with_capacity(self.size);
        let mut total: i64 = 0;
        for &l in &lens {
            displs.push(i32::try_from(total).map_err(|_| CollectiveError::Invalid {
                rank: self.rank,
                op,
                what: "gathered data exceed MPI's 2^31 - 1 byte displacement limit".into(),
            })?);
            total += i64::from(l);
        }
        let mut all = vec![0u8; total as usize];
        {
            let mut part = PartitionMut::new(&mut all[..], &lens[..], &displs[..]);
            self.world.all_gather_varcount_into(data, &mut part);
        }
        Ok(lens
            .iter()
            .zip(&displs)
            .map(|(&l, &d)| all[d as usize..(d + l) as usize].to_vec())
            .collect())
    }

    fn barrier(&mut self) -> Result<(), CollectiveError> {
        self.world.barrier();
        Ok(())
    }
}
