//! `--device auto|cpu|cuda[:N]|sim`: parsing, and opening the backend it names.

use super::cuda_driver::{self, CudaDriver};
use super::GpuBackend;
use crate::cpu::CpuBackend;
use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// What the user asked for with `--device`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    /// The first CUDA device when a driver and a device exist, else the CPU.
    Auto,
    Cpu,
    /// CUDA device N (`cuda` alone is device 0).
    Cuda(usize),
    /// The PTX simulator: the CUDA kernels interpreted on the CPU.
    Sim,
}

impl FromStr for DeviceRequest {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let unknown = || Error::config(format!("unknown device `{s}`: use auto, cpu, cuda, cuda:N (N = 0, 1, ...) or sim"));
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Cpu),
            "cuda" => Ok(DeviceRequest::Cuda(0)),
            "sim" => Ok(DeviceRequest::Sim),
            other => match other.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceRequest::Cuda).map_err(|_| unknown()),
                None => Err(unknown()),
            },
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRequest::Auto => write!(f, "auto"),
            DeviceRequest::Cpu => write!(f, "cpu"),
            DeviceRequest::Cuda(n) => write!(f, "cuda:{n}"),
            DeviceRequest::Sim => write!(f, "sim"),
        }
    }
}

/// The `--device` flag every command that computes shares.
#[derive(clap::Args, Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceArg {
    /// Compute device: auto (CUDA if present, else CPU), cpu, cuda, cuda:N or sim (the PTX simulator).
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
}

/// The backend a command runs on: the CPU (f32) or a GPU backend over CUDA or the simulator.
pub enum SelectedDevice {
    Cpu(CpuBackend),
    Gpu(GpuBackend),
}

impl SelectedDevice {
    pub fn name(&self) -> String {
        match self {
            SelectedDevice::Cpu(_) => "cpu".to_string(),
            SelectedDevice::Gpu(gpu) => gpu.driver().name(),
        }
    }
}

impl DeviceRequest {
    /// Opens the requested device. `auto` falls back to the CPU with a one-line notice on stderr;
    /// an explicit `cuda` without a driver or device is an error.
    pub fn open(self) -> Result<SelectedDevice> {
        match self {
            DeviceRequest::Cpu => Ok(SelectedDevice::Cpu(CpuBackend::new())),
            DeviceRequest::Cuda(n) => open_cuda(n),
            DeviceRequest::Sim => Ok(SelectedDevice::Gpu(GpuBackend::new(super::sim_test_driver()?))),
            DeviceRequest::Auto => match cuda_driver::list_devices() {
                Ok(Some(devices)) if !devices.is_empty() => open_cuda(0),
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
}

fn open_cuda(ordinal: usize) -> Result<SelectedDevice> {
    let driver = CudaDriver::new(ordinal)?;
    Ok(SelectedDevice::Gpu(GpuBackend::new(Arc::new(driver))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        device: DeviceArg,
    }

    #[test]
    fn parses_every_device_form() {
        assert_eq!("auto".parse::<DeviceRequest>().unwrap(), DeviceRequest::Auto);
        assert_eq!("CPU".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cpu);
        assert_eq!("cuda".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cuda(0));
        assert_eq!("cuda:3".parse::<DeviceRequest>().unwrap(), DeviceRequest::Cuda(3));
        assert_eq!("sim".parse::<DeviceRequest>().unwrap(), DeviceRequest::Sim);
        for bad in ["", "tpu", "cuda:", "cuda:-1", "cuda:x", "cpu:0"] {
            let err = bad.parse::<DeviceRequest>().unwrap_err().to_string();
            assert!(err.contains("unknown device") && err.contains("cuda:N"), "{bad}: {err}");
        }
        for d in [DeviceRequest::Auto, DeviceRequest::Cpu, DeviceRequest::Cuda(2), DeviceRequest::Sim] {
            assert_eq!(d.to_string().parse::<DeviceRequest>().unwrap(), d);
        }
    }

    #[test]
    fn the_flag_defaults_to_auto_and_rejects_unknown_devices() {
        assert_eq!(Cli::try_parse_from(["x"]).unwrap().device.device, DeviceRequest::Auto);
        assert_eq!(Cli::try_parse_from(["x", "--device", "cuda:1"]).unwrap().device.device, DeviceRequest::Cuda(1));
        let err = Cli::try_parse_from(["x", "--device", "npu"]).err().expect("npu is no device").to_string();
        assert!(err.contains("unknown device `npu`"), "{err}");
    }

    #[test]
    fn cpu_opens_and_unavailable_cuda_is_a_clear_error() {
        assert!(matches!(DeviceRequest::Cpu.open().unwrap(), SelectedDevice::Cpu(_)));
        if cuda_driver::driver_library_present() {
            let err = DeviceRequest::Cuda(1 << 20).open().err().expect("no such GPU").to_string();
            assert!(err.contains("does not exist"), "{err}");
        } else {
            let err = DeviceRequest::Cuda(0).open().err().expect("no driver").to_string();
            assert!(err.contains("no CUDA driver") && err.contains("--device cpu"), "{err}");
            assert!(matches!(DeviceRequest::Auto.open().unwrap(), SelectedDevice::Cpu(_)));
        }
    }
}
