//! Device memory (cuMemAlloc/Free, their stream-ordered forms, cuMemGetInfo), copies and
//! memsets (synchronous on the legacy stream, or on a stream) and pinned host memory.
//!
//! Every allocation is tracked, so freeing a pointer that is not a live allocation's base (a
//! stray or already-freed pointer) is CUDA_ERROR_INVALID_VALUE, and copies that leave an
//! allocation are refused with the same code.

use crate::errors::{guard, notice_once, write_out, CuResult};
use crate::queue::{drain, stream_ref, submit, Op, StreamRef};
use crate::state::{with_context, Emulator, Object};
use cudarc::driver::sys::CUresult;
use ferronet::device::driver::Driver;
use ferronet::Error;
use std::alloc::Layout;
use std::ffi::{c_uint, c_void};

fn alloc(emu: &mut Emulator, dev: usize, bytes: usize) -> CuResult<u64> {
    if bytes == 0 {
        return Err(CUresult::CUDA_ERROR_INVALID_VALUE);
    }
    let device = &mut emu.devices[dev];
    let ptr = device.sim.alloc(bytes).map_err(|e| match e {
        Error::OutOfMemory { .. } => CUresult::CUDA_ERROR_OUT_OF_MEMORY,
        _ => CUresult::CUDA_ERROR_INVALID_VALUE,
    })?;
    device.ctx.allocations.insert(ptr, bytes);
    Ok(ptr)
}

/// Frees after all queued work has run: it may still use the allocation.
fn free(emu: &mut Emulator, dev: usize, ptr: u64) -> CuResult {
    drain(emu, dev, |_| false)?;
    let device = &mut emu.devices[dev];
    device.ctx.allocations.remove(&ptr).ok_or(CUresult::CUDA_ERROR_INVALID_VALUE)?;
    device.sim.free(ptr);
    Ok(())
}

/// Stream-ordered allocation cannot be recorded into a graph by this emulation.
fn refuse_capture(emu: &mut Emulator, dev: usize, stream: *mut c_void, entry_point: &str) -> CuResult {
    if let StreamRef::Created(handle) = stream_ref(emu, dev, stream as u64)? {
        if let Object::Stream { capture: Some(_), .. } = emu.object(handle, dev)? {
            notice_once(format!("{entry_point} during stream capture is not implemented (CUDA_ERROR_NOT_SUPPORTED)"));
            return Err(CUresult::CUDA_ERROR_NOT_SUPPORTED);
        }
    }
    Ok(())
}

#[no_mangle]
pub extern "C" fn cuMemAlloc_v2(dptr: *mut u64, bytes: usize) -> CUresult {
    guard("cuMemAlloc_v2", || with_context(|emu, dev| write_out(dptr, alloc(emu, dev, bytes)?)))
}

#[no_mangle]
pub extern "C" fn cuMemFree_v2(dptr: u64) -> CUresult {
    guard("cuMemFree_v2", || with_context(|emu, dev| free(emu, dev, dptr)))
}

/// Work runs in submission order, so an allocation made now is ready for the stream's later work.
#[no_mangle]
pub extern "C" fn cuMemAllocAsync(dptr: *mut u64, bytes: usize, stream: *mut c_void) -> CUresult {
    guard("cuMemAllocAsync", || {
        with_context(|emu, dev| {
            refuse_capture(emu, dev, stream, "cuMemAllocAsync")?;
            write_out(dptr, alloc(emu, dev, bytes)?)
        })
    })
}

#[no_mangle]
pub extern "C" fn cuMemFreeAsync(dptr: u64, stream: *mut c_void) -> CUresult {
    guard("cuMemFreeAsync", || {
        with_context(|emu, dev| {
            refuse_capture(emu, dev, stream, "cuMemFreeAsync")?;
            free(emu, dev, dptr)
        })
    })
}

#[no_mangle]
pub extern "C" fn cuMemGetInfo_v2(free: *mut usize, total: *mut usize) -> CUresult {
    guard("cuMemGetInfo_v2", || {
        with_context(|emu, dev| {
            let (f, t) = emu.devices[dev].sim.mem_info().map_err(|_| CUresult::CUDA_ERROR_UNKNOWN)?;
            write_out(free, f)?;
            write_out(total, t)
        })
    })
}

/// Submits a copy or memset: zero bytes is a no-op, a NULL host pointer is INVALID_VALUE.
fn transfer(stream: *mut c_void, host: *const c_void, bytes: usize, op: Op) -> CuResult {
    with_context(|emu, dev| {
        if bytes == 0 {
            return Ok(());
        }
        if host.is_null() {
            return Err(CUresult::CUDA_ERROR_INVALID_VALUE);
        }
        submit(emu, dev, stream as u64, op)
    })
}

