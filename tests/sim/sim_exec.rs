//! End-to-end runs of NVRTC-compiled kernels on the PTX simulator: results against host
//! references, warp primitives, atomics, block-order independence and performance counters.

use ferronet_test_support::sim::{data, matmul_ref, sim, sim_with};

use ferronet::device::Device;
use ferronet::device::driver::{KernelArg, LaunchConfig};
use ferronet::sim::{BlockOrder, SimOptions};
use ferronet::tolerance::assert_close;

const SGEMM: &str = include_str!("sim_kernels/sgemm.cu");
const MISC: &str = include_str!("sim_kernels/misc.cu");

#[test]
fn embedded_kernel_runs_through_the_test_backend() {
    let gpu = ferronet::select::test_backend().expect("simulator backend");
    let n = 300;
    let (a, b) = (data(n, 11), data(n, 12));
    let (da, db) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
    let out = gpu.alloc::<f32>(n).unwrap();
    // f32 operands (format 0), 4 values per thread in one access each (vec 1: fresh buffers are
    // 16-byte aligned).
    let f32_format = KernelArg::I32(0);
    let args = [da.arg(), f32_format, db.arg(), f32_format, out.arg(), f32_format, KernelArg::I32(n as i32), KernelArg::I32(1)];
    gpu.launch("elementwise", "add", LaunchConfig::linear(n.div_ceil(4), 128), &args).unwrap();
    let want: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x + y).collect();
    assert_eq!(gpu.download(&out).unwrap(), want);
    assert_eq!(gpu.take_kernel_log(), vec!["elementwise::add".to_string()]);
}

#[test]
fn tiled_sgemm_matches_the_reference_on_ragged_shapes() {
    let (_, gpu) = sim("sgemm", SGEMM);
    let (m, n, k) = (37, 45, 29);
    let (a, b) = (data(m * k, 1), data(k * n, 2));
    let (da, db) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
    let dc = gpu.alloc::<f32>(m * n).unwrap();
    let cfg = LaunchConfig { grid: (n.div_ceil(16) as u32, m.div_ceil(16) as u32, 1), block: (16, 16, 1), shared_mem_bytes: 0 };
    let args = [da.arg(), db.arg(), dc.arg(), KernelArg::I32(m as i32), KernelArg::I32(n as i32), KernelArg::I32(k as i32)];
    gpu.launch("sgemm", "sgemm_tiled", cfg, &args).unwrap();
    assert_close("C", &gpu.download(&dc).unwrap(), &matmul_ref(&a, &b, m, n, k), 1e-5, 1e-5);
}

#[test]
fn register_blocked_sgemm_with_float4_matches_the_reference() {
    let (driver, gpu) = sim("sgemm", SGEMM);
    let (m, n, k) = (64, 128, 32);
    let (a, b) = (data(m * k, 3), data(k * n, 4));
    let (da, db) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
    let dc = gpu.alloc::<f32>(m * n).unwrap();
    let cfg = LaunchConfig { grid: ((n / 64) as u32, (m / 64) as u32, 1), block: (256, 1, 1), shared_mem_bytes: 0 };
    let args = [da.arg(), db.arg(), dc.arg(), KernelArg::I32(m as i32), KernelArg::I32(n as i32), KernelArg::I32(k as i32)];
    gpu.launch("sgemm", "sgemm_reg4x4", cfg, &args).unwrap();
    assert_close("C", &gpu.download(&dc).unwrap(), &matmul_ref(&a, &b, m, n, k), 1e-5, 1e-5);
    let stats = driver.take_launch_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].flops, 2 * (m * n * k) as u64, "one fma (2 flops) per multiply-add");
    assert_eq!(stats[0].lane_utilisation(), 1.0);
}

#[test]
fn shuffles_ballots_atomics_and_dynamic_shared_memory() {
    let (_, gpu) = sim("misc", MISC);
    let n = 1000;
    let x = data(n, 5);
    let dx = gpu.upload(&x).unwrap();
    let blocks = 3;
    let out = gpu.zeros(1 + blocks).unwrap();
    let cfg = LaunchConfig { grid: (blocks as u32, 1, 1), block: (128, 1, 1), shared_mem_bytes: 4 * 4 };
    gpu.launch("misc", "exp_sum", cfg, &[dx.arg(), out.arg(), KernelArg::I32(n as i32)]).unwrap();
    let got = gpu.download(&out).unwrap();
    let want: f64 = x.iter().map(|&v| (v as f64).exp()).sum();
    assert!((got[0] as f64 - want).abs() < 1e-4 * want, "sum {} vs {want}", got[0]);
    for b in 0..blocks {
        assert_eq!(got[1 + b], 4.0, "every warp's partial sum of exp() is positive");
    }
}

