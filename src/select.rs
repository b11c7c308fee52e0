//! Opening the backend a `--device` request names: the CPU, or the GPU backend over a CUDA device
//! or the PTX simulator. It sits above `cpu`, `gpu` and `sim` (the only module that knows all
//! three) and below the commands that compute.

use crate::cpu::CpuBackend;
use crate::device::driver::Driver;
use crate::device::DeviceRequest;
use crate::error::Result;
use crate::gpu::cuda_driver::{self, CudaDriver};
use crate::gpu::GpuBackend;
use crate::sim::{SimDriver, SimOptions};
use std::sync::Arc;

/// The backend a command runs on: the CPU (f32) or a GPU backend over CUDA or the simulator.
pub enum SelectedDevice {
    Cpu(CpuBackend),
    Gpu(GpuBackend),
}

/// Opens the requested device. `auto` falls back to the CPU with a one-line notice on stderr;
/// an explicit `cuda` without a driver or device is an error.
pub fn open(request: DeviceRequest) -> Result<SelectedDevice> {
    match request {
        DeviceRequest::Cpu => Ok(SelectedDevice::Cpu(CpuBackend::new())),
        DeviceRequest::Cuda(n) => open_cuda(n).map(SelectedDevice::Gpu),
        DeviceRequest::Sim => Ok(SelectedDevice::Gpu(GpuBackend::new(sim_driver()?))),
        DeviceRequest::Auto => match cuda_driver::list_devices() {
            Ok(Some(devices)) if !devices.is_empty() => open_cuda(0).map(SelectedDevice::Gpu),
            Ok(found) => {
                let why = if found.is_none() { "no CUDA driver is installed" } else { "no CUDA device was found" };
                eprintln!("note: {why}; running on the CPU");
                Ok(SelectedDevice::Cpu(CpuBackend::new()))
            }
            Err(e) => {
                eprintln!("note: the CUDA driver is unusable ({e}); running on the CPU");
                Ok(SelectedDevice::Cpu(CpuBackend::new()))
            }
        },
    }
}

/// The GPU device tests run on: a real CUDA device when a driver and a device exist, else the
/// PTX simulator.
pub fn test_backend() -> Result<GpuBackend> {
    match cuda_driver::list_devices()? {
        Some(devices) if !devices.is_empty() => open_cuda(0),
        _ => sim_driver().map(GpuBackend::new),
    }
}

fn open_cuda(ordinal: usize) -> Result<GpuBackend> {
    Ok(GpuBackend::new(Arc::new(CudaDriver::new(ordinal)?)))
}

/// The PTX simulator with its sanitizer on (unless FERRONET_SIM_SANITIZE=0 turns it off for speed).
fn sim_driver() -> Result<Arc<dyn Driver>> {
    Ok(Arc::new(SimDriver::new(SimOptions::from_env()?)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_opens_and_unavailable_cuda_is_a_clear_error() {
        assert!(matches!(open(DeviceRequest::Cpu).unwrap(), SelectedDevice::Cpu(_)));
        if cuda_driver::driver_library_present() {
            let err = open(DeviceRequest::Cuda(1 << 20)).err().expect("no such GPU").to_string();
            assert!(err.contains("does not exist"), "{err}");
        } else {
            let err = open(DeviceRequest::Cuda(0)).err().expect("no driver").to_string();
            assert!(err.contains("no CUDA driver") && err.contains("--device cpu"), "{err}");
            assert!(matches!(open(DeviceRequest::Auto).unwrap(), SelectedDevice::Cpu(_)));
        }
    }
}
