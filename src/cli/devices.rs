//! `ferronet devices`: the CPU, each CUDA device and the PTX simulator.

use crate::cpu::CpuBackend;
use crate::error::Result;
use crate::gpu::cuda_driver::list_devices;
use crate::device::DeviceRequest;
use crate::select;
use clap::Args;

#[derive(Args, Debug, Clone)]
pub struct DevicesArgs {}

pub fn run(_args: DevicesArgs) -> Result<i32> {
    println!("cpu       {} threads (rayon; f32 and f64)", CpuBackend::new().threads());
    match list_devices() {
        Ok(Some(devices)) if devices.is_empty() => println!("cuda      driver present but no CUDA device found"),
        Ok(Some(devices)) => {
            for d in devices {
                let (major, minor) = d.compute_capability;
                println!(
                    "cuda:{:<4} {} (compute capability {major}.{minor}, {:.1} GiB)",
                    d.ordinal,
                    d.name,
                    d.total_mem_bytes as f64 / (1u64 << 30) as f64
                );
            }
        }
        Ok(None) => println!("cuda      no CUDA driver is present (libcuda.so not found)"),
        Err(e) => println!("cuda      the CUDA driver is unusable: {e}"),
    }
    match select::open(DeviceRequest::Sim) {
        Ok(_) => println!("sim       PTX simulator (runs the CUDA kernels on the CPU; slow, for checks)"),
        Err(e) => println!("sim       unavailable: {e}"),
    }
    Ok(0)
}
