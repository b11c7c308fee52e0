//! Grid-wide synchronisation (cooperative groups' `this_grid().sync()`, compiled by NVRTC with
//! the CCCL headers): a cooperative launch runs every block co-resident, so blocks spinning on
//! the grid barrier's counter wait for each other, whatever the (seeded) block order; a plain
//! launch of such a kernel traps as on a GPU, and a grid larger than the device holds at once is
//! refused. The interleaving of the blocks is fixed by the block-order seed, and blocks that can
//! only wait for each other forever are reported.

use ferronet::device::driver::LaunchConfig;
use ferronet::gpu::GpuBackend;
use ferronet::sim::{BlockOrder, SimDriver, SimOptions};
use ferronet_test_support::assert_mentions;
use ferronet_test_support::sim::{compile_for, data, quiet_sim_with_ptx};
use std::sync::{Arc, OnceLock};

const GRID_SYNC: &str = include_str!("sim_kernels/grid_sync.cu");

/// A simulator with the grid-sync kernels, compiled once (the CCCL headers take NVRTC seconds).
fn grid_sync_sim(options: SimOptions) -> (Arc<SimDriver>, GpuBackend) {
    static PTX: OnceLock<String> = OnceLock::new();
    quiet_sim_with_ptx(options, "grid_sync", PTX.get_or_init(|| compile_for("grid_sync", GRID_SYNC, (7, 5))))
}

fn grid(blocks: u32, threads: u32) -> LaunchConfig {
    LaunchConfig { grid: (blocks, 1, 1), block: (threads, 1, 1), shared_mem_bytes: 0 }
}

#[test]
fn a_cooperative_launch_syncs_the_whole_grid_in_any_block_order() {
    let x = data(512, 5);
    let want: Vec<f32> = (0..512).map(|i| 2.0 * x[i] + 2.0 * x[(i + 1) % 512]).collect();
    for order in [BlockOrder::Linear, BlockOrder::Shuffled(1), BlockOrder::Shuffled(2)] {
        let (driver, gpu) = grid_sync_sim(SimOptions { block_order: order, ..SimOptions::default() });
        let dx = gpu.upload_slice(&x).unwrap();
        let (a, out) = (gpu.alloc::<f32>(512).unwrap(), gpu.alloc::<f32>(512).unwrap());
        driver.launch_cooperative("grid_sync", "grid_neighbours", &grid(8, 64), &[dx.arg(), a.arg(), out.arg()]).unwrap_or_else(|e| panic!("{order:?}: {e}"));
        assert_eq!(gpu.download_slice(&out).unwrap(), want, "{order:?}");
    }
}

#[test]
fn the_interleaving_of_a_cooperative_launch_is_fixed_by_its_seed() {
    let arrivals = |seed: u64| {
        let (driver, gpu) = grid_sync_sim(SimOptions { block_order: BlockOrder::Shuffled(seed), ..SimOptions::default() });
        let (tickets, order) = (gpu.alloc_zeroed::<u32>(1).unwrap(), gpu.alloc::<u32>(16).unwrap());
        driver.launch_cooperative("grid_sync", "arrival_order", &grid(16, 64), &[tickets.arg(), order.arg()]).unwrap();
        gpu.download_slice(&order).unwrap()
    };
    let first = arrivals(7);
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(sorted, (0..16).collect::<Vec<u32>>(), "every block arrived once");
    assert_eq!(arrivals(7), first, "the same seed, the same interleaving");
    assert_ne!(arrivals(8), first, "another seed, another interleaving");
}

#[test]
fn grid_sync_needs_a_cooperative_launch_that_fits_the_device() {
    let (driver, gpu) = grid_sync_sim(SimOptions::default());
    let dx = gpu.upload_slice(&data(512, 5)).unwrap();
    let (a, out) = (gpu.alloc::<f32>(512).unwrap(), gpu.alloc::<f32>(512).unwrap());
    let args = [dx.arg(), a.arg(), out.arg()];
    // Without a cooperative launch there is no grid workspace: cooperative groups traps.
    let err = gpu.launch("grid_sync", "grid_neighbours", grid(8, 64), &args).unwrap_err();
    assert_mentions(&err, &["kernel fault in grid_sync::grid_neighbours: trap"]);
    // 64-thread blocks: 16 per SM (the RTX 3090's block limit) on 82 SMs.
    let most = driver.max_cooperative_blocks("grid_sync", "grid_neighbours", &grid(1, 64)).unwrap();
    assert_eq!(most, 82 * 16);
    let err = driver.launch_cooperative("grid_sync", "grid_neighbours", &grid(most as u32 + 1, 64), &args).unwrap_err();
    assert_mentions(&err, &["cooperative launch too large", "grid_sync::grid_neighbours", "1313 blocks", "at most 1312"]);
}

#[test]
fn a_block_that_skips_the_grid_sync_is_reported_as_a_deadlock() {
    let (driver, gpu) = grid_sync_sim(SimOptions::default());
    let out = gpu.alloc::<f32>(256).unwrap();
    let err = driver.launch_cooperative("grid_sync", "one_block_skips_the_sync", &grid(4, 64), &[out.arg()]).unwrap_err();
    assert_mentions(&err, &["kernel fault in grid_sync::one_block_skips_the_sync: grid deadlock", "every block must reach each grid-wide sync"]);
}
