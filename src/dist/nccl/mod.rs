//! The `nccl` backend (cargo feature `nccl`): NCCL through cudarc, loaded at run time, so the
//! build needs no CUDA toolkit and a machine without GPU gets errors, never panics.
//!
//! Versions: cudarc is pinned to NCCL 2.29 / CUDA 13.0, the NCCL and CUDA runtime of the torch
//! 2.13 wheels (`nvidia-nccl-cu13` 2.29.7), because the process uses torch's NCCL: once
//! `libtorch_cuda.so` is loaded its `libnccl.so.2` is mapped, and cudarc's `dlopen` of the same
//! file reuses that mapping.
//!
//! Loading ([`prepare`], called by [`super::init`] before anything else): cudarc looks for
//! `libnccl.so` (and a few versioned names, but not `libnccl.so.2`, the only name the wheels
//! ship). When none of its names loads, the library is located — `$SLT_NCCL_LIBRARY`, the
//! `libnccl` torch has mapped, or the wheel's `nvidia/nccl/lib` next to torch — a private
//! directory with a `libnccl.so` symlink to it is made, and the process re-executes itself once
//! with that directory on `LD_LIBRARY_PATH` (the dynamic loader reads the variable only at
//! start). `SLT_NCCL_REEXEC=0` turns the re-execution into an error that names the directory to
//! add instead.
//!
//! Set-up ([`NcclCollective::connect`]): device `LOCAL_RANK` (device 0 when a launcher made
//! one GPU visible per rank); rank 0 draws the unique id, which travels through the rendezvous
//! store; `ncclCommInitRank`; a first all-reduce so connections are made during set-up.
//!
//! Operations run on the CUDA legacy default stream, the stream torch computes on, so they are
//! ordered after the kernels that produced their input. Each call then waits for the stream,
//! polling NCCL's asynchronous error state: an error, or no completion within
//! SLT_DIST_TIMEOUT, aborts the communicator and fails this and every later call (the group is
//! unusable; the launcher stops all ranks). Tensor all-reduce and broadcast work in place on
//! contiguous tensors of this device; the slice methods, other devices and non-contiguous
//! tensors go through a device copy.

mod load;

use std::ffi::{c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::sys as cu;
use cudarc::driver::CudaContext;
use cudarc::nccl::sys as nccl;
use tch::{Device, Kind, Tensor};

pub use load::{prepare, NcclRuntime, ENV_NCCL_LIBRARY, ENV_NCCL_REEXEC};

use super::collective::{Collective, CollectiveError, Op};
use super::{DistError, StoreClient};

/// Settings of [`NcclCollective::connect`].
#[derive(Clone, Debug)]
pub struct NcclOptions {
    /// Longest time one operation may take before the communicator is aborted.
    pub timeout: Duration,
    /// Store key of the unique id (distinct per group of one attempt).
    pub id_key: String,
}

impl Default for NcclOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30 * 60),
            id_key: "nccl/unique_id".into(),
        }
    }
}

fn unavailable(why: impl Into<String>) -> DistError {
    DistError::Unavailable {
        backend: "nccl".into(),
        why: why.into(),
    }
}

/// Runs an FFI call of cudarc, turning a panic (a library or symbol cudarc cannot load) into
/// an error message.
fn guarded<T>(what: &str, f: impl FnOnce() -> T) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("unknown panic");
        format!("{what}: {msg}")
    })
}

/// Ok for `ncclSuccess` (and `ncclInProgress`), else the error's name and NCCL's message.
fn check(result: nccl::ncclResult_t, what: &str) -> Result<(), String> {
    match result {
        nccl::ncclResult_t::ncclSuccess | nccl::ncclResult_t::ncclInProgress => Ok(()),
        error => Err(format!(
            "{what} failed: {}",
            describe(error, std::ptr::null_mut())
        )),
    }
}

