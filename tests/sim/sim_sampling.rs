//! Sampled runs for predictions (`SimOptions::sample_blocks`): a few blocks of each launch run,
//! spread over the grid, and the counters are scaled to the whole grid; an address read from
//! memory no block wrote is counted, not faulted on.

use std::sync::Arc;

use ferronet::device::driver::{KernelArg, LaunchConfig};
use ferronet::device::Device;
use ferronet::gpu::GpuBackend;
use ferronet::ops::gemm::{GemmTile, SplitK};
use ferronet::ops::{GemmOps, GemmSpec};
use ferronet::sim::{SimDriver, SimOptions};
use ferronet_test_support::sim::sim_with;

const GATHER: &str = include_str!("sim_kernels/gather.cu");

/// A 512 x 1024 x 64 GEMM on 64x64 tiles (128 blocks) run whole and with 4 of its blocks: the
/// same grid, and counters within 2% (the tiles are all full, so every block does the same work).
#[test]
fn sampled_counters_are_scaled_to_the_whole_grid() {
    let spec = GemmSpec::<f32>::new(false, false, 512, 1024, 64);
    let run = |sample_blocks| {
        let driver = Arc::new(SimDriver::new(SimOptions { sanitize: false, sample_blocks, ..SimOptions::default() }));
        let gpu = GpuBackend::new(driver.clone());
        let (la, lb, lc) = spec.required_lens();
        let (a, b, mut c) = (gpu.upload(&vec![0.5; la]).unwrap(), gpu.upload(&vec![0.25; lb]).unwrap(), gpu.zeros(lc).unwrap());
        driver.take_launch_stats();
        gpu.gemm_on_tile(&spec, GemmTile::Small, SplitK::Splits(1), &a, &b, &mut c).unwrap();
        let stats = driver.take_launch_stats();
        assert_eq!(stats.len(), 1, "{stats:?}");
        stats[0].clone()
    };
    let (whole, sampled) = (run(None), run(Some(4)));
    assert_eq!((sampled.kernel.as_str(), sampled.grid), (whole.kernel.as_str(), whole.grid));
    assert_eq!(whole.grid.0 * whole.grid.1, 128);
    let near = |a: u64, b: u64| (a as f64 - b as f64).abs() <= 0.02 * b as f64;
    for (what, s, w) in [
        ("flops", sampled.flops, whole.flops),
        ("warp instructions", sampled.warp_insts, whole.warp_insts),
        ("sectors", sampled.global_sectors, whole.global_sectors),
        ("shared wavefronts", sampled.shared_wavefronts, whole.shared_wavefronts),
    ] {
        assert!(near(s, w), "{what}: sampled {s}, whole {w}");
    }
}

/// Indices no block wrote (here: out of range) fault in a whole run and are counted, not made,
/// in a sampled one.
#[test]
fn a_sampled_run_counts_accesses_through_unwritten_indices_instead_of_faulting() {
    let n = 4096;
    let run = |sample_blocks| {
        let (driver, gpu) = sim_with(SimOptions { sanitize: false, sample_blocks, ..SimOptions::default() }, "gather", GATHER);
        let x = gpu.upload(&vec![1.0f32; n]).unwrap();
        let idx = gpu.upload_idx(&vec![u32::MAX / 8; n]).unwrap();
        let out = gpu.upload(&vec![7.0f32; n]).unwrap();
        let args = [x.arg(), idx.arg(), out.arg(), KernelArg::I32(n as i32)];
        let result = gpu.launch("gather", "gather", LaunchConfig::linear(n, 128), &args);
        (result, driver.take_launch_stats(), gpu.download(&out).unwrap())
    };
    let (whole, _, _) = run(None);
    assert!(whole.is_err_and(|e| e.to_string().contains("out-of-bounds global access")));
    let (sampled, stats, out) = run(Some(2));
    sampled.unwrap();
    // Two of 32 blocks ran: their loads gave 0; the counters stand for all 32.
    assert_eq!(out.iter().filter(|&&v| v == 0.0).count(), 2 * 128);
    assert_eq!(stats[0].global_load_bytes, (n * 8) as u64);
}
