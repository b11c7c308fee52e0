//! cuLaunchKernel and cuLaunchCooperativeKernel: check the configuration against the device's limits as the driver does,
//! copies each `kernelParams[i]` into the parameter buffer at the offset and size the kernel's
//! PTX `.param` list declares, and submit the launch to its stream.

use crate::errors::{guard, notice_once, CuResult};
use crate::queue::{submit, Op};
use crate::state::{with_context, Object};
use cudarc::driver::sys::CUresult;
use ferronet::device::driver::LaunchConfig;
use ferronet::sim::LaunchKind;
use std::ffi::{c_uint, c_void};

const MAX_THREADS_PER_BLOCK: u64 = 1024;
const MAX_BLOCK_DIM: [u32; 3] = [1024, 1024, 64];
const MAX_GRID_DIM: [u32; 3] = [i32::MAX as u32, 65535, 65535];
/// Dynamic shared memory a launch may ask for without the opt-in function attribute.
const MAX_DYNAMIC_SHARED: u32 = 48 << 10;

fn check_config(cfg: &LaunchConfig) -> CuResult {
    let grid = [cfg.grid.0, cfg.grid.1, cfg.grid.2];
    let block = [cfg.block.0, cfg.block.1, cfg.block.2];
    let within = |dims: [u32; 3], max: [u32; 3]| dims.iter().zip(max).all(|(&d, m)| (1..=m).contains(&d));
    let threads: u64 = block.iter().map(|&b| b as u64).product();
    if !within(grid, MAX_GRID_DIM) || !within(block, MAX_BLOCK_DIM) || threads > MAX_THREADS_PER_BLOCK || cfg.shared_mem_bytes > MAX_DYNAMIC_SHARED {
        return Err(CUresult::CUDA_ERROR_INVALID_VALUE);
    }
    Ok(())
}

/// The parameter buffer: parameter i's bytes copied from `kernel_params[i]`.
fn marshal(layout: &[(usize, usize)], kernel_params: *mut *mut c_void) -> CuResult<Vec<u8>> {
    let total = layout.iter().map(|&(off, size)| off + size).max().unwrap_or(0);
    let mut buf = vec![0u8; total];
    if layout.is_empty() {
        return Ok(buf);
    }
    if kernel_params.is_null() {
        return Err(CUresult::CUDA_ERROR_INVALID_VALUE);
    }
    for (i, &(off, size)) in layout.iter().enumerate() {
        // SAFETY: the C API requires one pointer per kernel parameter, each to a value of that
        // parameter's size.
        let arg = unsafe { *kernel_params.add(i) };
        if arg.is_null() {
            return Err(CUresult::CUDA_ERROR_INVALID_VALUE);
        }
        // SAFETY: as above.
        buf[off..off + size].copy_from_slice(unsafe { std::slice::from_raw_parts(arg as *const u8, size) });
    }
    Ok(buf)
}

#[no_mangle]
#[allow(clippy::too_many_arguments)] // the C signature
pub extern "C" fn cuLaunchKernel(
    f: *mut c_void,
    grid_x: c_uint,
    grid_y: c_uint,
    grid_z: c_uint,
    block_x: c_uint,
    block_y: c_uint,
    block_z: c_uint,
    shared_mem_bytes: c_uint,
    stream: *mut c_void,
    kernel_params: *mut *mut c_void,
    extra: *mut *mut c_void,
) -> CUresult {
    guard("cuLaunchKernel", || {
        if !extra.is_null() {
            notice_once("cuLaunchKernel: the `extra` parameter buffer is not implemented; pass kernelParams".into());
            return Err(CUresult::CUDA_ERROR_NOT_SUPPORTED);
        }
        let cfg = LaunchConfig { grid: (grid_x, grid_y, grid_z), block: (block_x, block_y, block_z), shared_mem_bytes };
        launch(f, cfg, stream, kernel_params, LaunchKind::Plain)
    })
}

/// A launch whose blocks are all resident at once, so they may wait for each other
/// (cooperative groups' grid sync); a grid the device cannot hold at once is
/// CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE, as on a GPU.
#[no_mangle]
#[allow(clippy::too_many_arguments)] // the C signature
pub extern "C" fn cuLaunchCooperativeKernel(
    f: *mut c_void,
    grid_x: c_uint,
    grid_y: c_uint,
    grid_z: c_uint,
    block_x: c_uint,
    block_y: c_uint,
    block_z: c_uint,
    shared_mem_bytes: c_uint,
    stream: *mut c_void,
    kernel_params: *mut *mut c_void,
) -> CUresult {
    guard("cuLaunchCooperativeKernel", || {
        let cfg = LaunchConfig { grid: (grid_x, grid_y, grid_z), block: (block_x, block_y, block_z), shared_mem_bytes };
        launch(f, cfg, stream, kernel_params, LaunchKind::Cooperative)
    })
}

fn launch(f: *mut c_void, cfg: LaunchConfig, stream: *mut c_void, kernel_params: *mut *mut c_void, kind: LaunchKind) -> CuResult {
    with_context(|emu, dev| {
        let (sim_module, kernel, layout) = match emu.object(f as u64, dev)? {
            Object::Function { sim_module, kernel, params, .. } => (sim_module.clone(), kernel.clone(), params.clone()),
            _ => return Err(CUresult::CUDA_ERROR_INVALID_HANDLE),
        };
        check_config(&cfg)?;
        if kind == LaunchKind::Cooperative {
            let most = emu.devices[dev].sim.max_cooperative_blocks(&sim_module, &kernel, &cfg).map_err(|_| CUresult::CUDA_ERROR_INVALID_VALUE)?;
            if cfg.grid.0 as u64 * cfg.grid.1 as u64 * cfg.grid.2 as u64 > most {
                return Err(CUresult::CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE);
            }
        }
        let params = marshal(&layout, kernel_params)?;
        submit(emu, dev, stream as u64, Op::Launch { sim_module, kernel, cfg, params, kind })
    })
}
