//! An emulated NCCL, exported by the emulated driver itself so that its collectives use the
//! emulator's device memory and streams: tests load this library as libnccl.so.2 too (a
//! symbolic link to it; the loader finds the file already loaded and hands out the same copy,
//! so both names share one emulator). A TEST DOUBLE of NCCL's semantics on machines without
//! GPUs, never used by real runs, which load NVIDIA's libnccl.
//!
//! What it keeps of NCCL: ncclCommInitRank blocks until every rank has joined; a collective is
//! queued on a CUDA stream and runs in that stream's order, and the collectives of one
//! communicator run in the order they were called (NCCL serialises a communicator's work even
//! across streams); groups only batch launches, which the emulation queues one by one at their
//! calls, one valid schedule of them. Sums are f32 or f64 in rank order (reproducible bits). A
//! rank that goes away or stops answering (nccl_link.rs) fails the collective: the communicator
//! keeps ncclRemoteError (ncclCommGetAsyncError, ncclGetLastError says why) and the context
//! takes CUDA_ERROR_LAUNCH_FAILED as its sticky error, as an aborted NCCL kernel would leave it.

use crate::errors::guard_returning;
use crate::nccl_link::{timeout_from_env, Combine, Link};
use crate::queue::{stream_ref, submit, Op, StreamRef};
use crate::state::{with_emulator, Emulator, Object};
use cudarc::driver::sys::CUresult;
use cudarc::nccl::sys::{ncclComm_t, ncclResult_t, ncclUniqueId};
use ferronet::device::driver::Driver;
use std::ffi::{c_char, c_int, c_void, CString};

type NcclResult<T = ()> = Result<T, ncclResult_t>;

/// The NCCL version the emulation answers with (2.30, the API cudarc binds).
const VERSION: c_int = 23000;
const NCCL_FLOAT32: u32 = 7;
const NCCL_FLOAT64: u32 = 8;
const NCCL_SUM: u32 = 0;

/// One communicator: this rank's link to the others and what has run.
pub struct Comm {
    pub device: usize,
    /// None once a collective failed (the connections are closed).
    link: Option<Link>,
    /// Collectives called, and run, so far: the next to run is number `completed`.
    issued: u64,
    pub completed: u64,
    /// Why the communicator failed (ncclGetLastError), with NCCL's code.
    failure: Option<(ncclResult_t, CString)>,
}

/// Collective number `seq` of communicator `comm`: `bytes` bytes from device address `send`,
/// the result to `recv`.
#[derive(Clone, Debug)]
pub struct Collective {
    pub comm: u64,
    pub seq: u64,
    combine: Combine,
    send: u64,
    recv: u64,
    bytes: usize,
}

/// Runs an entry point's body, turning a panic into ncclInternalError (unwinding across the C
/// boundary would abort the caller).
fn guard(entry_point: &str, body: impl FnOnce() -> NcclResult) -> ncclResult_t {
    guard_returning("libnccl", entry_point, body, ncclResult_t::ncclSuccess, ncclResult_t::ncclInternalError)
}

fn write<T>(out: *mut T, value: T) -> NcclResult {
    if out.is_null() {
        return Err(ncclResult_t::ncclInvalidArgument);
    }
    // SAFETY: the caller passed a non-null pointer to writable storage for a T.
    unsafe { out.write(value) };
    Ok(())
}

fn emulator<R>(f: impl FnOnce(&mut Emulator) -> NcclResult<R>) -> NcclResult<R> {
    with_emulator(|emu| Ok(f(emu))).map_err(|_| ncclResult_t::ncclUnhandledCudaError)?
}

fn comm_mut(emu: &mut Emulator, comm: ncclComm_t) -> NcclResult<&mut Comm> {
    match emu.objects.get_mut(&(comm as u64)) {
        Some(Object::NcclComm(c)) => Ok(c),
        _ => Err(ncclResult_t::ncclInvalidArgument),
    }
}

fn printed(message: &str) {
    eprintln!("libnccl (ferronet emulation): {message}");
}

#[no_mangle]
pub extern "C" fn ncclGetVersion(version: *mut c_int) -> ncclResult_t {
    guard("ncclGetVersion", || write(version, VERSION))
}

#[no_mangle]
pub extern "C" fn ncclGetUniqueId(unique_id: *mut ncclUniqueId) -> ncclResult_t {
    guard("ncclGetUniqueId", || {
        let id = crate::nccl_link::new_id().map_err(|e| {
            printed(&e);
            ncclResult_t::ncclSystemError
        })?;
        write(unique_id, ncclUniqueId { internal: id.map(|b| b as c_char) })
    })
}

