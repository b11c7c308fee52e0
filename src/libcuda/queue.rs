//! Work on streams: the operations a stream (or a captured graph) holds, where each goes when
//! submitted (run now, or recorded into a capture), and running one on the simulator.
//!
//! Semantics are synchronous: work submitted outside a capture runs at once, in submission
//! order, which respects every stream and event ordering. A kernel fault does not fail the
//! launch that caused it (launches are asynchronous on hardware); it becomes the context's
//! sticky error, returned by the next call and every call after it.

use crate::errors::CuResult;
use crate::state::{Capture, Emulator, Object};
use cudarc::driver::sys::CUresult;
use ferronet::gpu::driver::{Driver, LaunchConfig};
use ferronet::Error;

/// Host <-> device copies are predicted at a PCIe 4.0 x16 rate.
const PCIE_BYTES_PER_S: f64 = 25e9;

#[derive(Clone, Debug)]
pub enum Op {
    Launch { sim_module: String, kernel: String, cfg: LaunchConfig, params: Vec<u8> },
    /// Host addresses are read or written when the operation runs, as a DMA engine would.
    HtoD { dst: u64, src: usize, bytes: usize },
    DtoH { dst: usize, src: u64, bytes: usize },
    DtoD { dst: u64, src: u64, bytes: usize },
    Memset { dst: u64, value: u8, bytes: usize },
    RecordEvent { event: u64 },
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
        if let Object::Stream { device, capture: Some(capture) } = object {
            if *device == dev {
                *capture = Capture::Invalidated;
                any = true;
            }
        }
    }
    any
}

/// Submits `op` to `stream`: recorded when the stream captures, otherwise run now.
pub fn submit(emu: &mut Emulator, dev: usize, stream: u64, op: Op) -> CuResult {
    match stream_ref(emu, dev, stream)? {
        StreamRef::Legacy if invalidate_captures(emu, dev) => return Err(CUresult::CUDA_ERROR_STREAM_CAPTURE_IMPLICIT),
        StreamRef::Created(handle) => {
            if let Object::Stream { capture: Some(capture), .. } = emu.object(handle, dev)? {
                return match capture {
                    Capture::Active(ops) => {
                        ops.push(op);
                        Ok(())
                    }
                    Capture::Invalidated => Err(CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED),
                };
            }
        }
        StreamRef::Legacy | StreamRef::PerThread => {}
    }
    run(emu, dev, &op)
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
        Op::Launch { ref sim_module, ref kernel, ref cfg, ref params } => match sim.launch_raw(sim_module, kernel, cfg, params) {
            Ok(()) => {
                let predicted: f64 = sim.take_launch_stats().iter().map(|s| device.config.roofline.predict(s).seconds).sum();
                device.ctx.predicted_s += predicted;
            }
            Err(Error::Sim(message)) => {
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
        Op::RecordEvent { event } => {
            let now = device.ctx.predicted_s;
            if let Object::Event { recorded_at_s, .. } = emu.object(event, dev)? {
                *recorded_at_s = Some(now);
            }
        }
    }
    Ok(())
}
