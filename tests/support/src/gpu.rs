//! The GPU device under test and the inputs the op-vs-CPU tests feed it.

use ferronet::gpu::GpuBackend;

/// A `--device` value (cuda, cuda:N, sim) that makes [`gpu`] open that device instead of choosing
/// one; set by [`run_own_tests`](crate::emulated_driver::run_own_tests) to run the GPU tests
/// through cudarc and the emulated driver.
pub const GPU_DEVICE_ENV: &str = "FERRONET_TEST_GPU";

/// The device [`GPU_DEVICE_ENV`] names, else a real GPU when present, else the PTX simulator.
pub fn gpu() -> GpuBackend {
    let opened = match std::env::var(GPU_DEVICE_ENV) {
        Ok(request) => open_named(&request),
        Err(_) => ferronet::select::test_backend(),
    };
    opened.unwrap_or_else(|e| panic!("no GPU device for tests: {e}"))
}

fn open_named(request: &str) -> ferronet::Result<GpuBackend> {
    use ferronet::select::{open, SelectedDevice};
    match open(request.parse()?)? {
        SelectedDevice::Gpu(gpu) => Ok(gpu),
        SelectedDevice::Cpu(_) => Err(ferronet::Error::config(format!("{GPU_DEVICE_ENV}={request} is not a GPU device"))),
    }
}

/// `len` f32 values uniform in [lo, hi), fixed by `seed`.
pub fn random_f32(len: usize, seed: u64, lo: f64, hi: f64) -> Vec<f32> {
    let mut rng = ferronet::rng::Rng::new(seed);
    (0..len).map(|_| rng.uniform_range(lo, hi) as f32).collect()
}

/// f32 values widened exactly to f64, so the CPU reference sees the very inputs the GPU saw.
pub fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// The same f32 values on the GPU and, widened exactly to f64, on the CPU reference.
pub fn upload_pair(
    gpu: &GpuBackend,
    cpu: &ferronet::cpu::CpuBackend,
    host: &[f32],
) -> (ferronet::gpu::GpuBuf<f32>, ferronet::cpu::CpuBuf<f64>) {
    use ferronet::device::Device;
    (gpu.upload(host).unwrap(), cpu.upload(&widen(host)).unwrap())
}

/// `count` random [N, C, HW] shapes, fixed by `seed`: N in 1..=6, C in 1..=9, HW in 1..=80, so
/// sizes are mostly odd and rarely multiples of a warp.
pub fn random_nchw(count: usize, seed: u64) -> Vec<(usize, usize, usize)> {
    let mut rng = ferronet::rng::Rng::new(seed);
    let mut dim = |max: u64| 1 + rng.below(max) as usize;
    (0..count).map(|_| (dim(6), dim(9), dim(80))).collect()
}