/// Joins the communicator on the calling thread's current device, as NCCL takes cudaGetDevice.
#[no_mangle]
pub extern "C" fn ncclCommInitRank(comm: *mut ncclComm_t, nranks: c_int, comm_id: ncclUniqueId, rank: c_int) -> ncclResult_t {
    guard("ncclCommInitRank", || {
        let (Ok(world), Ok(rank)) = (usize::try_from(nranks), usize::try_from(rank)) else {
            return Err(ncclResult_t::ncclInvalidArgument);
        };
        if rank >= world || comm.is_null() {
            return Err(ncclResult_t::ncclInvalidArgument);
        }
        let device = emulator(|emu| emu.current_device().map_err(|_| ncclResult_t::ncclUnhandledCudaError))?;
        let timeout = timeout_from_env().map_err(|e| {
            printed(&e);
            ncclResult_t::ncclInvalidArgument
        })?;
        // Joining waits for the other ranks: outside the emulator's lock.
        let id = comm_id.internal.map(|b| b as u8);
        let link = Link::join(&id, rank, world, timeout).map_err(|e| {
            printed(&format!("ncclCommInitRank: {}", e.message));
            if e.remote { ncclResult_t::ncclRemoteError } else { ncclResult_t::ncclSystemError }
        })?;
        let state = Comm { device, link: Some(link), issued: 0, completed: 0, failure: None };
        emulator(|emu| write(comm, emu.insert(Object::NcclComm(state)) as ncclComm_t))
    })
}

/// Queues collective `combine` of `bytes` bytes from `send` to `recv` on `stream`.
fn queue_collective(send: *const c_void, recv: *mut c_void, bytes: usize, combine: Combine, comm: ncclComm_t, stream: *mut c_void) -> NcclResult {
    emulator(|emu| {
        let state = comm_mut(emu, comm)?;
        if let Some((code, _)) = state.failure {
            return Err(code);
        }
        let (dev, seq) = (state.device, state.issued);
        if let Ok(StreamRef::Created(handle)) = stream_ref(emu, dev, stream as u64) {
            if matches!(emu.objects.get(&handle), Some(Object::Stream { capture: Some(_), .. })) {
                printed("a collective on a capturing stream is not emulated (a graph replay would repeat its sequence number)");
                return Err(ncclResult_t::ncclInvalidUsage);
            }
        }
        let op = Op::Collective(Collective { comm: comm as u64, seq, combine, send: send as u64, recv: recv as u64, bytes });
        submit(emu, dev, stream as u64, op).map_err(|_| ncclResult_t::ncclUnhandledCudaError)?;
        comm_mut(emu, comm)?.issued += 1;
        Ok(())
    })
}

fn element_bytes(datatype: u32) -> NcclResult<usize> {
    match datatype {
        NCCL_FLOAT32 => Ok(4),
        NCCL_FLOAT64 => Ok(8),
        _ => {
            printed(&format!("data type {datatype} is not emulated (f32 and f64 are)"));
            Err(ncclResult_t::ncclInvalidArgument)
        }
    }
}

#[no_mangle]
pub extern "C" fn ncclAllReduce(send: *const c_void, recv: *mut c_void, count: usize, datatype: u32, op: u32, comm: ncclComm_t, stream: *mut c_void) -> ncclResult_t {
    guard("ncclAllReduce", || {
        if op != NCCL_SUM {
            printed(&format!("reduction {op} is not emulated (ncclSum is)"));
            return Err(ncclResult_t::ncclInvalidArgument);
        }
        let size = element_bytes(datatype)?;
        let combine = if size == 4 { Combine::Sum32 } else { Combine::Sum64 };
        queue_collective(send, recv, count * size, combine, comm, stream)
    })
}

#[no_mangle]
pub extern "C" fn ncclBroadcast(send: *const c_void, recv: *mut c_void, count: usize, datatype: u32, root: c_int, comm: ncclComm_t, stream: *mut c_void) -> ncclResult_t {
    guard("ncclBroadcast", || {
        let root = u32::try_from(root).map_err(|_| ncclResult_t::ncclInvalidArgument)?;
        let bytes = count * element_bytes(datatype)?;
        queue_collective(send, recv, bytes, Combine::Broadcast { root }, comm, stream)
    })
}

/// Groups only batch launches; each collective is queued at its own call, in call order.
#[no_mangle]
pub extern "C" fn ncclGroupStart() -> ncclResult_t {
    ncclResult_t::ncclSuccess
}

#[no_mangle]
pub extern "C" fn ncclGroupEnd() -> ncclResult_t {
    ncclResult_t::ncclSuccess
}

