//! The process group of a torchrun launch: ranks on CUDA devices whose every collective (the
//! trainer's host values: metric sums, the first weights' broadcast, sync-BN statistics, the run
//! directory) goes through NCCL on a device buffer of the rank's GPU (cuda:LOCAL_RANK); the
//! gradient buckets share its communicator (`NcclComm::join`). Rank 0 draws NCCL's id and hands
//! it to the others through MASTER_ADDR:MASTER_PORT (rendezvous.rs: torchrun's store, or rank 0
//! listening there).
//!
//! A collective is queued on the legacy stream, which orders it after the work of the device's
//! other (blocking) streams, and waited for by polling: NCCL blocks on a lost rank, so a wait
//! past the group's timeout, or a failure NCCL reports, is an error that ends the
//! rank with one line instead of a hang.

use super::nccl::{self, NcclComm};
use super::rendezvous::{self, Master};
use crate::error::{Error, Result};
use cudarc::driver::result::{self as cu, DriverError};
use cudarc::driver::sys::{self, CUresult};
use std::time::{Duration, Instant};

/// Pause between polls of a collective that has not finished at once.
const POLL_PAUSE: Duration = Duration::from_micros(50);

// SAFETY: the context handle is only used through driver calls, which are thread-safe once it is
// made current on the calling thread (every collective does so first); the communicator is
// called one call at a time, by the thread that drives the rank.
unsafe impl Send for NcclGroup {}
unsafe impl Sync for NcclGroup {}

pub struct NcclGroup {
    rank: usize,
    world: usize,
    device: sys::CUdevice,
    ctx: sys::CUcontext,
    comm: NcclComm,
    timeout: Duration,
}

/// Where the ranks are and who this one is (torchrun's variables).
pub struct TorchrunRank<'a> {
    pub rank: usize,
    pub world: usize,
    /// The CUDA device this rank trains on (cuda:LOCAL_RANK unless --device names another).
    pub device: usize,
    pub master: &'a Master,
}

fn driver_error(what: &str, e: DriverError) -> Error {
    let name = e.error_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|_| format!("{:?}", e.0));
    Error::device(format!("{what} failed: {name}"))
}

/// The legacy stream: work on it waits for the device's blocking streams.
fn legacy_stream() -> sys::CUstream {
    std::ptr::null_mut()
}

