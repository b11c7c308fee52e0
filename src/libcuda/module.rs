//! Modules from PTX text: cuModuleLoadData(Ex), cuModuleGetFunction, cuModuleGetGlobal,
//! cuModuleUnload. The PTX is checked as the driver's JIT would (a newer PTX ISA than the driver
//! knows, a target newer than the device) and handed to the simulator as a module of its own.

use crate::errors::{guard, notice_once, write_out, CuResult};
use crate::state::{with_context, Emulator, Object};
use cudarc::driver::sys::CUresult;
use std::collections::HashMap;
use std::ffi::{c_char, c_uint, c_void, CStr};

/// The newest PTX ISA the emulated driver (CUDA 12.9) accepts.
const MAX_PTX_ISA: (u32, u32) = (8, 8);

/// The value of the first `directive` line ("8.8" for `.version 8.8`).
fn directive<'a>(ptx: &'a str, directive: &str) -> Option<&'a str> {
    ptx.lines().find_map(|l| l.trim().strip_prefix(directive)).and_then(|rest| rest.split_whitespace().next())
}

/// The checks the driver's JIT makes before compiling.
fn check_ptx(ptx: &str, compute_capability: (i32, i32)) -> CuResult {
    let version = directive(ptx, ".version").and_then(|v| v.split_once('.')).and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)));
    match version {
        Some(v) if v > MAX_PTX_ISA => return Err(CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION),
        Some(_) => {}
        None => return Err(CUresult::CUDA_ERROR_INVALID_PTX),
    }
    let target = directive(ptx, ".target").map(|t| t.trim_end_matches(',').trim_end_matches(|c: char| c.is_ascii_alphabetic()));
    let arch = target.and_then(|t| t.strip_prefix("sm_").or_else(|| t.strip_prefix("compute_"))).and_then(|n| n.parse::<i32>().ok());
    let (major, minor) = compute_capability;
    match arch {
        Some(a) if a > major * 10 + minor => {
            notice_once(format!("PTX for {} cannot run on an sm_{major}{minor} device (CUDA_ERROR_INVALID_PTX)", target.unwrap_or("?")));
            Err(CUresult::CUDA_ERROR_INVALID_PTX)
        }
        Some(_) => Ok(()),
        None => Err(CUresult::CUDA_ERROR_INVALID_PTX),
    }
}