/// Closes the communicator's connections (rank 0 removes the sockets' directory).
#[no_mangle]
pub extern "C" fn ncclCommDestroy(comm: ncclComm_t) -> ncclResult_t {
    guard("ncclCommDestroy", || {
        emulator(|emu| match emu.objects.remove(&(comm as u64)) {
            Some(Object::NcclComm(_)) => Ok(()),
            Some(other) => {
                emu.objects.insert(comm as u64, other);
                Err(ncclResult_t::ncclInvalidArgument)
            }
            None => Err(ncclResult_t::ncclInvalidArgument),
        })
    })
}

#[no_mangle]
pub extern "C" fn ncclCommAbort(comm: ncclComm_t) -> ncclResult_t {
    ncclCommDestroy(comm)
}

#[no_mangle]
pub extern "C" fn ncclCommGetAsyncError(comm: ncclComm_t, async_error: *mut ncclResult_t) -> ncclResult_t {
    guard("ncclCommGetAsyncError", || {
        let code = emulator(|emu| Ok(comm_mut(emu, comm)?.failure.as_ref().map_or(ncclResult_t::ncclSuccess, |(code, _)| *code)))?;
        write(async_error, code)
    })
}

#[no_mangle]
pub extern "C" fn ncclCommCount(comm: ncclComm_t, count: *mut c_int) -> ncclResult_t {
    guard("ncclCommCount", || {
        let world = emulator(|emu| Ok(comm_mut(emu, comm)?.link.as_ref().map_or(0, |l| l.world)))?;
        write(count, world as c_int)
    })
}

#[no_mangle]
pub extern "C" fn ncclCommUserRank(comm: ncclComm_t, rank: *mut c_int) -> ncclResult_t {
    guard("ncclCommUserRank", || {
        let me = emulator(|emu| Ok(comm_mut(emu, comm)?.link.as_ref().map_or(0, |l| l.rank)))?;
        write(rank, me as c_int)
    })
}

/// Why the communicator failed, or an empty string (the string lives as long as the
/// communicator).
#[no_mangle]
pub extern "C" fn ncclGetLastError(comm: ncclComm_t) -> *const c_char {
    let reason = emulator(|emu| Ok(comm_mut(emu, comm)?.failure.as_ref().map(|(_, why)| why.as_ptr())));
    reason.ok().flatten().unwrap_or(c"".as_ptr())
}

#[no_mangle]
pub extern "C" fn ncclGetErrorString(result: u32) -> *const c_char {
    match result {
        0 => c"no error",
        1 => c"unhandled cuda error (run with NCCL_DEBUG=INFO for details)",
        2 => c"unhandled system error (run with NCCL_DEBUG=INFO for details)",
        3 => c"internal error - please report this issue to the NCCL developers",
        4 => c"invalid argument (run with NCCL_DEBUG=WARN for details)",
        5 => c"invalid usage (run with NCCL_DEBUG=WARN for details)",
        6 => c"remote process exited or there was a network error",
        7 => c"NCCL operation in progress",
        _ => c"unknown result code",
    }
    .as_ptr()
}

/// Runs collective `seq` of communicator `comm` on device `dev` (queue.rs, with the emulator
/// locked: the wait for the other ranks is this stream's work, as NCCL's kernel is).
pub fn run_collective(emu: &mut Emulator, dev: usize, op: &Collective) -> Result<(), CUresult> {
    let &Collective { comm, seq, combine, send, recv, bytes } = op;
    let mut buffer = vec![0u8; bytes];
    emu.devices[dev].sim.copy_dtoh(&mut buffer, send).map_err(|_| CUresult::CUDA_ERROR_INVALID_VALUE)?;
    // A communicator destroyed before its queued work ran has nothing left to do it with.
    let Some(Object::NcclComm(state)) = emu.objects.get_mut(&comm) else { return Ok(()) };
    state.completed = state.completed.max(seq + 1);
    let outcome = match (&state.failure, state.link.as_mut()) {
        (None, Some(link)) => link.collective(seq, combine, &mut buffer).map_err(|e| (e.remote, e.message)),
        _ => Err((true, "an earlier collective of this communicator failed".to_string())),
    };
    match outcome {
        Ok(()) => emu.devices[dev].sim.copy_htod(recv, &buffer).map_err(|_| CUresult::CUDA_ERROR_INVALID_VALUE),
        Err((remote, message)) => {
            let code = if remote { ncclResult_t::ncclRemoteError } else { ncclResult_t::ncclSystemError };
            // The first failure says why; the collectives queued after it fail with it silently.
            if state.failure.is_none() {
                printed(&format!("collective {seq} failed ({code:?}): {message}"));
                state.failure = Some((code, CString::new(message).unwrap_or_default()));
            }
            state.link = None;
            emu.devices[dev].ctx.sticky = Some(CUresult::CUDA_ERROR_LAUNCH_FAILED);
            Ok(())
        }
    }
}
