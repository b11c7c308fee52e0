//! Work on streams: the operations a stream (or a captured graph) holds, where each goes when
//! submitted (queued, run now, or recorded into a capture), and running them on the simulator.
//!
//! Work on a created stream is queued and runs only at a synchronising call (context, stream or
//! event synchronisation, an event query, legacy-stream work, a free). The scheduler respects
//! each stream's order and every event wait but is otherwise adversarial: of the streams whose
//! next operation may run, it runs the one submitted last, so work that misses a
//! synchronisation or an event wait sees stale data, as it could on a GPU. Work on the legacy
//! stream first completes all queued work, then runs at once. A kernel fault does not fail the
//! launch that caused it; it becomes the context's sticky error, returned by the synchronising
//! call that ran the launch and by every call after it.

use crate::errors::CuResult;
use crate::nccl::Collective;
use crate::state::{Capture, Emulator, Object};
use cudarc::driver::sys::CUresult;
use ferronet::device::driver::{Driver, LaunchConfig};
use ferronet::sim::LaunchKind;
use ferronet::Error;

/// Host <-> device copies are predicted at a PCIe 4.0 x16 rate.
const PCIE_BYTES_PER_S: f64 = 25e9;

#[derive(Clone, Debug)]
pub enum Op {
    Launch { sim_module: String, kernel: String, cfg: LaunchConfig, params: Vec<u8>, kind: LaunchKind },
    /// Host addresses are read or written when the operation runs, as a DMA engine would.
    HtoD { dst: u64, src: usize, bytes: usize },
    DtoH { dst: usize, src: u64, bytes: usize },
    DtoD { dst: u64, src: u64, bytes: usize },
    Memset { dst: u64, value: u8, bytes: usize },
    /// `generation`: which of the event's records this is (assigned at submission).
    RecordEvent { event: u64, generation: u64 },
    /// Holds its stream until record `generation` of `event` has run.
    WaitEvent { event: u64, generation: u64 },
    /// A collective of an emulated NCCL communicator (nccl.rs).
    Collective(Collective),
}

/// Where a stream handle points.
pub enum StreamRef {
    /// NULL or CU_STREAM_LEGACY: synchronises with every blocking stream, so it may not be used
    /// while another stream captures.
    Legacy,
    /// CU_STREAM_PER_THREAD.
    PerThread,
    Created(u64),
}

const CU_STREAM_LEGACY: u64 = 0x1;
const CU_STREAM_PER_THREAD: u64 = 0x2;

pub fn stream_ref(emu: &mut Emulator, dev: usize, stream: u64) -> CuResult<StreamRef> {
    match stream {
        0 | CU_STREAM_LEGACY => Ok(StreamRef::Legacy),
        CU_STREAM_PER_THREAD => Ok(StreamRef::PerThread),
        handle => match emu.object(handle, dev)? {
            Object::Stream { .. } => Ok(StreamRef::Created(handle)),
            _ => Err(CUresult::CUDA_ERROR_INVALID_HANDLE),
        },
    }
}

/// Invalidates every capture on device `dev`; true when there was one. Called by operations that
/// are illegal while a stream captures (they would synchronise with it).
pub fn invalidate_captures(emu: &mut Emulator, dev: usize) -> bool {
    let mut any = false;
    for object in emu.objects.values_mut() {
        if let Object::Stream { device, capture: Some(capture), .. } = object {
            if *device == dev {
                *capture = Capture::Invalidated;
                any = true;
            }
        }
    }
    any
}

/// Numbers event records and waits as they are submitted: a wait holds until the event's latest
/// record submitted before it has run.
fn number_event_op(emu: &mut Emulator, dev: usize, op: Op) -> CuResult<Op> {
    Ok(match op {
        Op::RecordEvent { event, .. } => match emu.object(event, dev)? {
            Object::Event { submitted, .. } => {
                *submitted += 1;
                Op::RecordEvent { event, generation: *submitted }
            }
            _ => return Err(CUresult::CUDA_ERROR_INVALID_HANDLE),
        },
        Op::WaitEvent { event, .. } => match emu.object(event, dev)? {
            Object::Event { submitted, .. } => Op::WaitEvent { event, generation: *submitted },
            _ => return Err(CUresult::CUDA_ERROR_INVALID_HANDLE),
        },
        other => other,
    })
}