#[test]
fn shuffle_segments_broadcasts_and_votes() {
    let (_, gpu) = sim("misc", MISC);
    let x: Vec<u32> = (0..32u32).map(|i| i * 3 % 32).collect();
    let dx = gpu.upload_idx(&x).unwrap();
    let (up8, bcast, votes) = (gpu.alloc::<u32>(32).unwrap(), gpu.alloc::<u32>(32).unwrap(), gpu.alloc::<u32>(32).unwrap());
    gpu.launch("misc", "warp_ops", LaunchConfig::linear(32, 32), &[dx.arg(), up8.arg(), bcast.arg(), votes.arg()]).unwrap();
    let up8 = gpu.download_idx(&up8).unwrap();
    for l in 0..32 {
        // Within each segment of 8 the first lane keeps its own value.
        let want = if l % 8 == 0 { x[l] } else { x[l - 1] };
        assert_eq!(up8[l], want, "lane {l}");
    }
    assert_eq!(gpu.download_idx(&bcast).unwrap(), vec![x[5]; 32]);
    assert_eq!(gpu.download_idx(&votes).unwrap(), vec![3; 32], "any(x > 30) and all(x >= 0)");
}

#[test]
fn integer_and_double_atomics_from_many_blocks() {
    let (_, gpu) = sim("misc", MISC);
    let n = 300usize;
    let x: Vec<u32> = (0..n as u32).map(|i| (i * 37) % 1000).collect();
    let dx = gpu.upload_idx(&x).unwrap();
    let counter = gpu.alloc_zeroed::<u32>(1).unwrap();
    let maxv = gpu.alloc_zeroed::<u32>(1).unwrap();
    let last = gpu.alloc_zeroed::<u32>(1).unwrap();
    let dsum = gpu.alloc_zeroed::<f64>(1).unwrap();
    let args = [counter.arg(), maxv.arg(), last.arg(), dsum.arg(), dx.arg(), KernelArg::I32(n as i32)];
    gpu.launch("misc", "atomics", LaunchConfig::linear(n, 64), &args).unwrap();
    assert_eq!(gpu.download_idx(&counter).unwrap(), vec![n as u32]);
    assert_eq!(gpu.download_idx(&maxv).unwrap(), vec![*x.iter().max().unwrap()]);
    assert_eq!(gpu.download_idx(&last).unwrap(), vec![7]);
    let sum = gpu.download_slice(&dsum).unwrap()[0];
    assert_eq!(sum, x.iter().map(|&v| v as f64 * 0.5).sum::<f64>());
}

#[test]
fn local_arrays_and_half_conversion() {
    let (_, gpu) = sim("misc", MISC);
    let n = 70;
    let x = data(n, 6);
    let dx = gpu.upload(&x).unwrap();
    let y = gpu.alloc::<u16>(n).unwrap();
    gpu.launch("misc", "local_half", LaunchConfig::linear(n, 32), &[dx.arg(), y.arg(), KernelArg::I32(n as i32)]).unwrap();
    let got = gpu.download_slice(&y).unwrap();
    for i in 0..n {
        let want = half::f16::from_f32(x[(i + i % 8) % n] * 2.0);
        assert_eq!(got[i], want.to_bits(), "element {i}");
    }
}

#[test]
fn block_order_does_not_change_a_race_free_kernel() {
    let n = 1000;
    let x = data(n, 7);
    let run = |order: BlockOrder, threads: usize| {
        let (_, gpu) = sim_with(SimOptions { block_order: order, threads, ..SimOptions::default() }, "misc", MISC);
        let dx = gpu.upload(&x).unwrap();
        let y = gpu.alloc::<f32>(n).unwrap();
        let blocks = n.div_ceil(128);
        let sums = gpu.zeros(blocks).unwrap();
        let args = [dx.arg(), y.arg(), sums.arg(), KernelArg::I32(n as i32)];
        gpu.launch("misc", "reverse_blocks", LaunchConfig::linear(n, 128), &args).unwrap();
        (gpu.download(&y).unwrap(), gpu.download(&sums).unwrap())
    };
    let a = run(BlockOrder::Shuffled(1), 1);
    let b = run(BlockOrder::Shuffled(2), 0);
    let c = run(BlockOrder::Linear, 1);
    assert_eq!(a, b);
    assert_eq!(a, c);
    // Spot-check the reversal itself: full blocks map element i to the mirror in its block.
    assert_eq!(a.0[127], x[0]);
    assert_eq!(a.0[0], x[127]);
}

