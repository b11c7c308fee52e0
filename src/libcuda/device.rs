//! Initialisation and device queries: cuInit, cuDriverGetVersion, cuDeviceGet*, cuDeviceTotalMem.

use crate::config::DeviceConfig;
use crate::errors::{guard, notice_once, write_out, CuResult};
use crate::state::{initialise, with_emulator};
use cudarc::driver::sys::{CUdevice_attribute as A, CUresult};
use std::ffi::{c_char, c_int, c_uint};

/// The driver version the emulation reports (12.9, the CUDA version cudarc is built against).
const DRIVER_VERSION: c_int = 12090;

#[no_mangle]
pub extern "C" fn cuInit(flags: c_uint) -> CUresult {
    guard("cuInit", || if flags != 0 { Err(CUresult::CUDA_ERROR_INVALID_VALUE) } else { initialise() })
}

#[no_mangle]
pub extern "C" fn cuDriverGetVersion(version: *mut c_int) -> CUresult {
    guard("cuDriverGetVersion", || write_out(version, DRIVER_VERSION))
}

#[no_mangle]
pub extern "C" fn cuDeviceGetCount(count: *mut c_int) -> CUresult {
    guard("cuDeviceGetCount", || with_emulator(|emu| write_out(count, emu.devices.len() as c_int)))
}

#[no_mangle]
pub extern "C" fn cuDeviceGet(device: *mut c_int, ordinal: c_int) -> CUresult {
    guard("cuDeviceGet", || with_emulator(|emu| write_out(device, emu.device_index(ordinal)? as c_int)))
}

fn with_config<R>(dev: c_int, f: impl FnOnce(&DeviceConfig) -> CuResult<R>) -> CuResult<R> {
    with_emulator(|emu| {
        let index = emu.device_index(dev)?;
        f(&emu.devices[index].config)
    })
}

#[no_mangle]
pub extern "C" fn cuDeviceGetName(name: *mut c_char, len: c_int, dev: c_int) -> CUresult {
    guard("cuDeviceGetName", || {
        with_config(dev, |config| {
            if name.is_null() || len <= 0 {
                return Err(CUresult::CUDA_ERROR_INVALID_VALUE);
            }
            // Truncated to fit with its NUL, as the real driver does.
            let bytes = config.name.as_bytes();
            let n = bytes.len().min(len as usize - 1);
            // SAFETY: the caller passed `len` writable bytes at `name`; n + 1 <= len.
            unsafe {
                std::ptr::copy_nonoverlapping(bytes.as_ptr(), name as *mut u8, n);
                *name.add(n) = 0;
            }
            Ok(())
        })
    })
}

#[no_mangle]
pub extern "C" fn cuDeviceTotalMem_v2(bytes: *mut usize, dev: c_int) -> CUresult {
    guard("cuDeviceTotalMem_v2", || with_config(dev, |config| write_out(bytes, config.memory_bytes)))
}

/// The attributes the emulation models, with the real limits of the configured architecture.
fn attribute_value(config: &DeviceConfig, dev: c_int, attribute: c_uint) -> Option<c_int> {
    let (major, minor) = config.compute_capability;
    let table = [
        (A::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, 1024),
        (A::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_X, 1024),
        (A::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Y, 1024),
        (A::CU_DEVICE_ATTRIBUTE_MAX_BLOCK_DIM_Z, 64),
        (A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X, i32::MAX),
        (A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y, 65535),
        (A::CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z, 65535),
        (A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK, 48 << 10),
        (A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, config.max_shared_optin()),
        (A::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR, config.max_shared_optin() + (1 << 10)),
        (A::CU_DEVICE_ATTRIBUTE_TOTAL_CONSTANT_MEMORY, 64 << 10),
        (A::CU_DEVICE_ATTRIBUTE_WARP_SIZE, 32),
        (A::CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_BLOCK, 64 << 10),
        (A::CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR, 64 << 10),
        (A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, config.sm_count),
        (A::CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_MULTIPROCESSOR, config.max_threads_per_sm()),
        (A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, major),
        (A::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, minor),
        (A::CU_DEVICE_ATTRIBUTE_CLOCK_RATE, 1_500_000),
        (A::CU_DEVICE_ATTRIBUTE_INTEGRATED, 0),
        (A::CU_DEVICE_ATTRIBUTE_CAN_MAP_HOST_MEMORY, 1),
        (A::CU_DEVICE_ATTRIBUTE_UNIFIED_ADDRESSING, 1),
        (A::CU_DEVICE_ATTRIBUTE_CONCURRENT_KERNELS, 1),
        (A::CU_DEVICE_ATTRIBUTE_ASYNC_ENGINE_COUNT, 2),
        (A::CU_DEVICE_ATTRIBUTE_MEMORY_POOLS_SUPPORTED, 1),
        (A::CU_DEVICE_ATTRIBUTE_ECC_ENABLED, 0),
        (A::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID, dev + 1),
        (A::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID, 0),
        (A::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID, 0),
        (A::CU_DEVICE_ATTRIBUTE_COMPUTE_MODE, 0),
        (A::CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH, 1),
    ];
    table.iter().find(|(a, _)| *a as c_uint == attribute).map(|&(_, v)| v)
}

#[no_mangle]
pub extern "C" fn cuDeviceGetAttribute(value: *mut c_int, attribute: c_uint, dev: c_int) -> CUresult {
    guard("cuDeviceGetAttribute", || {
        with_config(dev, |config| match attribute_value(config, dev, attribute) {
            Some(v) => write_out(value, v),
            None => {
                notice_once(format!("cuDeviceGetAttribute: attribute {attribute} is not modelled (CUDA_ERROR_NOT_SUPPORTED)"));
                Err(CUresult::CUDA_ERROR_NOT_SUPPORTED)
            }
        })
    })
}