/// Submits `op` to `stream`: recorded when the stream captures, queued on a created stream,
/// run at once (after all queued work) on the legacy and per-thread streams.
pub fn submit(emu: &mut Emulator, dev: usize, stream: u64, op: Op) -> CuResult {
    match stream_ref(emu, dev, stream)? {
        StreamRef::Legacy if invalidate_captures(emu, dev) => Err(CUresult::CUDA_ERROR_STREAM_CAPTURE_IMPLICIT),
        StreamRef::Created(handle) => {
            let capturing = matches!(emu.object(handle, dev)?, Object::Stream { capture: Some(_), .. });
            let op = if capturing { op } else { number_event_op(emu, dev, op)? };
            emu.next_submission += 1;
            let submission = emu.next_submission;
            match emu.object(handle, dev)? {
                Object::Stream { capture: Some(Capture::Active(ops)), .. } => ops.push(op),
                Object::Stream { capture: Some(Capture::Invalidated), .. } => return Err(CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED),
                Object::Stream { queue, .. } => queue.push_back((submission, op)),
                _ => return Err(CUresult::CUDA_ERROR_INVALID_HANDLE),
            }
            Ok(())
        }
        StreamRef::Legacy | StreamRef::PerThread => {
            let op = number_event_op(emu, dev, op)?;
            drain(emu, dev, |_| false)?;
            run(emu, dev, &op)
        }
    }
}

/// Whether queued operation `op` may run now.
fn ready(emu: &Emulator, op: &Op) -> bool {
    match *op {
        // A wait on a destroyed event no longer holds anything.
        Op::WaitEvent { event, generation } => match emu.objects.get(&event) {
            Some(Object::Event { completed, .. }) => *completed >= generation,
            _ => true,
        },
        // A communicator's collectives run in the order they were called, whatever their streams.
        Op::Collective(Collective { comm, seq, .. }) => match emu.objects.get(&comm) {
            Some(Object::NcclComm(state)) => state.completed >= seq,
            _ => true,
        },
        _ => true,
    }
}

/// Runs queued work of device `dev` until `done` holds or nothing is left, latest-submitted
/// ready work first; then returns the context's sticky fault if the work raised one.
pub fn drain(emu: &mut Emulator, dev: usize, done: impl Fn(&Emulator) -> bool) -> CuResult {
    let mut first_error = Ok(());
    while !done(emu) {
        let next = emu
            .objects
            .iter()
            .filter_map(|(&h, o)| match o {
                Object::Stream { device, queue, .. } if *device == dev => queue.front().filter(|(_, op)| ready(emu, op)).map(|(n, _)| (*n, h)),
                _ => None,
            })
            .max();
        let Some((_, stream)) = next else { break };
        let Some(Object::Stream { queue, .. }) = emu.objects.get_mut(&stream) else { break };
        let Some((_, op)) = queue.pop_front() else { break };
        // An operation that fails (a copy outside every allocation) is reported by the call that
        // ran it; the rest of the queued work still runs.
        let result = run(emu, dev, &op);
        if first_error.is_ok() {
            first_error = result;
        }
    }
    match emu.devices[dev].ctx.sticky {
        Some(code) => Err(code),
        None => first_error,
    }
}

/// Whether stream `handle` has no queued work left.
pub fn stream_idle(emu: &Emulator, handle: u64) -> bool {
    !matches!(emu.objects.get(&handle), Some(Object::Stream { queue, .. }) if !queue.is_empty())
}

/// Whether every record of event `handle` submitted so far has run.
pub fn event_complete(emu: &Emulator, handle: u64) -> bool {
    !matches!(emu.objects.get(&handle), Some(Object::Event { submitted, completed, .. }) if completed < submitted)
}