/// Stands in for the host pointer of device-only operations.
const NO_HOST: *const c_void = 1 as *const c_void;

#[no_mangle]
pub extern "C" fn cuMemcpyHtoD_v2(dst: u64, src: *const c_void, bytes: usize) -> CUresult {
    guard("cuMemcpyHtoD_v2", || transfer(std::ptr::null_mut(), src, bytes, Op::HtoD { dst, src: src as usize, bytes }))
}

#[no_mangle]
pub extern "C" fn cuMemcpyDtoH_v2(dst: *mut c_void, src: u64, bytes: usize) -> CUresult {
    guard("cuMemcpyDtoH_v2", || transfer(std::ptr::null_mut(), dst, bytes, Op::DtoH { dst: dst as usize, src, bytes }))
}

#[no_mangle]
pub extern "C" fn cuMemcpyDtoD_v2(dst: u64, src: u64, bytes: usize) -> CUresult {
    guard("cuMemcpyDtoD_v2", || transfer(std::ptr::null_mut(), NO_HOST, bytes, Op::DtoD { dst, src, bytes }))
}

#[no_mangle]
pub extern "C" fn cuMemsetD8_v2(dst: u64, value: u8, bytes: usize) -> CUresult {
    guard("cuMemsetD8_v2", || transfer(std::ptr::null_mut(), NO_HOST, bytes, Op::Memset { dst, value, bytes }))
}

#[no_mangle]
pub extern "C" fn cuMemcpyHtoDAsync_v2(dst: u64, src: *const c_void, bytes: usize, stream: *mut c_void) -> CUresult {
    guard("cuMemcpyHtoDAsync_v2", || transfer(stream, src, bytes, Op::HtoD { dst, src: src as usize, bytes }))
}

#[no_mangle]
pub extern "C" fn cuMemcpyDtoHAsync_v2(dst: *mut c_void, src: u64, bytes: usize, stream: *mut c_void) -> CUresult {
    guard("cuMemcpyDtoHAsync_v2", || transfer(stream, dst, bytes, Op::DtoH { dst: dst as usize, src, bytes }))
}

#[no_mangle]
pub extern "C" fn cuMemcpyDtoDAsync_v2(dst: u64, src: u64, bytes: usize, stream: *mut c_void) -> CUresult {
    guard("cuMemcpyDtoDAsync_v2", || transfer(stream, NO_HOST, bytes, Op::DtoD { dst, src, bytes }))
}

#[no_mangle]
pub extern "C" fn cuMemsetD8Async(dst: u64, value: u8, bytes: usize, stream: *mut c_void) -> CUresult {
    guard("cuMemsetD8Async", || transfer(stream, NO_HOST, bytes, Op::Memset { dst, value, bytes }))
}

/// Pinned host memory is ordinary page-aligned host memory here (every copy is a CPU copy).
fn host_alloc(pp: *mut *mut c_void, bytes: usize) -> CuResult {
    with_context(|emu, _| {
        let layout = Layout::from_size_align(bytes, 4096).map_err(|_| CUresult::CUDA_ERROR_INVALID_VALUE)?;
        if bytes == 0 || pp.is_null() {
            return Err(CUresult::CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: a non-zero size with a valid alignment.
        let ptr = unsafe { std::alloc::alloc(layout) };
        if ptr.is_null() {
            return Err(CUresult::CUDA_ERROR_OUT_OF_MEMORY);
        }
        emu.host_allocations.insert(ptr as usize, layout);
        write_out(pp, ptr as *mut c_void)
    })
}

#[no_mangle]
pub extern "C" fn cuMemAllocHost_v2(pp: *mut *mut c_void, bytes: usize) -> CUresult {
    guard("cuMemAllocHost_v2", || host_alloc(pp, bytes))
}

/// The flags (portable, mapped, write-combined) change nothing for a CPU copy.
#[no_mangle]
pub extern "C" fn cuMemHostAlloc(pp: *mut *mut c_void, bytes: usize, _flags: c_uint) -> CUresult {
    guard("cuMemHostAlloc", || host_alloc(pp, bytes))
}

#[no_mangle]
pub extern "C" fn cuMemFreeHost(p: *mut c_void) -> CUresult {
    guard("cuMemFreeHost", || {
        with_context(|emu, _| {
            let layout = emu.host_allocations.remove(&(p as usize)).ok_or(CUresult::CUDA_ERROR_INVALID_VALUE)?;
            // SAFETY: allocated by host_alloc with this layout and removed from the table, so freed once.
            unsafe { std::alloc::dealloc(p as *mut u8, layout) };
            Ok(())
        })
    })
}
