//! Stream capture and graphs: cuStreamBeginCapture/EndCapture/IsCapturing,
//! cuGraphInstantiateWithFlags, cuGraphLaunch, cuGraphDestroy, cuGraphExecDestroy. A captured
//! graph is the stream's operations in order; launching it submits them again.

use crate::errors::{guard, write_out, CuResult};
use crate::queue::{stream_ref, submit, StreamRef};
use crate::state::{with_context, Capture, Emulator, Object};
use cudarc::driver::sys::CUresult;
use std::ffi::{c_uint, c_ulonglong, c_void};

/// CUstreamCaptureStatus values.
const CAPTURE_STATUS_NONE: c_uint = 0;
const CAPTURE_STATUS_ACTIVE: c_uint = 1;
const CAPTURE_STATUS_INVALIDATED: c_uint = 2;

/// The capture state of a stream created by cuStreamCreate; the legacy stream cannot capture.
fn capture_of(emu: &mut Emulator, dev: usize, stream: *mut c_void) -> CuResult<&mut Option<Capture>> {
    match stream_ref(emu, dev, stream as u64)? {
        StreamRef::Created(handle) => match emu.object(handle, dev)? {
            Object::Stream { capture, .. } => Ok(capture),
            _ => Err(CUresult::CUDA_ERROR_INVALID_HANDLE),
        },
        StreamRef::Legacy | StreamRef::PerThread => Err(CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED),
    }
}

#[no_mangle]
pub extern "C" fn cuStreamBeginCapture_v2(stream: *mut c_void, _mode: c_uint) -> CUresult {
    guard("cuStreamBeginCapture_v2", || {
        with_context(|emu, dev| {
            let capture = capture_of(emu, dev, stream)?;
            if capture.is_some() {
                return Err(CUresult::CUDA_ERROR_ILLEGAL_STATE);
            }
            *capture = Some(Capture::Active(Vec::new()));
            Ok(())
        })
    })
}

#[no_mangle]
pub extern "C" fn cuStreamEndCapture(stream: *mut c_void, ph_graph: *mut *mut c_void) -> CUresult {
    guard("cuStreamEndCapture", || {
        with_context(|emu, dev| match capture_of(emu, dev, stream)?.take() {
            Some(Capture::Active(ops)) => write_out(ph_graph, emu.insert(Object::Graph { device: dev, ops }) as *mut c_void),
            Some(Capture::Invalidated) => {
                write_out(ph_graph, std::ptr::null_mut())?;
                Err(CUresult::CUDA_ERROR_STREAM_CAPTURE_INVALIDATED)
            }
            None => Err(CUresult::CUDA_ERROR_ILLEGAL_STATE),
        })
    })
}

#[no_mangle]
pub extern "C" fn cuStreamIsCapturing(stream: *mut c_void, status: *mut c_uint) -> CUresult {
    guard("cuStreamIsCapturing", || {
        with_context(|emu, dev| {
            let state = match stream_ref(emu, dev, stream as u64)? {
                StreamRef::Created(_) => match capture_of(emu, dev, stream)? {
                    None => CAPTURE_STATUS_NONE,
                    Some(Capture::Active(_)) => CAPTURE_STATUS_ACTIVE,
                    Some(Capture::Invalidated) => CAPTURE_STATUS_INVALIDATED,
                },
                StreamRef::Legacy | StreamRef::PerThread => CAPTURE_STATUS_NONE,
            };
            write_out(status, state)
        })
    })
}

#[no_mangle]
pub extern "C" fn cuGraphInstantiateWithFlags(ph_exec: *mut *mut c_void, graph: *mut c_void, _flags: c_ulonglong) -> CUresult {
    guard("cuGraphInstantiateWithFlags", || {
        with_context(|emu, dev| {
            let ops = match emu.object(graph as u64, dev)? {
                Object::Graph { ops, .. } => ops.clone(),
                _ => return Err(CUresult::CUDA_ERROR_INVALID_HANDLE),
            };
            write_out(ph_exec, emu.insert(Object::GraphExec { device: dev, ops }) as *mut c_void)
        })
    })
}

#[no_mangle]
pub extern "C" fn cuGraphLaunch(exec: *mut c_void, stream: *mut c_void) -> CUresult {
    guard("cuGraphLaunch", || {
        with_context(|emu, dev| {
            let ops = match emu.object(exec as u64, dev)? {
                Object::GraphExec { ops, .. } => ops.clone(),
                _ => return Err(CUresult::CUDA_ERROR_INVALID_HANDLE),
            };
            ops.into_iter().try_for_each(|op| submit(emu, dev, stream as u64, op))
        })
    })
}

fn destroy(handle: *mut c_void, is_kind: fn(&Object) -> bool) -> CuResult {
    with_context(|emu, dev| {
        if !is_kind(emu.object(handle as u64, dev)?) {
            return Err(CUresult::CUDA_ERROR_INVALID_HANDLE);
        }
        emu.objects.remove(&(handle as u64));
        Ok(())
    })
}

#[no_mangle]
pub extern "C" fn cuGraphDestroy(graph: *mut c_void) -> CUresult {
    guard("cuGraphDestroy", || destroy(graph, |o| matches!(o, Object::Graph { .. })))
}

#[no_mangle]
pub extern "C" fn cuGraphExecDestroy(exec: *mut c_void) -> CUresult {
    guard("cuGraphExecDestroy", || destroy(exec, |o| matches!(o, Object::GraphExec { .. })))
}