/// The CUDA error of a kernel fault the simulator found, from the fault kind that starts its
/// message (see src/sim/sanitizer.rs `fault`): what hardware reports for out-of-bounds and
/// misaligned accesses and failed asserts; the sanitizer's stricter findings (races,
/// uninitialised reads, barrier misuse) as an unspecified launch failure.
fn fault_code(message: &str) -> CUresult {
    if message.starts_with("out-of-bounds") {
        CUresult::CUDA_ERROR_ILLEGAL_ADDRESS
    } else if message.starts_with("misaligned") {
        CUresult::CUDA_ERROR_MISALIGNED_ADDRESS
    } else if message.starts_with("assertion failed") {
        CUresult::CUDA_ERROR_ASSERT
    } else {
        CUresult::CUDA_ERROR_LAUNCH_FAILED
    }
}

/// Runs one operation on device `dev` now.
pub fn run(emu: &mut Emulator, dev: usize, op: &Op) -> CuResult {
    let invalid = |_: Error| CUresult::CUDA_ERROR_INVALID_VALUE;
    let device = &mut emu.devices[dev];
    let sim = &device.sim;
    let copy_s = |bytes: usize| bytes as f64 / PCIE_BYTES_PER_S;
    match *op {
        Op::Launch { ref sim_module, ref kernel, ref cfg, ref params, kind } => match sim.launch_raw(sim_module, kernel, cfg, params, kind) {
            Ok(()) => {
                let predicted: f64 = sim.take_launch_stats().iter().map(|s| device.config.roofline.predict(s).seconds).sum();
                device.ctx.predicted_s += predicted;
            }
            Err(Error::KernelFault { detail: message, .. }) => {
                let code = fault_code(&message);
                eprintln!("libcuda (ferronet emulation): kernel fault, the context now returns {code:?}: {message}");
                device.ctx.sticky = Some(code);
            }
            Err(e) => {
                eprintln!("libcuda (ferronet emulation): launch refused (CUDA_ERROR_INVALID_VALUE): {e}");
                return Err(CUresult::CUDA_ERROR_INVALID_VALUE);
            }
        },
        Op::HtoD { dst, src, bytes } => {
            // SAFETY: the caller of the copy guarantees `bytes` readable bytes at `src` until it runs.
            let host = unsafe { std::slice::from_raw_parts(src as *const u8, bytes) };
            sim.copy_htod(dst, host).map_err(invalid)?;
            device.ctx.predicted_s += copy_s(bytes);
        }
        Op::DtoH { dst, src, bytes } => {
            // SAFETY: as above, `bytes` writable bytes at `dst`.
            let host = unsafe { std::slice::from_raw_parts_mut(dst as *mut u8, bytes) };
            sim.copy_dtoh(host, src).map_err(invalid)?;
            device.ctx.predicted_s += copy_s(bytes);
        }
        Op::DtoD { dst, src, bytes } => {
            sim.copy_dtod(dst, src, bytes).map_err(invalid)?;
            device.ctx.predicted_s += 2.0 * bytes as f64 / device.config.roofline.dram_bytes_per_s;
        }
        Op::Memset { dst, value, bytes } => {
            sim.memset(dst, value, bytes).map_err(invalid)?;
            device.ctx.predicted_s += bytes as f64 / device.config.roofline.dram_bytes_per_s;
        }
        Op::RecordEvent { event, generation } => {
            let now = device.ctx.predicted_s;
            // The event may have been destroyed since; its record then has nothing to mark.
            if let Some(Object::Event { recorded_at_s, completed, .. }) = emu.objects.get_mut(&event) {
                *recorded_at_s = Some(now);
                *completed = (*completed).max(generation);
            }
        }
        Op::WaitEvent { .. } => {}
        Op::Collective(ref collective) => crate::nccl::run_collective(emu, dev, collective)?,
    }
    Ok(())
}
