//! NCCL between the ranks' GPUs (cudarc's `nccl`, loaded at run time: a build needs no NCCL, and
//! a machine without it gets one line saying how to install it). Under mpirun, rank 0 draws
//! NCCL's unique id and broadcasts it over the MPI group, and every rank then joins the NCCL
//! communicator with it; under torchrun the group itself is NCCL's (nccl_group.rs).

use super::ProcessGroup;
use crate::error::{Error, Result};
use cudarc::nccl::{result, sys};
use std::sync::Arc;

/// Whether NCCL's library (libnccl.so.2) can be loaded. Checked before any NCCL call: cudarc
/// panics on the first call when the library is absent.
pub fn library_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { sys::is_culib_present() }
}

/// The line a run that needs NCCL on a machine without it ends with.
pub fn missing_library_error() -> Error {
    Error::config(
        "the ranks train on CUDA devices, which all-reduce their gradients with NCCL, but NCCL's library was not \
         found: `pip install nvidia-nccl-cu12`, link libnccl.so to the libnccl.so.2 in its lib directory \
         (site-packages/nvidia/nccl/lib; the name ferronet looks for) and add that directory to LD_LIBRARY_PATH, \
         or reduce through the host with --dist-backend mpi",
    )
}

fn nccl_error(what: &str, e: result::NcclError) -> Error {
    Error::Distributed(format!("NCCL failed {what}: {e:?}"))
}

/// One rank's NCCL communicator: under mpirun over the ranks of the MPI group, under torchrun
/// the group's own (cloning shares it: one communicator per process, whose collectives NCCL runs
/// in call order).
#[derive(Clone)]
pub struct NcclComm {
    raw: Arc<RawComm>,
    world: usize,
}

struct RawComm(sys::ncclComm_t);

// SAFETY: an NCCL communicator may be used from any thread, one call at a time; ferronet calls
// it from the thread that drives the rank's device.
unsafe impl Send for RawComm {}
unsafe impl Sync for RawComm {}

impl NcclComm {
    /// Joins the communicator of every rank of `group` (every rank calls it at the same point,
    /// with its GPU's CUDA context current on this thread): the group's own under torchrun, a
    /// new one whose id rank 0 broadcasts over MPI under mpirun.
    pub fn join(group: &ProcessGroup) -> Result<NcclComm> {
        if let Some(comm) = group.nccl_comm() {
            return Ok(comm.clone());
        }
        if !library_present() {
            return Err(missing_library_error());
        }
        let mut id = match group.is_leader() {
            true => draw_id()?,
            false => [0; 128],
        };
        let mut bytes: Vec<f64> = id.iter().map(|&b| f64::from(b)).collect();
        group.broadcast(&mut bytes)?;
        for (slot, byte) in id.iter_mut().zip(bytes) {
            *slot = byte as u8;
        }
        Self::join_with_id(&id, group.rank(), group.world_size())
    }

    /// Joins communicator `id` as `rank` of `world` on the current CUDA context; blocks until
    /// every rank has joined.
    pub fn join_with_id(id: &[u8; 128], rank: usize, world: usize) -> Result<NcclComm> {
        let ranks = |n: usize| std::ffi::c_int::try_from(n).map_err(|_| Error::config(format!("{n} ranks are more than NCCL takes")));
        let unique = sys::ncclUniqueId { internal: id.map(|b| b as std::ffi::c_char) };
        let mut comm = std::ptr::null_mut();
        // SAFETY: `comm` is written by NCCL; the id is the leader's, handed to every rank.
        unsafe { result::comm_init_rank(&mut comm, ranks(world)?, unique, ranks(rank)?) }
            .map_err(|e| nccl_error("joining the ranks' communicator", e))?;
        Ok(NcclComm { raw: Arc::new(RawComm(comm)), world })
    }

    pub fn world_size(&self) -> usize {
        self.world
    }

    /// Why the communicator failed (a rank went away or stopped answering), once NCCL knows.
    pub fn failure(&self) -> Option<String> {
        let mut code = sys::ncclResult_t::ncclSuccess;
        // SAFETY: the communicator is live; `code` is written by NCCL.
        let asked = unsafe { sys::ncclCommGetAsyncError(self.raw.0, &mut code) };
        if asked != sys::ncclResult_t::ncclSuccess || code == sys::ncclResult_t::ncclSuccess {
            return None;
        }
        // SAFETY: NCCL returns a NUL-terminated string that lives as long as the communicator.
        let why = unsafe { std::ffi::CStr::from_ptr(sys::ncclGetLastError(self.raw.0)) }.to_string_lossy().into_owned();
        Some(if why.is_empty() { format!("{code:?}") } else { format!("{why} ({code:?})") })
    }

