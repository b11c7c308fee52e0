//! NCCL between the ranks' GPUs (cudarc's `nccl`, loaded at run time: a build needs no NCCL, and
//! a machine without it gets one line saying how to install it). MPI stays the launcher: rank 0
//! draws NCCL's unique id and broadcasts it over the MPI group, and every rank then joins the
//! NCCL communicator with it.

use super::ProcessGroup;
use crate::error::{Error, Result};
use cudarc::nccl::{result, sys};

/// Whether NCCL's library (libnccl.so.2) can be loaded. Checked before any NCCL call: cudarc
/// panics on the first call when the library is absent.
pub fn library_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { sys::is_culib_present() }
}

/// The line a run that needs NCCL on a machine without it ends with.
pub fn missing_library_error() -> Error {
    Error::config(
        "the ranks train on CUDA devices, which all-reduce their gradients with NCCL, but NCCL's library \
         (libnccl.so.2) was not found: `pip install nvidia-nccl-cu12` and add its lib directory \
         (site-packages/nvidia/nccl/lib) to LD_LIBRARY_PATH, or reduce through the host with --dist-backend mpi",
    )
}

fn nccl_error(what: &str, e: result::NcclError) -> Error {
    Error::Distributed(format!("NCCL failed {what}: {e:?}"))
}

/// One rank's NCCL communicator over the ranks of an MPI group.
pub struct NcclComm {
    comm: sys::ncclComm_t,
    world: usize,
}

impl NcclComm {
    /// Joins the communicator of every rank of `group` (every rank calls it at the same point,
    /// with its GPU's CUDA context current on this thread).
    pub fn join(group: &ProcessGroup) -> Result<NcclComm> {
        if !library_present() {
            return Err(missing_library_error());
        }
        let mut id = match group.is_leader() {
            true => result::get_uniqueid().map_err(|e| nccl_error("drawing the communicator's id", e))?,
            false => sys::ncclUniqueId { internal: [0; 128] },
        };
        let mut bytes: Vec<f64> = id.internal.iter().map(|&b| f64::from(b)).collect();
        group.broadcast(&mut bytes)?;
        for (slot, byte) in id.internal.iter_mut().zip(bytes) {
            *slot = byte as std::ffi::c_char;
        }
        let (world, rank) = (group.world_size(), group.rank());
        let ranks = |n: usize| std::ffi::c_int::try_from(n).map_err(|_| Error::config(format!("{n} ranks are more than NCCL takes")));
        let mut comm = std::ptr::null_mut();
        // SAFETY: `comm` is written by NCCL; the id is the leader's, broadcast to every rank.
        unsafe { result::comm_init_rank(&mut comm, ranks(world)?, id, ranks(rank)?) }
            .map_err(|e| nccl_error("joining the ranks' communicator", e))?;
        Ok(NcclComm { comm, world })
    }

    pub fn world_size(&self) -> usize {
        self.world
    }

    /// Queues the in-place sum over the ranks of `count` f32 at device address `ptr` on the
    /// CUDA stream `stream`.
    ///
    /// # Safety
    /// `ptr` must hold `count` f32 on this rank's GPU and stay allocated until the stream has
    /// run the sum; `stream` must be a live stream of this rank's context.
    pub unsafe fn queue_sum_f32(&self, ptr: u64, count: usize, stream: sys::cudaStream_t) -> Result<()> {
        let buf = ptr as *mut std::ffi::c_void;
        // SAFETY: the caller's promise.
        unsafe { result::all_reduce(buf, buf, count, sys::ncclDataType_t::ncclFloat32, sys::ncclRedOp_t::ncclSum, self.comm, stream) }
            .map(|_| ())
            .map_err(|e| nccl_error("queueing a gradient all-reduce", e))
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

impl Drop for NcclComm {
    fn drop(&mut self) {
        // SAFETY: the communicator was initialised by `join` and is destroyed only here.
        let _ = unsafe { result::comm_destroy(self.comm) };
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