fn load(emu: &mut Emulator, dev: usize, image: *const c_void) -> CuResult<u64> {
    if image.is_null() {
        return Err(CUresult::CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: the C API's module image has at least one byte. Cubins (ELF) and fatbins start
    // with a binary magic number whose first byte PTX text never starts with.
    let first = unsafe { *(image as *const u8) };
    if [0x7f, 0x50, 0xb1].contains(&first) {
        notice_once("cubin and fatbin images hold machine code the PTX simulator cannot run; load PTX".into());
        return Err(CUresult::CUDA_ERROR_NOT_SUPPORTED);
    }
    // SAFETY: as above, a NUL-terminated string.
    let ptx = unsafe { CStr::from_ptr(image as *const c_char) }.to_str().map_err(|_| CUresult::CUDA_ERROR_INVALID_IMAGE)?;
    check_ptx(ptx, emu.devices[dev].config.compute_capability)?;
    let handle = emu.new_handle();
    let sim_name = format!("cu_module_{handle:x}");
    if let Err(e) = emu.devices[dev].sim.load_ptx(&sim_name, ptx) {
        eprintln!("libcuda (ferronet emulation): the PTX does not load (CUDA_ERROR_INVALID_PTX): {e}");
        return Err(CUresult::CUDA_ERROR_INVALID_PTX);
    }
    emu.objects.insert(handle, Object::Module { device: dev, sim_name, functions: HashMap::new() });
    Ok(handle)
}

#[no_mangle]
pub extern "C" fn cuModuleLoadData(module: *mut *mut c_void, image: *const c_void) -> CUresult {
    guard("cuModuleLoadData", || with_context(|emu, dev| write_out(module, load(emu, dev, image)? as *mut c_void)))
}

/// JIT options (log buffers, optimisation level) do not change what the simulator runs.
#[no_mangle]
pub extern "C" fn cuModuleLoadDataEx(
    module: *mut *mut c_void,
    image: *const c_void,
    _num_options: c_uint,
    _options: *mut c_uint,
    _option_values: *mut *mut c_void,
) -> CUresult {
    guard("cuModuleLoadDataEx", || with_context(|emu, dev| write_out(module, load(emu, dev, image)? as *mut c_void)))
}

fn module_name(emu: &mut Emulator, dev: usize, module: *mut c_void) -> CuResult<String> {
    match emu.object(module as u64, dev)? {
        Object::Module { sim_name, .. } => Ok(sim_name.clone()),
        _ => Err(CUresult::CUDA_ERROR_INVALID_HANDLE),
    }
}

fn symbol<'a>(name: *const c_char) -> CuResult<&'a str> {
    if name.is_null() {
        return Err(CUresult::CUDA_ERROR_INVALID_VALUE);
    }
    // SAFETY: a non-null NUL-terminated name, as the C API requires.
    unsafe { CStr::from_ptr(name) }.to_str().map_err(|_| CUresult::CUDA_ERROR_NOT_FOUND)
}

#[no_mangle]
pub extern "C" fn cuModuleGetFunction(hfunc: *mut *mut c_void, module: *mut c_void, name: *const c_char) -> CUresult {
    guard("cuModuleGetFunction", || {
        with_context(|emu, dev| {
            let sim_module = module_name(emu, dev, module)?;
            let kernel = symbol(name)?;
            if let Object::Module { functions, .. } = emu.object(module as u64, dev)? {
                if let Some(&f) = functions.get(kernel) {
                    return write_out(hfunc, f as *mut c_void);
                }
            }
            let params = match emu.devices[dev].sim.kernel_params(&sim_module, kernel) {
                Ok(Some(params)) => params,
                Ok(None) => return Err(CUresult::CUDA_ERROR_NOT_FOUND),
                Err(e) => {
                    eprintln!("libcuda (ferronet emulation): the simulator cannot run kernel {kernel} (CUDA_ERROR_NOT_SUPPORTED): {e}");
                    return Err(CUresult::CUDA_ERROR_NOT_SUPPORTED);
                }
            };
            let f = emu.insert(Object::Function { device: dev, module: module as u64, sim_module, kernel: kernel.into(), params });
            if let Object::Module { functions, .. } = emu.object(module as u64, dev)? {
                functions.insert(kernel.into(), f);
            }
            write_out(hfunc, f as *mut c_void)
        })
    })
}

#[no_mangle]
pub extern "C" fn cuModuleGetGlobal_v2(dptr: *mut u64, bytes: *mut usize, module: *mut c_void, name: *const c_char) -> CUresult {
    guard("cuModuleGetGlobal_v2", || {
        with_context(|emu, dev| {
            let sim_module = module_name(emu, dev, module)?;
            let global = emu.devices[dev].sim.global(&sim_module, symbol(name)?).map_err(|_| CUresult::CUDA_ERROR_INVALID_HANDLE)?;
            let (ptr, size) = global.ok_or(CUresult::CUDA_ERROR_NOT_FOUND)?;
            // Either out-pointer may be NULL when the caller does not want that value.
            if !dptr.is_null() {
                write_out(dptr, ptr)?;
            }
            if !bytes.is_null() {
                write_out(bytes, size)?;
            }
            Ok(())
        })
    })
}

#[no_mangle]
pub extern "C" fn cuModuleUnload(module: *mut c_void) -> CUresult {
    guard("cuModuleUnload", || {
        with_context(|emu, dev| {
            let sim_module = module_name(emu, dev, module)?;
            // Queued launches may still use the module's kernels.
            crate::queue::drain(emu, dev, |_| false)?;
            emu.objects.retain(|_, o| !matches!(o, Object::Function { module: m, .. } if *m == module as u64));
            emu.objects.remove(&(module as u64));
            emu.devices[dev].sim.unload_module(&sim_module).map_err(|_| CUresult::CUDA_ERROR_UNKNOWN)
        })
    })
}
