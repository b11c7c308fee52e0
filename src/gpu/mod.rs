//! The GPU backend: launch geometry and argument marshalling for every op, written once over the
//! [`driver::Driver`] trait so a real GPU (cudarc) and the PTX simulator run the same code.

pub mod backend;
pub mod nvrtc_locate;
pub mod driver;
pub mod grid;
pub mod modules;

pub use backend::{GpuBackend, GpuBuf};

use crate::error::{Error, Result};
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

/// A real CUDA device, if this machine has one (filled in by the CUDA driver work).
fn cuda_test_driver() -> Result<Option<Arc<dyn Driver>>> {
    Ok(None)
}

/// The PTX simulator with its sanitizer on (filled in by the simulator work).
fn sim_test_driver() -> Result<Arc<dyn Driver>> {
    Err(Error::device("the PTX simulator is not built yet"))
}