/// `ncclGetErrorString` plus `ncclGetLastError` (which says which CUDA call failed).
fn describe(error: nccl::ncclResult_t, comm: nccl::ncclComm_t) -> String {
    let text = |p: *const std::ffi::c_char| {
        // SAFETY: NCCL returns NUL-terminated static strings (or null).
        (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    };
    // SAFETY: both calls only read NCCL's error state.
    let name = guarded("ncclGetErrorString", || {
        text(unsafe { nccl::ncclGetErrorString(error) })
    })
    .ok()
    .flatten();
    let last = guarded("ncclGetLastError", || {
        text(unsafe { nccl::ncclGetLastError(comm) })
    })
    .ok()
    .flatten()
    .filter(|s| !s.is_empty());
    match (name, last) {
        (Some(n), Some(l)) => format!("{error:?} ({n}): {l}"),
        (Some(n), None) => format!("{error:?} ({n})"),
        (None, Some(l)) => format!("{error:?}: {l}"),
        (None, None) => format!("{error:?}"),
    }
}

/// A member of an NCCL communicator on one GPU.
pub struct NcclCollective {
    rank: usize,
    world: usize,
    device: usize,
    ctx: Arc<CudaContext>,
    comm: nccl::ncclComm_t,
    timeout: Duration,
    broken: Option<String>,
}

// SAFETY: the communicator handle is only used through `&mut self` (never concurrently), and
// NCCL permits using a communicator from another thread than the one that created it; the
// CUDA context is bound to the calling thread before every use.
unsafe impl Send for NcclCollective {}

impl std::fmt::Debug for NcclCollective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NcclCollective")
            .field("rank", &self.rank)
            .field("world", &self.world)
            .field("device", &self.device)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl NcclCollective {
    /// Joins the communicator of `world` ranks on CUDA device `local_rank` (or 0 when it is the
    /// only visible device); the unique id goes through `store`. Call [`prepare`] first.
    pub fn connect(
        store: &mut StoreClient,
        rank: usize,
        world: usize,
        local_rank: usize,
        opts: &NcclOptions,
    ) -> Result<Self, DistError> {
        if world == 0 || rank >= world {
            return Err(DistError::Config(format!(
                "rank {rank} is outside world size {world}"
            )));
        }
        // SAFETY: only tries to dlopen the driver library's names.
        if !unsafe { cu::is_culib_present() } {
            return Err(unavailable(
                "the CUDA driver library (libcuda.so) cannot be loaded: no NVIDIA driver on \
                 this machine; use SLT_DIST_BACKEND=tcp",
            ));
        }
        let count = tch::Cuda::device_count().max(0) as usize;
        let device = match count {
            0 => {
                return Err(unavailable(
                    "torch sees no CUDA device (is libtorch_cuda linked, CUDA_VISIBLE_DEVICES \
                     set?); use SLT_DIST_BACKEND=tcp",
                ))
            }
            1 => 0,
            n if local_rank < n => local_rank,
            n => {
                return Err(unavailable(format!(
                    "LOCAL_RANK {local_rank} has no GPU: {n} are visible; start at most {n} \
                     workers per node"
                )))
            }
        };
        let ctx = guarded("CudaContext::new", || CudaContext::new(device))
            .map_err(unavailable)?
            .map_err(|e| unavailable(format!("initialising CUDA device {device}: {e}")))?;

        let mut id = nccl::ncclUniqueId { internal: [0; 128] };
        if rank == 0 {
            // SAFETY: `id` is a valid out-pointer.
            let result = guarded("ncclGetUniqueId", || unsafe {
                nccl::ncclGetUniqueId(&mut id)
            })
            .map_err(unavailable)?;
            check(result, "ncclGetUniqueId").map_err(unavailable)?;
            let bytes: Vec<u8> = id.internal.iter().map(|&c| c as u8).collect();
            store.set(&opts.id_key, &bytes)?;
        } else {
            let bytes = store.get(&opts.id_key)?;
            if bytes.len() != id.internal.len() {
                return Err(DistError::Config(format!(
                    "store key {}: expected a {}-byte NCCL unique id, got {} bytes",
                    opts.id_key,
                    id.internal.len(),
                    bytes.len()
                )));
            }
            for (dst, &b) in id.internal.iter_mut().zip(&bytes) {
                *dst = b as std::ffi::c_char;
            }
        }

        let mut comm: nccl::ncclComm_t = std::ptr::null_mut();
        ctx.bind_to_thread()
            .map_err(|e| unavailable(format!("binding CUDA device {device}: {e}")))?;
        let (nranks, me) = (world as i32, rank as i32);
        // SAFETY: `comm` is a valid out-pointer; `id` was produced by ncclGetUniqueId.
        let result = guarded("ncclCommInitRank", || unsafe {
            nccl::ncclCommInitRank(&mut comm, nranks, id, me)
        })
        .map_err(unavailable)?;
        if result != nccl::ncclResult_t::ncclSuccess || comm.is_null() {
            return Err(unavailable(format!(
                "ncclCommInitRank (rank {rank} of {world}, device {device}) failed: {}",
                describe(result, std::ptr::null_mut())
            )));
        }
        let mut me = Self {
            rank,
            world,
            device,
            ctx,
            comm,
            timeout: opts.timeout,
            broken: None,
        };
        me.barrier()?;
        Ok(me)
    }

    /// The CUDA device index of this rank's communicator.
    pub fn device(&self) -> usize {
        self.device
    }

    fn device_of(&self) -> Device {
        Device::Cuda(self.device)
    }

    fn tensor_err(&self, op: Op) -> impl Fn(tch::TchError) -> CollectiveError {
        let rank = self.rank;
        move |source| CollectiveError::Tensor { rank, op, source }
    }

    /// Enqueues `call` (given the stream) and waits for it, see the module docs.
    fn run(
        &mut self,
        op: Op,
        call: impl FnOnce(nccl::ncclComm_t, nccl::cudaStream_t) -> nccl::ncclResult_t,
    ) -> Result<(), CollectiveError> {
        if let Some(cause) = &self.broken {
            return Err(CollectiveError::Broken {
                rank: self.rank,
                op,
                cause: cause.clone(),
            });
        }
        let outcome = self.enqueue_and_wait(op, call);
        if let Err(cause) = outcome {
            let comm = std::mem::replace(&mut self.comm, std::ptr::null_mut());
            if !comm.is_null() {
                // SAFETY: `comm` is our live communicator; aborting frees it, and it is never
                // used again (replaced by null above).
                let _ = guarded("ncclCommAbort", || unsafe { nccl::ncclCommAbort(comm) });
            }
            self.broken = Some(cause.clone());
            return Err(CollectiveError::Broken {
                rank: self.rank,
                op,
                cause,
            });
        }
        Ok(())
    }

    fn enqueue_and_wait(
        &mut self,
        op: Op,
        call: impl FnOnce(nccl::ncclComm_t, nccl::cudaStream_t) -> nccl::ncclResult_t,
    ) -> Result<(), String> {
        self.ctx
            .bind_to_thread()
            .map_err(|e| format!("binding CUDA device {}: {e}", self.device))?;
        let comm = self.comm;
        // The legacy default stream (null), torch's stream.
        let result = guarded(op.name(), || call(comm, std::ptr::null_mut()))?;
        if !matches!(
            result,
            nccl::ncclResult_t::ncclSuccess | nccl::ncclResult_t::ncclInProgress
        ) {
            return Err(format!("NCCL {op} failed: {}", describe(result, comm)));
        }
        let start = Instant::now();
        let mut pause = Duration::from_micros(20);
        loop {
            // SAFETY: queries the legacy default stream of the bound context.
            let query = guarded("cuStreamQuery", || unsafe {
                cu::cuStreamQuery(std::ptr::null_mut())
            })?;
            match query {
                cu::CUresult::CUDA_SUCCESS => return Ok(()),
                cu::CUresult::CUDA_ERROR_NOT_READY => {}
                error => return Err(format!("CUDA error while waiting for NCCL {op}: {error:?}")),
            }
            let mut state = nccl::ncclResult_t::ncclSuccess;
            // SAFETY: `comm` is live; `state` is a valid out-pointer.
            let polled = guarded("ncclCommGetAsyncError", || unsafe {
                nccl::ncclCommGetAsyncError(comm, &mut state)
            })?;
            for r in [polled, state] {
                if !matches!(
                    r,
                    nccl::ncclResult_t::ncclSuccess | nccl::ncclResult_t::ncclInProgress
                ) {
                    return Err(format!(
                        "NCCL reported an error during {op} (a peer died or failed?): {}",
                        describe(r, comm)
                    ));
                }
            }
            if start.elapsed() > self.timeout {
                return Err(format!(
                    "NCCL {op} did not complete within {:?} (a peer is stuck, dead or out of \
                     step; see SLT_DIST_TIMEOUT); the communicator was aborted",
                    self.timeout
                ));
            }
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_millis(2));
        }
    }

    /// All-reduce (sum) of a contiguous tensor on this device, in place.
    fn all_reduce_device(&mut self, t: &Tensor, op: Op) -> Result<(), CollectiveError> {
        let (dtype, count) = match t.kind() {
            Kind::Float => (nccl::ncclDataType_t::ncclFloat32, t.numel()),
            Kind::Double => (nccl::ncclDataType_t::ncclFloat64, t.numel()),
            other => {
                return Err(CollectiveError::Invalid {
                    rank: self.rank,
                    op,
                    what: format!("NCCL all-reduce needs Float or Double, got {other:?}"),
                })
            }
        };
        if count == 0 {
            return Ok(());
        }
        let ptr = t.data_ptr();
        // SAFETY: `ptr` is the device memory of a contiguous tensor of `count` elements on
        // this rank's device, alive for the call (the caller holds `t`).
        self.run(op, |comm, stream| unsafe {
            nccl::ncclAllReduce(
                ptr as *const c_void,
                ptr,
                count,
                dtype,
                nccl::ncclRedOp_t::ncclSum,
                comm,
                stream,
            )
        })
    }

    /// Broadcast of the bytes of a contiguous tensor on this device, in place.
    fn broadcast_device(&mut self, t: &Tensor, root: usize) -> Result<(), CollectiveError> {
        self.check_root(root)?;
        let bytes = t.numel() * t.kind().elt_size_in_bytes();
        if bytes == 0 {
            return Ok(());
        }
        let ptr = t.data_ptr();
        let root = root as i32;
        // SAFETY: as in `all_reduce_device`, `bytes` bytes at `ptr`.
        self.run(Op::Broadcast, |comm, stream| unsafe {
            nccl::ncclBroadcast(
                ptr as *const c_void,
                ptr,
                bytes,
                nccl::ncclDataType_t::ncclUint8,
                root,
                comm,
                stream,
            )
        })
    }

    fn check_root(&self, root: usize) -> Result<(), CollectiveError> {
        if root < self.world {
            Ok(())
        } else {
            Err(CollectiveError::Invalid {
                rank: self.rank,
                op: Op::Broadcast,
                what: format!("root {root} is outside the world of size {}", self.world),
            })
        }
    }

    /// A contiguous copy of `t` on this device (the tensor itself when it already is one).
    fn on_device(&self, t: &Tensor, op: Op) -> Result<(Tensor, bool), CollectiveError> {
        if t.device() == self.device_of() && t.is_contiguous() {
            return Ok((t.shallow_clone(), false));
        }
        let copy = t
            .f_to_device(self.device_of())
            .and_then(|c| c.f_contiguous())
            .and_then(|c| c.f_detach_copy())
            .map_err(self.tensor_err(op))?;
        Ok((copy, true))
    }

    fn all_reduce_slice<T: tch::kind::Element>(
        &mut self,
        buf: &mut [T],
        op: Op,
    ) -> Result<(), CollectiveError> {
        if buf.is_empty() {
            return Ok(());
        }
        let terr = self.tensor_err(op);
        let t = Tensor::f_from_slice(buf)
            .and_then(|t| t.f_to_device(self.device_of()))
            .map_err(&terr)?;
        self.all_reduce_device(&t, op)?;
        let n = buf.len();
        t.f_copy_data(buf, n).map_err(terr)
    }
}

