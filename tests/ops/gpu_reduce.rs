//! GPU sum, mean and sum of squares against the f64 CPU reference, on lengths that take the
//! one-block path and the two-pass path, with and without a tail of fewer than 4 values; the
//! first pass's 16-byte loads counted by the simulator.

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, upload_pair};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::gpu::GpuBackend;
use ferronet::ops::ReduceOps;
use ferronet::sim::{SimDriver, SimOptions};
use std::sync::Arc;

#[test]
fn reductions_match_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    // 2048 values fill exactly one first-pass block; 5000 needs three partials.
    for (len, seed) in [(1, 1), (33, 2), (2048, 3), (5000, 4), (5003, 5)] {
        let x = random_f32(len, seed, -2.0, 3.0);
        let (gx, cx) = upload_pair(&gpu, &cpu, &x);
        let tol = 1e-6 * len as f64;
        let got = gpu.download(&gpu.sum(&gx).unwrap()).unwrap();
        assert_close(&format!("sum of {len}"), &got, &cpu.sum(&cx).unwrap(), tol, 1e-5);
        let got = gpu.download(&gpu.mean(&gx).unwrap()).unwrap();
        assert_close(&format!("mean of {len}"), &got, &cpu.mean(&cx).unwrap(), 1e-6, 1e-5);
        let got = gpu.download(&gpu.sum_squares(&gx).unwrap()).unwrap();
        assert_close(&format!("sum_squares of {len}"), &got, &cpu.sum_squares(&cx).unwrap(), tol, 1e-5);
    }
}

#[test]
fn empty_input_sums_to_zero_and_has_no_mean() {
    let gpu = gpu();
    let empty = gpu.upload(&[]).unwrap();
    assert_eq!(gpu.download(&gpu.sum(&empty).unwrap()).unwrap(), vec![0.0]);
    assert_eq!(gpu.mean(&empty).err().unwrap().to_string(), "shape error: mean of an empty buffer is undefined");
}

/// The first pass over an aligned buffer reads 4 values per lane per access: a 2-pass sum of
/// 65536 values makes 65536 / (32 * 4) first-pass loads; the second pass reads its partials one
/// at a time.
#[test]
fn the_first_pass_loads_4_values_per_lane() {
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let gpu = GpuBackend::new(driver.clone());
    let n = 65536;
    let x = gpu.upload(&random_f32(n, 6, -1.0, 1.0)).unwrap();
    driver.take_launch_stats();
    gpu.sum_squares(&x).unwrap();
    let stats = driver.take_launch_stats();
    let passes: Vec<_> = stats.iter().filter(|s| s.kernel == "reduce::reduce_sum").collect();
    assert_eq!(passes.len(), 2);
    assert_eq!(passes[0].global_load_bytes, 4 * n as u64);
    assert_eq!(passes[0].global_accesses - passes[0].global_store_bytes / 4, (n / (32 * 4)) as u64, "one load per 4 values per lane");
}
