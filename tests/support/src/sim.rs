//! Helpers for the simulator tests: NVRTC compilation of test kernels and a simulator-backed
//! GPU backend whose driver stays reachable for loading modules and reading counters.

use ferronet::device::driver::LaunchConfig;
use ferronet::gpu::GpuBackend;
use ferronet::sim::{SimDriver, SimOptions};
use std::sync::Arc;

/// Compiles CUDA source to PTX for compute_75 with the function build.rs uses for kernels/*.cu.
/// NVRTC is required: these tests exist to run NVRTC's output.
pub fn compile(name: &str, src: &str) -> String {
    compile_for(name, src, ferronet::device::nvrtc::BASE_COMPUTE_CAPABILITY)
}

/// Compiles CUDA source to PTX for compute capability `cc`, e.g. (8, 0) for what sm_80 adds.
pub fn compile_for(name: &str, src: &str, cc: (i32, i32)) -> String {
    ferronet::device::nvrtc::compile_ptx(name, src, cc).unwrap_or_else(|e| panic!("{e}"))
}

/// A simulator with `options`, the module `name` loaded from CUDA source, and a backend over it.
pub fn sim_with(options: SimOptions, name: &str, cuda_src: &str) -> (Arc<SimDriver>, GpuBackend) {
    let driver = Arc::new(SimDriver::new(options));
    driver.load_ptx(name, &compile(name, cuda_src)).unwrap_or_else(|e| panic!("{e}"));
    let backend = GpuBackend::new(driver.clone());
    (driver, backend)
}

/// A quiet sanitizing simulator (printf kept, not echoed) with module `name` compiled for
/// compute capability `cc`, and a backend over it.
pub fn sim_for_cc(options: SimOptions, name: &str, cuda_src: &str, cc: (i32, i32)) -> (Arc<SimDriver>, GpuBackend) {
    quiet_sim_with_ptx(options, name, &compile_for(name, cuda_src, cc))
}

/// A quiet sanitizing simulator (printf kept, not echoed) with module `name` loaded from `ptx`
/// (compiled once for several simulators), and a backend over it.
pub fn quiet_sim_with_ptx(options: SimOptions, name: &str, ptx: &str) -> (Arc<SimDriver>, GpuBackend) {
    let driver = Arc::new(SimDriver::new(SimOptions { echo_printf: false, ..options }));
    driver.load_ptx(name, ptx).unwrap_or_else(|e| panic!("{e}"));
    let backend = GpuBackend::new(driver.clone());
    (driver, backend)
}

/// One block of `threads` threads along x, no dynamic shared memory.
pub fn one_block(threads: u32) -> LaunchConfig {
    LaunchConfig { grid: (1, 1, 1), block: (threads, 1, 1), shared_mem_bytes: 0 }
}

/// The default (sanitizing) simulator with module `name`.
pub fn sim(name: &str, cuda_src: &str) -> (Arc<SimDriver>, GpuBackend) {
    sim_with(SimOptions::default(), name, cuda_src)
}

/// Deterministic test data in [-1, 1).
pub fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = ferronet::rng::Rng::new(seed);
    (0..n).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect()
}

/// Row-major C = A B in f64.
pub fn matmul_ref(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            let av = a[i * k + p] as f64;
            for j in 0..n {
                c[i * n + j] += av * b[p * n + j] as f64;
            }
        }
    }
    c
}