impl NcclGroup {
    /// Opens cuda:LOCAL_RANK, shares NCCL's id through the rendezvous and joins the communicator.
    pub fn join(me: &TorchrunRank, timeout: Duration) -> Result<NcclGroup> {
        // SAFETY: only tries to dlopen the driver library by its usual names (cudarc panics on
        // the first call without it).
        if !unsafe { sys::is_culib_present() } {
            return Err(Error::device("torchrun's ranks train on CUDA devices, but no CUDA driver (libcuda.so) is installed here; launch CPU ranks with mpirun"));
        }
        if !nccl::library_present() {
            return Err(nccl::missing_library_error());
        }
        cu::init().map_err(|e| driver_error("initialising the CUDA driver", e))?;
        let device = cu::device::get(me.device as i32)
            .map_err(|e| driver_error(&format!("opening cuda:{} (cuda:LOCAL_RANK: one GPU per rank on each machine)", me.device), e))?;
        // SAFETY: `device` came from device::get; the primary context is the one the trainer's
        // CUDA backend retains for the same device.
        let ctx = unsafe { cu::primary_ctx::retain(device) }.map_err(|e| driver_error("retaining the device's context", e))?;
        // SAFETY: the context was just retained.
        unsafe { cu::ctx::set_current(ctx) }.map_err(|e| driver_error("making the device's context current", e))?;
        let id = match me.rank {
            0 => {
                let id = nccl::draw_id()?;
                rendezvous::share_id(me.master, me.world, &id, timeout)?;
                id
            }
            _ => rendezvous::receive_id(me.master, timeout)?,
        };
        let comm = NcclComm::join_with_id(&id, me.rank, me.world)?;
        Ok(NcclGroup { rank: me.rank, world: me.world, device, ctx, comm, timeout })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn world_size(&self) -> usize {
        self.world
    }

    pub fn comm(&self) -> &NcclComm {
        &self.comm
    }

    pub fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()> {
        // SAFETY: the buffer holds `values.len()` f64 until `on_device` has waited for the sum.
        self.on_device(values, "an all-reduce", |ptr, n| unsafe { self.comm.queue_sum_f64(ptr, n, legacy_stream() as _) })
    }

    pub fn broadcast(&self, values: &mut [f64]) -> Result<()> {
        // SAFETY: as in all_reduce_sum.
        self.on_device(values, "a broadcast", |ptr, n| unsafe { self.comm.queue_broadcast_f64(ptr, n, legacy_stream() as _) })
    }

    /// Copies `values` to a device buffer, runs `collective` on it and copies the result back.
    fn on_device(&self, values: &mut [f64], what: &str, collective: impl FnOnce(u64, usize) -> Result<()>) -> Result<()> {
        if values.is_empty() {
            return Ok(());
        }
        // SAFETY: the context was retained in `join` and is released only in Drop.
        unsafe { cu::ctx::set_current(self.ctx) }.map_err(|e| self.failed(what, e))?;
        // SAFETY: a fresh allocation of the values' size, freed below once no work uses it
        // (leaked when the collective failed: NCCL may still write to it).
        let ptr = unsafe { cu::malloc_sync(std::mem::size_of_val(values)) }.map_err(|e| self.failed(what, e))?;
        let result = (|| {
            // SAFETY: `ptr` holds as many bytes as `values`.
            unsafe { cu::memcpy_htod_sync(ptr, values) }.map_err(|e| self.failed(what, e))?;
            collective(ptr, values.len())?;
            self.wait(what)?;
            // SAFETY: as above; the collective has completed.
            unsafe { cu::memcpy_dtoh_sync(values, ptr) }.map_err(|e| self.failed(what, e))
        })();
        if result.is_ok() {
            // SAFETY: nothing uses the buffer any more.
            unsafe { cu::free_sync(ptr) }.map_err(|e| self.failed(what, e))?;
        }
        result
    }

    /// Polls the legacy stream until the collective has run, NCCL reports a failure, or the
    /// timeout passes (NCCL itself would wait forever; the rank then exits, which ends its
    /// communicator).
    fn wait(&self, what: &str) -> Result<()> {
        let start = Instant::now();
        loop {
            // SAFETY: querying the legacy stream of the current context.
            match unsafe { sys::cuStreamQuery(legacy_stream()) } {
                CUresult::CUDA_SUCCESS => return Ok(()),
                CUresult::CUDA_ERROR_NOT_READY => {}
                code => return Err(self.failed(what, DriverError(code))),
            }
            if let Some(why) = self.comm.failure() {
                return Err(lost(what, &why));
            }
            if start.elapsed() >= self.timeout {
                return Err(Error::Distributed(format!(
                    "another rank did not join {what} within {} s (it died or hangs); raise --collective-timeout if a rank is only slow; \
                     the run directory's last checkpoint is intact: continue the job with --resume",
                    self.timeout.as_secs()
                )));
            }
            std::thread::sleep(POLL_PAUSE);
        }
    }

    /// The error of a driver call during `what`: NCCL's reason when the communicator failed
    /// (a lost rank leaves the context with a launch failure), the driver's otherwise.
    fn failed(&self, what: &str, e: DriverError) -> Error {
        match self.comm.failure() {
            Some(why) => lost(what, &why),
            None => driver_error(what, e),
        }
    }

    /// This rank's failure restated when NCCL knows the cause (a lost rank), e.g. for an
    /// error of the trainer's own CUDA calls after the gradients' sum failed.
    pub fn explain(&self, e: Error) -> Error {
        match self.comm.failure() {
            Some(why) => lost("the ranks' collectives", &why),
            None => e,
        }
    }
}

fn lost(what: &str, why: &str) -> Error {
    Error::Distributed(format!(
        "NCCL failed during {what}: {why}; the run directory's last checkpoint is intact: continue the job with --resume"
    ))
}

impl Drop for NcclGroup {
    fn drop(&mut self) {
        // SAFETY: retained in `join`; the trainer's backend holds its own retain.
        let _ = unsafe { cu::primary_ctx::release(self.device) };
    }
}