#[test]
fn counters_measure_coalescing_and_bank_conflicts() {
    let (driver, gpu) = sim("misc", MISC);
    let n = 256;
    let x = gpu.upload(&data(n * 8, 8)).unwrap();
    let y = gpu.alloc::<f32>(n).unwrap();
    for stride in [1, 8] {
        gpu.launch("misc", "strided_copy", LaunchConfig::linear(n, 128), &[x.arg(), y.arg(), KernelArg::I32(stride), KernelArg::I32(n as i32)])
            .unwrap();
    }
    let s = driver.take_launch_stats();
    // Unit stride: 4 sectors per 128-byte warp access, loads and stores alike.
    assert_eq!(s[0].coalescing_efficiency(), 1.0);
    // Stride 8 floats: every lane's load needs its own sector (4 of 32 bytes used); stores stay full.
    let loads = (n / 32) as u64;
    assert_eq!(s[1].global_sectors, loads * 32 + loads * 4);
    assert_eq!(s[1].global_load_bytes, 4 * n as u64);

    let tile = gpu.upload(&data(32 * 32, 9)).unwrap();
    let out = gpu.alloc::<f32>(32).unwrap();
    for pad in [0, 1] {
        gpu.launch("misc", "column_read", LaunchConfig::linear(32, 32), &[tile.arg(), out.arg(), KernelArg::I32(pad)]).unwrap();
    }
    let s = driver.take_launch_stats();
    assert_eq!(s[0].bank_conflicts, 32 * 31, "32 column reads, each 32-way conflicted");
    assert_eq!(s[1].bank_conflicts, 0, "padding removes the conflicts");
}

#[test]
fn generic_addresses_reach_shared_and_global_memory() {
    let (_, gpu) = sim("misc", MISC);
    let out = gpu.alloc::<f32>(65).unwrap();
    gpu.launch("misc", "generic_store", LaunchConfig::linear(64, 64), &[out.arg()]).unwrap();
    let got = gpu.download(&out).unwrap();
    for (t, &v) in got.iter().take(64).enumerate() {
        let want = if t % 2 == 1 { t as f32 * 10.0 } else { t as f32 };
        assert_eq!(v, want, "thread {t}");
    }
    assert_eq!(got[64], 64.0, "shared-memory atomic counter");
}

#[test]
fn threads_that_exited_do_not_block_a_barrier() {
    let (_, gpu) = sim("misc", MISC);
    let n = 100;
    let x = data(n, 13);
    let dx = gpu.upload(&x).unwrap();
    let y = gpu.alloc::<f32>(n).unwrap();
    gpu.launch("misc", "early_exit_then_barrier", LaunchConfig::linear(128, 128), &[dx.arg(), y.arg(), KernelArg::I32(n as i32)]).unwrap();
    let want: Vec<f32> = x.iter().rev().copied().collect();
    assert_eq!(gpu.download(&y).unwrap(), want);
}

#[test]
fn constant_tables_and_device_variables_persist_across_launches() {
    let (_, gpu) = sim("misc", MISC);
    let n = 70;
    let idx: Vec<u32> = (0..n as u32).map(|i| i * 7).collect();
    let didx = gpu.upload_idx(&idx).unwrap();
    let out = gpu.alloc::<f32>(n).unwrap();
    let count = gpu.alloc::<u32>(1).unwrap();
    for round in 1..=2u32 {
        gpu.launch("misc", "table_lookup", LaunchConfig::linear(n, 32), &[didx.arg(), out.arg(), KernelArg::I32(n as i32)]).unwrap();
        gpu.launch("misc", "read_count", LaunchConfig::linear(1, 1), &[count.arg()]).unwrap();
        assert_eq!(gpu.download_idx(&count).unwrap(), vec![round * n as u32], "the counter starts at zero and accumulates");
    }
    let table = [1.5f32, -2.0, 0.25, 8.0];
    let want: Vec<f32> = idx.iter().map(|&i| table[(i & 3) as usize]).collect();
    assert_eq!(gpu.download(&out).unwrap(), want);
}
