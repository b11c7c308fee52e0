//! The GPU backend: launch geometry and argument marshalling for every op, written once over the
//! [`driver::Driver`] trait so a real GPU (cudarc) and the PTX simulator run the same code.

pub mod backend;
pub mod cuda_driver;
pub mod nvrtc_locate;
pub mod driver;
pub mod grid;
pub mod modules;
pub mod select;

pub use backend::{GpuBackend, GpuBuf};

use crate::error::Result;
use driver::Driver;
use std::sync::Arc;

/// The GPU device tests and `--device auto` checks run on: a real CUDA device when a driver and a
/// device exist, else the PTX simulator.
pub fn test_backend() -> Result<GpuBackend> {
    if let Some(driver) = cuda_test_driver()? {
        return Ok(GpuBackend::new(driver));
    }
    sim_test_driver().map(GpuBackend::new)
}

/// CUDA device 0, if this machine has a CUDA driver and at least one device.
fn cuda_test_driver() -> Result<Option<Arc<dyn Driver>>> {
    match cuda_driver::list_devices()? {
        Some(devices) if !devices.is_empty() => Ok(Some(Arc::new(cuda_driver::CudaDriver::new(0)?))),
        _ => Ok(None),
    }
}

/// The PTX simulator with its sanitizer on (unless FERRONET_SIM_SANITIZE=0 turns it off for speed).
fn sim_test_driver() -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(crate::sim::SimDriver::new(crate::sim::SimOptions::from_env()?)))
}
