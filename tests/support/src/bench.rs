//! The kernel benchmark as the smoke tests run it.

use ferronet::bench::kernels::KernelBenchOptions;

/// The cases whose names contain `filter`, at batch 2, on no device yet (the test picks its
/// devices), one run each, no warm-up.
pub fn kernel_bench_options(filter: &str) -> KernelBenchOptions {
    KernelBenchOptions { cpu: false, sim: false, cuda: None, batch: 2, warmup: 0, cpu_reps: 1, gpu_reps: 1, filter: Some(filter.into()), seed: 1 }
}
