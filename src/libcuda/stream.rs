//! Streams and events: cuStreamCreate/Destroy/Synchronize/Query/WaitEvent and
//! cuEventCreate/Record/Query/Synchronize/ElapsedTime/Destroy. Synchronising calls run the queued
//! work they wait for (queue.rs); event times are the simulator's predicted device times.

use crate::errors::{guard, write_out, CuResult};
use crate::queue::{drain, event_complete, invalidate_captures, stream_idle, stream_ref, submit, Op, StreamRef};
use crate::state::{with_context, Capture, Emulator, Object};
use cudarc::driver::sys::CUresult;
use std::ffi::{c_int, c_uint, c_void};

const CU_EVENT_DISABLE_TIMING: c_uint = 0x2;

#[no_mangle]
pub extern "C" fn cuStreamCreate(stream: *mut *mut c_void, _flags: c_uint) -> CUresult {
    guard("cuStreamCreate", || with_context(|emu, dev| write_out(stream, emu.insert(Object::Stream { device: dev, capture: None, queue: Default::default() }) as *mut c_void)))
}

/// Priorities do not change a synchronous order.
#[no_mangle]
pub extern "C" fn cuStreamCreateWithPriority(stream: *mut *mut c_void, flags: c_uint, _priority: c_int) -> CUresult {
    cuStreamCreate(stream, flags)
}

fn created_stream(emu: &mut Emulator, dev: usize, stream: *mut c_void) -> CuResult<Option<&mut Option<Capture>>> {
    match stream_ref(emu, dev, stream as u64)? {
        StreamRef::Created(handle) => match emu.object(handle, dev)? {
            Object::Stream { capture, .. } => Ok(Some(capture)),
            _ => Err(CUresult::CUDA_ERROR_INVALID_HANDLE),
        },
        StreamRef::Legacy | StreamRef::PerThread => Ok(None),
    }
}

#[no_mangle]
pub extern "C" fn cuStreamDestroy_v2(stream: *mut c_void) -> CUresult {
    guard("cuStreamDestroy_v2", || {
        with_context(|emu, dev| match created_stream(emu, dev, stream)? {
            Some(_) => {
                // The stream's queued work still completes, as on the real driver.
                let result = drain(emu, dev, |emu| stream_idle(emu, stream as u64));
                emu.objects.remove(&(stream as u64));
                result
            }
            None => Err(CUresult::CUDA_ERROR_INVALID_HANDLE),
        })
    })
}

/// Synchronising with (or querying) a capturing stream is illegal and invalidates the capture;
/// the legacy stream synchronises with every stream, so it may not wait while one captures.
fn wait_for_stream(stream: *mut c_void) -> CuResult {
    with_context(|emu, dev| {
        let legacy = matches!(stream_ref(emu, dev, stream as u64)?, StreamRef::Legacy);
        if legacy && invalidate_captures(emu, dev) {
            return Err(CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
        }
        if let Some(capture @ Some(_)) = created_stream(emu, dev, stream)? {
            *capture = Some(Capture::Invalidated);
            return Err(CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
        }
        match stream_ref(emu, dev, stream as u64)? {
            StreamRef::Created(handle) => drain(emu, dev, |emu| stream_idle(emu, handle)),
            StreamRef::Legacy | StreamRef::PerThread => drain(emu, dev, |_| false),
        }
    })
}

#[no_mangle]
pub extern "C" fn cuStreamSynchronize(stream: *mut c_void) -> CUresult {
    guard("cuStreamSynchronize", || wait_for_stream(stream))
}

#[no_mangle]
pub extern "C" fn cuStreamQuery(stream: *mut c_void) -> CUresult {
    guard("cuStreamQuery", || wait_for_stream(stream))
}

fn event(emu: &mut Emulator, dev: usize, event: *mut c_void) -> CuResult<(bool, Option<f64>)> {
    match emu.object(event as u64, dev)? {
        Object::Event { timing, recorded_at_s, .. } => Ok((*timing, *recorded_at_s)),
        _ => Err(CUresult::CUDA_ERROR_INVALID_HANDLE),
    }
}

#[no_mangle]
pub extern "C" fn cuStreamWaitEvent(stream: *mut c_void, h_event: *mut c_void, _flags: c_uint) -> CUresult {
    guard("cuStreamWaitEvent", || {
        with_context(|emu, dev| {
            event(emu, dev, h_event)?;
            submit(emu, dev, stream as u64, Op::WaitEvent { event: h_event as u64, generation: 0 })
        })
    })
}

#[no_mangle]
pub extern "C" fn cuEventCreate(ph_event: *mut *mut c_void, flags: c_uint) -> CUresult {
    guard("cuEventCreate", || {
        with_context(|emu, dev| {
            let timing = flags & CU_EVENT_DISABLE_TIMING == 0;
            write_out(ph_event, emu.insert(Object::Event { device: dev, timing, recorded_at_s: None, submitted: 0, completed: 0 }) as *mut c_void)
        })
    })
}

#[no_mangle]
pub extern "C" fn cuEventRecord(h_event: *mut c_void, stream: *mut c_void) -> CUresult {
    guard("cuEventRecord", || {
        with_context(|emu, dev| {
            event(emu, dev, h_event)?;
            submit(emu, dev, stream as u64, Op::RecordEvent { event: h_event as u64, generation: 0 })
        })
    })
}

/// Runs the queued work up to the event's latest record.
fn wait_for_event(h_event: *mut c_void) -> CuResult {
    with_context(|emu, dev| {
        event(emu, dev, h_event)?;
        drain(emu, dev, |emu| event_complete(emu, h_event as u64))
    })
}

#[no_mangle]
pub extern "C" fn cuEventQuery(h_event: *mut c_void) -> CUresult {
    guard("cuEventQuery", || wait_for_event(h_event))
}

#[no_mangle]
pub extern "C" fn cuEventSynchronize(h_event: *mut c_void) -> CUresult {
    guard("cuEventSynchronize", || wait_for_event(h_event))
}

/// Milliseconds of predicted device time between two recorded events. An event never recorded,
/// or created without timing, is INVALID_HANDLE, and one whose record has not run yet (no
/// synchronisation on it) NOT_READY, as on the real driver.
#[no_mangle]
pub extern "C" fn cuEventElapsedTime(ms: *mut f32, h_start: *mut c_void, h_end: *mut c_void) -> CUresult {
    guard("cuEventElapsedTime", || {
        with_context(|emu, dev| {
            if !event_complete(emu, h_start as u64) || !event_complete(emu, h_end as u64) {
                return Err(CUresult::CUDA_ERROR_NOT_READY);
            }
            match (event(emu, dev, h_start)?, event(emu, dev, h_end)?) {
            ((true, Some(start)), (true, Some(end))) => write_out(ms, ((end - start) * 1e3) as f32),
                _ => Err(CUresult::CUDA_ERROR_INVALID_HANDLE),
            }
        })
    })
}

#[no_mangle]
pub extern "C" fn cuEventElapsedTime_v2(ms: *mut f32, h_start: *mut c_void, h_end: *mut c_void) -> CUresult {
    cuEventElapsedTime(ms, h_start, h_end)
}

#[no_mangle]
pub extern "C" fn cuEventDestroy_v2(h_event: *mut c_void) -> CUresult {
    guard("cuEventDestroy_v2", || {
        with_context(|emu, dev| {
            event(emu, dev, h_event)?;
            emu.objects.remove(&(h_event as u64));
            Ok(())
        })
    })
}
