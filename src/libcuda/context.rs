//! Primary contexts and the calling thread's current context: cuDevicePrimaryCtxRetain/Release,
//! cuCtxSetCurrent/GetCurrent/GetDevice, cuCtxSynchronize.

use crate::errors::{guard, write_out, CuResult};
use crate::queue::{drain, invalidate_captures};
use crate::state::{current_context, set_current_context, with_context, with_emulator};
use cudarc::driver::sys::CUresult;
use std::ffi::{c_int, c_void};

#[no_mangle]
pub extern "C" fn cuDevicePrimaryCtxRetain(pctx: *mut *mut c_void, dev: c_int) -> CUresult {
    guard("cuDevicePrimaryCtxRetain", || {
        with_emulator(|emu| {
            let index = emu.device_index(dev)?;
            let ctx = &mut emu.devices[index].ctx;
            write_out(pctx, ctx.handle as *mut c_void)?;
            ctx.retained += 1;
            Ok(())
        })
    })
}

#[no_mangle]
pub extern "C" fn cuDevicePrimaryCtxRelease_v2(dev: c_int) -> CUresult {
    guard("cuDevicePrimaryCtxRelease_v2", || {
        with_emulator(|emu| {
            let index = emu.device_index(dev)?;
            let ctx = &mut emu.devices[index].ctx;
            if ctx.retained == 0 {
                return Err(CUresult::CUDA_ERROR_INVALID_CONTEXT);
            }
            ctx.retained -= 1;
            if ctx.retained == 0 {
                // The last release destroys the context: its memory, modules, streams and events
                // and its sticky error go with it.
                emu.reset_device(index);
            }
            Ok(())
        })
    })
}

#[no_mangle]
pub extern "C" fn cuCtxSetCurrent(ctx: *mut c_void) -> CUresult {
    guard("cuCtxSetCurrent", || {
        with_emulator(|emu| {
            let handle = ctx as u64;
            if handle != 0 && !emu.devices.iter().any(|d| d.ctx.handle == handle && d.ctx.retained > 0) {
                return Err(CUresult::CUDA_ERROR_INVALID_CONTEXT);
            }
            set_current_context(handle);
            Ok(())
        })
    })
}

#[no_mangle]
pub extern "C" fn cuCtxGetCurrent(pctx: *mut *mut c_void) -> CUresult {
    guard("cuCtxGetCurrent", || with_emulator(|_| write_out(pctx, current_context() as *mut c_void)))
}

#[no_mangle]
pub extern "C" fn cuCtxGetDevice(device: *mut c_int) -> CUresult {
    guard("cuCtxGetDevice", || with_emulator(|emu| write_out(device, emu.current_device()? as c_int)))
}

/// Waiting for the whole context is illegal while one of its streams captures (it would wait
/// on work that is only being recorded): the capture is invalidated.
fn synchronize_context() -> CuResult {
    with_context(|emu, dev| {
        if invalidate_captures(emu, dev) {
            return Err(CUresult::CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED);
        }
        drain(emu, dev, |_| false)
    })
}

#[no_mangle]
pub extern "C" fn cuCtxSynchronize() -> CUresult {
    guard("cuCtxSynchronize", synchronize_context)
}