impl Drop for NcclCollective {
    fn drop(&mut self) {
        if !self.comm.is_null() {
            let comm = self.comm;
            // SAFETY: our live communicator, never used after this. Abort (not destroy) never
            // waits for peers that may be gone.
            let _ = guarded("ncclCommAbort", || unsafe { nccl::ncclCommAbort(comm) });
        }
    }
}

impl Collective for NcclCollective {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn backend(&self) -> &'static str {
        "nccl"
    }

    fn all_reduce_sum_f32(&mut self, buf: &mut [f32]) -> Result<(), CollectiveError> {
        self.all_reduce_slice(buf, Op::AllReduceF32)
    }

    fn all_reduce_sum_f64(&mut self, buf: &mut [f64]) -> Result<(), CollectiveError> {
        self.all_reduce_slice(buf, Op::AllReduceF64)
    }

    fn broadcast(&mut self, buf: &mut [u8], root: usize) -> Result<(), CollectiveError> {
        self.check_root(root)?;
        if buf.is_empty() {
            return Ok(());
        }
        let terr = self.tensor_err(Op::Broadcast);
        let t = Tensor::f_from_slice(buf)
            .and_then(|t| t.f_to_device(self.device_of()))
            .map_err(&terr)?;
        self.broadcast_device(&t, root)?;
        let n = buf.len();
        t.f_copy_data(buf, n).map_err(terr)
    }

    fn all_gather_bytes(&mut self, data: &[u8]) -> Result<Vec<Vec<u8>>, CollectiveError> {
        let op = Op::AllGather;
        let terr = self.tensor_err(op);
        let world = self.world;
        // Lengths first (one i64 per rank), then every rank's bytes padded to the longest.
        let mut lengths = vec![0i64; world];
        lengths[self.rank] = data.len() as i64;
        let mut len_t = Tensor::f_from_slice(&lengths)
            .and_then(|t| t.f_to_device(self.device_of()))
            .map_err(&terr)?;
        // Sum of one-hot vectors = the gather of the lengths (f64 holds them exactly).
        len_t = len_t.f_to_kind(Kind::Double).map_err(&terr)?;
        self.all_reduce_device(&len_t, op)?;
        let lens: Vec<f64> = Vec::<f64>::try_from(&len_t).map_err(&terr)?;
        let lens: Vec<usize> = lens.iter().map(|&l| l as usize).collect();
        let longest = lens.iter().copied().max().unwrap_or(0);
        if longest == 0 {
            return Ok(vec![Vec::new(); world]);
        }
        let mut padded = vec![0u8; longest];
        padded[..data.len()].copy_from_slice(data);
        let send = Tensor::f_from_slice(&padded)
            .and_then(|t| t.f_to_device(self.device_of()))
            .map_err(&terr)?;
        let recv = Tensor::f_zeros([(world * longest) as i64], (Kind::Uint8, self.device_of()))
            .map_err(&terr)?;
        let (src, dst) = (send.data_ptr(), recv.data_ptr());
        // SAFETY: `send` holds `longest` bytes, `recv` `world * longest`, both on this device
        // and alive for the call.
        self.run(op, |comm, stream| unsafe {
            nccl::ncclAllGather(
                src as *const c_void,
                dst,
                longest,
                nccl::ncclDataType_t::ncclUint8,
                comm,
                stream,
            )
        })?;
        let mut all = vec![0u8; world * longest];
        recv.f_copy_data(&mut all, world * longest).map_err(terr)?;
        Ok(all
            .chunks(longest)
            .zip(&lens)
            .map(|(chunk, &n)| chunk[..n.min(longest)].to_vec())
            .collect())
    }

    fn barrier(&mut self) -> Result<(), CollectiveError> {
        let t = Tensor::f_ones([1], (Kind::Float, self.device_of()))
            .map_err(self.tensor_err(Op::Barrier))?;
        self.all_reduce_device(&t, Op::Barrier)
    }

    fn all_reduce_tensor(&mut self, t: &mut Tensor) -> Result<(), CollectiveError> {
        let op = match t.kind() {
            Kind::Float => Op::AllReduceF32,
            Kind::Double => Op::AllReduceF64,
            other => {
                return Err(CollectiveError::Invalid {
                    rank: self.rank,
                    op: Op::AllReduceF32,
                    what: format!(
                        "all_reduce_tensor needs a Float or Double tensor, got {other:?}"
                    ),
                })
            }
        };
        let (work, copied) = self.on_device(t, op)?;
        self.all_reduce_device(&work, op)?;
        if copied {
            tch::no_grad(|| t.f_copy_(&work)).map_err(self.tensor_err(op))?;
        }
        Ok(())
    }

    fn broadcast_tensor(&mut self, t: &mut Tensor, root: usize) -> Result<(), CollectiveError> {
        let (work, copied) = self.on_device(t, Op::Broadcast)?;
        self.broadcast_device(&work, root)?;
        if copied {
            tch::no_grad(|| t.f_copy_(&work)).map_err(self.tensor_err(Op::Broadcast))?;
        }
        Ok(())
    }
}
