//! The MPI process group (rsmpi over the system's Open MPI or MPICH). Collectives are MPI's
//! non-blocking calls completed by polling, so a wait can end at the timeout or on SIGTERM:
//! the error then unwinds the trainer (releasing its run lock) before the caller aborts the job.
//! rsmpi's scoped requests cannot be abandoned, so the two calls are made through its FFI, with
//! buffers the group owns and leaks when it gives up (MPI may still write to them).

use crate::error::{Error, Result};
use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;
use std::ffi::{c_int, c_void};
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set by SIGTERM: mpirun sends it to the surviving ranks when one dies.
static TERMINATING: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigterm(_signal: c_int) {
    TERMINATING.store(true, Ordering::SeqCst);
}

/// Pause between MPI tests once a collective has not finished at once: short enough that a
/// shared-memory all-reduce is not slowed, long enough not to take a core a slower rank needs.
const POLL_PAUSE: Duration = Duration::from_micros(20);

pub struct MpiGroup {
    world: SimpleCommunicator,
    // Dropping the universe finalises MPI (after `world`, declared first, is gone).
    _universe: Universe,
    timeout: Duration,
}

impl MpiGroup {
    pub fn init(timeout: Duration) -> Result<MpiGroup> {
        // Only the main thread calls MPI; the compute threads never do.
        let (universe, _) = mpi::initialize_with_threading(Threading::Funneled)
            .ok_or_else(|| Error::config("MPI was already initialised in this process"))?;
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(libc::SIGTERM, on_sigterm as extern "C" fn(c_int) as libc::sighandler_t);
        }
        Ok(MpiGroup { world: universe.world(), _universe: universe, timeout })
    }

    pub fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    pub fn world_size(&self) -> usize {
        self.world.size() as usize
    }

    pub fn all_reduce_sum(&self, values: &mut [f64]) -> Result<()> {
        let send = values.to_vec();
        let mut recv = vec![0.0f64; values.len()];
        let count = mpi_count(values.len())?;
        let mut request = MaybeUninit::uninit();
        // SAFETY: both buffers hold `count` f64 and outlive the request (`finish` leaks them if
        // it gives up before MPI is done with them).
        unsafe {
            ffi::MPI_Iallreduce(
                send.as_ptr() as *const c_void,
                recv.as_mut_ptr() as *mut c_void,
                count,
                f64::equivalent_datatype().as_raw(),
                SystemOperation::sum().as_raw(),
                self.world.as_raw(),
                request.as_mut_ptr(),
            );
        }
        // SAFETY: MPI_Iallreduce initialised the request.
        let recv = self.finish(unsafe { request.assume_init() }, "an all-reduce", vec![send], recv)?;
        values.copy_from_slice(&recv);
        Ok(())
    }

    pub fn broadcast(&self, values: &mut [f64]) -> Result<()> {
        let mut buffer = values.to_vec();
        let count = mpi_count(values.len())?;
        let mut request = MaybeUninit::uninit();
        // SAFETY: as in all_reduce_sum.
        unsafe {
            ffi::MPI_Ibcast(
                buffer.as_mut_ptr() as *mut c_void,
                count,
                f64::equivalent_datatype().as_raw(),
                0,
                self.world.as_raw(),
                request.as_mut_ptr(),
            );
        }
        // SAFETY: MPI_Ibcast initialised the request.
        let buffer = self.finish(unsafe { request.assume_init() }, "a broadcast", Vec::new(), buffer)?;
        values.copy_from_slice(&buffer);
        Ok(())
    }

    /// Polls `request` to completion and returns `result`; past the timeout, or when the
    /// launcher is ending the job, leaks the buffers MPI may still use and says why.
    fn finish(&self, mut request: ffi::MPI_Request, what: &str, inputs: Vec<Vec<f64>>, result: Vec<f64>) -> Result<Vec<f64>> {
        let start = Instant::now();
        loop {
            let mut done: c_int = 0;
            // SAFETY: `request` is a live request of this process.
            unsafe {
                ffi::MPI_Test(&mut request, &mut done, ffi::RSMPI_STATUS_IGNORE);
            }
            if done != 0 {
                return Ok(result);
            }
            let why = if TERMINATING.load(Ordering::SeqCst) {
                "the launcher is ending the job (another rank failed or was killed)".to_string()
            } else if start.elapsed() >= self.timeout {
                format!(
                    "another rank did not join {what} within {} s (it died or hangs); raise --collective-timeout if a rank is only slow",
                    self.timeout.as_secs()
                )
            } else {
                std::thread::sleep(POLL_PAUSE);
                continue;
            };
            std::mem::forget(inputs);
            std::mem::forget(result);
            return Err(Error::Distributed(format!("{why}; the run directory's last checkpoint is intact: continue the job with --resume")));
        }
    }

    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

fn mpi_count(len: usize) -> Result<c_int> {
    c_int::try_from(len).map_err(|_| Error::config(format!("{len} values are more than one MPI call can move")))
}