    /// Queues the in-place sum over the ranks of `count` f32 at device address `ptr` on the
    /// CUDA stream `stream`.
    ///
    /// # Safety
    /// `ptr` must hold `count` f32 on this rank's GPU and stay allocated until the stream has
    /// run the sum; `stream` must be a live stream of this rank's context.
    pub unsafe fn queue_sum_f32(&self, ptr: u64, count: usize, stream: sys::cudaStream_t) -> Result<()> {
        // SAFETY: the caller's promise.
        unsafe { self.queue_sum(ptr, count, sys::ncclDataType_t::ncclFloat32, stream) }
    }

    /// As `queue_sum_f32`, for f64 (the host's collectives of a torchrun group).
    ///
    /// # Safety
    /// As `queue_sum_f32`, with `count` f64 at `ptr`.
    pub unsafe fn queue_sum_f64(&self, ptr: u64, count: usize, stream: sys::cudaStream_t) -> Result<()> {
        // SAFETY: the caller's promise.
        unsafe { self.queue_sum(ptr, count, sys::ncclDataType_t::ncclFloat64, stream) }
    }

    unsafe fn queue_sum(&self, ptr: u64, count: usize, dtype: sys::ncclDataType_t, stream: sys::cudaStream_t) -> Result<()> {
        let buf = ptr as *mut std::ffi::c_void;
        // SAFETY: the callers' promise.
        unsafe { result::all_reduce(buf, buf, count, dtype, sys::ncclRedOp_t::ncclSum, self.raw.0, stream) }
            .map(|_| ())
            .map_err(|e| nccl_error("queueing an all-reduce", e))
    }

    /// Queues the in-place broadcast of rank 0's `count` f64 at `ptr` to every rank.
    ///
    /// # Safety
    /// As `queue_sum_f64`.
    pub unsafe fn queue_broadcast_f64(&self, ptr: u64, count: usize, stream: sys::cudaStream_t) -> Result<()> {
        let buf = ptr as *mut std::ffi::c_void;
        // SAFETY: the caller's promise.
        unsafe { result::broadcast(buf, buf, count, sys::ncclDataType_t::ncclFloat64, 0, self.raw.0, stream) }
            .map(|_| ())
            .map_err(|e| nccl_error("queueing a broadcast", e))
    }

    /// Queues the sums of several buffers as one NCCL group (fused into fewer launches).
    ///
    /// # Safety
    /// As `queue_sum_f32`, for every (ptr, count).
    pub unsafe fn queue_sums_f32(&self, buffers: &[(u64, usize)], stream: sys::cudaStream_t) -> Result<()> {
        result::group_start().map_err(|e| nccl_error("starting a group", e))?;
        for &(ptr, count) in buffers {
            // SAFETY: the caller's promise.
            unsafe { self.queue_sum_f32(ptr, count, stream)? };
        }
        result::group_end().map(|_| ()).map_err(|e| nccl_error("ending a group", e))
    }
}

/// Rank 0's draw of a new communicator's id.
pub fn draw_id() -> Result<[u8; 128]> {
    let id = result::get_uniqueid().map_err(|e| nccl_error("drawing the communicator's id", e))?;
    Ok(id.internal.map(|b| b as u8))
}

impl Drop for RawComm {
    fn drop(&mut self) {
        // SAFETY: the communicator was initialised by `join_with_id` and is destroyed only here,
        // when its last clone goes.
        let _ = unsafe { result::comm_destroy(self.0) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a machine without NCCL (this one), joining is the one line, not cudarc's panic.
    #[test]
    fn joining_without_the_library_is_the_install_line() {
        if library_present() {
            return;
        }
        let err = NcclComm::join(&ProcessGroup::alone()).err().expect("no NCCL library").to_string();
        assert!(err.contains("pip install nvidia-nccl-cu12") && err.contains("--dist-backend mpi"), "{err}");
    }
}
