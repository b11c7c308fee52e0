//! The MPI process group (rsmpi over the system's Open MPI or MPICH). Collectives are MPI's
//! non-blocking calls completed by polling, so a wait can end at the timeout or on SIGTERM:
//! the error then unwinds the trainer (releasing its run lock) before the caller aborts the job.
//! rsmpi's scoped requests cannot be abandoned, so the calls are made through its FFI, with
//! buffers each `Pending` operation owns and leaks when it is given up (MPI may still write to
//! them). Several sums may be in flight at once (gradient buckets started during backward).

use crate::error::{Error, Result};
use mpi::collective::SystemOperation;
use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::ffi;
use mpi::raw::AsRaw;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;
use std::ffi::{c_int, c_void};
use std::mem::ManuallyDrop;
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

    /// Starts summing `values` over the ranks; the sum is the pending operation's result.
    pub fn start_sum(&self, values: Vec<f64>) -> Result<Pending> {
        let count = mpi_count(values.len())?;
        let zeros = vec![0.0; values.len()];
        let mut pending = Pending::new(values, zeros);
        // SAFETY: both buffers hold `count` f64 and live in `pending`, which leaks them if it
        // is dropped before MPI is done with them.
        unsafe {
            ffi::MPI_Iallreduce(
                pending.input.as_ptr() as *const c_void,
                pending.result.as_mut_ptr() as *mut c_void,
                count,
                f64::equivalent_datatype().as_raw(),
                SystemOperation::sum().as_raw(),
                self.world.as_raw(),
                &mut pending.request,
            );
        }
        Ok(pending)
    }

    pub fn broadcast(&self, values: &mut [f64]) -> Result<()> {
        let count = mpi_count(values.len())?;
        let mut pending = Pending::new(Vec::new(), values.to_vec());
        // SAFETY: as in start_sum.
        unsafe {
            ffi::MPI_Ibcast(
                pending.result.as_mut_ptr() as *mut c_void,
                count,
                f64::equivalent_datatype().as_raw(),
                0,
                self.world.as_raw(),
                &mut pending.request,
            );
        }
        self.wait_all(&mut [&mut pending], "a broadcast")?;
        values.copy_from_slice(&pending.into_result());
        Ok(())
    }

    /// Polls every pending operation to completion; past the timeout, or when the launcher is
    /// ending the job, says why (the caller's pending operations then leak their buffers when
    /// dropped, since MPI may still use them).
    pub fn wait_all(&self, pending: &mut [&mut Pending], what: &str) -> Result<()> {
        let start = Instant::now();
        loop {
            // Every one is tested each round (no short cut), so all of them progress.
            let mut done = true;
            for p in pending.iter_mut() {
                done &= p.test();
            }
            if done {
                return Ok(());
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
            return Err(Error::Distributed(format!("{why}; the run directory's last checkpoint is intact: continue the job with --resume")));
        }
    }

    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

/// A non-blocking collective in flight and the buffers MPI reads and writes until it completes.
/// Dropped before completion (a timeout, an error elsewhere), it leaks them rather than free
/// memory MPI may still write to.
pub struct Pending {
    request: ffi::MPI_Request,
    input: ManuallyDrop<Vec<f64>>,
    result: ManuallyDrop<Vec<f64>>,
    done: bool,
}

impl Pending {
    fn new(input: Vec<f64>, result: Vec<f64>) -> Pending {
        // SAFETY: the null request is a constant of the MPI library; the start call replaces it.
        let request = unsafe { ffi::RSMPI_REQUEST_NULL };
        Pending { request, input: ManuallyDrop::new(input), result: ManuallyDrop::new(result), done: false }
    }

    /// Whether the operation has completed; lets MPI progress it (Open MPI moves a non-blocking
    /// collective on only inside MPI calls).
    pub fn test(&mut self) -> bool {
        if !self.done {
            let mut flag: c_int = 0;
            // SAFETY: `request` is a live request of this process.
            unsafe {
                ffi::MPI_Test(&mut self.request, &mut flag, ffi::RSMPI_STATUS_IGNORE);
            }
            self.done = flag != 0;
        }
        self.done
    }

    /// The completed operation's result buffer.
    pub fn into_result(mut self) -> Vec<f64> {
        assert!(self.done, "a pending collective's result is read after it completed");
        std::mem::take(&mut *self.result)
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        if self.done {
            // SAFETY: MPI is done with both buffers, and they are dropped only here.
            unsafe {
                ManuallyDrop::drop(&mut self.input);
                ManuallyDrop::drop(&mut self.result);
            }
        }
    }
}

fn mpi_count(len: usize) -> Result<c_int> {
    c_int::try_from(len).map_err(|_| Error::config(format!("{len} values are more than one MPI call can move")))
}
