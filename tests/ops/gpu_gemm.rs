//! The tiled GPU SGEMM against the f64 CPU GEMM: every transpose combination, tile edges, batches
//! with unaligned offsets (scalar loads) and aligned ones (float4 loads), alpha/beta, and beta == 0
//! never reading C, on both tiles; split-K the same way, its determinism, and when each tile and
//! a split are chosen.

use std::sync::Arc;

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, widen};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::gpu::GpuBackend;
use ferronet::ops::gemm::{GemmTile, SplitK};
use ferronet::ops::{GemmOps, GemmSpec};
use ferronet::sim::{BlockOrder, SimDriver, SimOptions};

/// Runs `spec` on both devices from the same random operands and compares every element of C,
/// including one spare element past its end that neither may touch. With `nan_c`, C starts as NaN
/// (and the reference from zeros): a spec with beta == 0 that covers C must overwrite it all.
fn check(spec: GemmSpec<f32>, nan_c: bool, seed: u64) {
    check_split(spec, SplitK::Auto, nan_c, seed);
}

/// [`check`] with K partitioned as `split` says; returns the GPU's C.
fn check_split(spec: GemmSpec<f32>, split: SplitK, nan_c: bool, seed: u64) -> Vec<f32> {
    check_on(spec, None, split, nan_c, seed)
}

/// [`check_split`] on `tile`, or on the tile the GPU picks.
fn check_on(spec: GemmSpec<f32>, tile: Option<GemmTile>, split: SplitK, nan_c: bool, seed: u64) -> Vec<f32> {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    let (la, lb, lc) = spec.required_lens();
    let a = random_f32(la + 1, seed, -1.0, 1.0);
    let b = random_f32(lb + 1, seed + 1, -1.0, 1.0);
    let c = if nan_c { vec![f32::NAN; lc + 1] } else { random_f32(lc + 1, seed + 2, -1.0, 1.0) };
    let mut gc = gpu.upload(&c).unwrap();
    let (ga, gb) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
    match tile {
        Some(tile) => gpu.gemm_on_tile(&spec, tile, split, &ga, &gb, &mut gc).unwrap(),
        None => gpu.gemm_split(&spec, split, &ga, &gb, &mut gc).unwrap(),
    }
    let got = gpu.download(&gc).unwrap();

    let spec64 = GemmSpec::<f64> {
        trans_a: spec.trans_a,
        trans_b: spec.trans_b,
        m: spec.m,
        n: spec.n,
        k: spec.k,
        alpha: spec.alpha as f64,
        beta: spec.beta as f64,
        batch: spec.batch,
        stride_a: spec.stride_a,
        stride_b: spec.stride_b,
        stride_c: spec.stride_c,
        offset_a: spec.offset_a,
        offset_b: spec.offset_b,
        offset_c: spec.offset_c,
    };
    let c_ref = if nan_c { vec![0.0; lc + 1] } else { widen(&c) };
    let mut cc = cpu.upload(&c_ref).unwrap();
    cpu.gemm(&spec64, &cpu.upload(&widen(&a)).unwrap(), &cpu.upload(&widen(&b)).unwrap(), &mut cc).unwrap();
    let want = cpu.download(&cc).unwrap();
    assert_close(&format!("{spec:?}"), &got[..lc], &want[..lc], 1e-4, 1e-4);
    assert!(got[lc].to_bits() == c[lc].to_bits(), "{spec:?}: the element past C changed");
    got
}

fn spec(trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize) -> GemmSpec<f32> {
    GemmSpec::new(trans_a, trans_b, m, n, k)
}

#[test]
fn every_transpose_across_tile_edges() {
    for (i, (ta, tb)) in [(false, false), (false, true), (true, false), (true, true)].into_iter().enumerate() {
        // 65 x 66 spans 2 x 2 block tiles with one-row/-column edges; k = 17 spans two k-slices.
        check(spec(ta, tb, 65, 66, 17), false, 10 + i as u64);
        // Tiny and odd: nothing aligned, everything an edge.
        check(spec(ta, tb, 3, 5, 7), false, 20 + i as u64);
    }
}

#[test]
fn the_larger_tiles_match_the_cpu_for_every_transpose_edge_batch_and_split() {
    for tile in [GemmTile::Wide, GemmTile::Large] {
        larger_tile_cases(tile);
    }
}

fn larger_tile_cases(tile: GemmTile) {
    let large = |s, split, nan_c, seed| drop(check_on(s, Some(tile), split, nan_c, seed));
    for (i, (ta, tb)) in [(false, false), (false, true), (true, false), (true, true)].into_iter().enumerate() {
        let i = i as u64;
        // 129 x 130 spans 2 x 2 large tiles (3 x 2 wide ones) with one-row/-column edges; k = 17
        // two k-slices.
        large(spec(ta, tb, 129, 130, 17), SplitK::Splits(1), false, 200 + i);
        large(spec(ta, tb, 3, 5, 7), SplitK::Splits(1), true, 210 + i);
        // Batched, unaligned (scalar loads), alpha and beta; then aligned (float4 loads).
        let mut s = spec(ta, tb, 70, 9, 33);
        s.batch = 2;
        (s.stride_a, s.stride_b, s.stride_c) = (70 * 33 + 1, 33 * 9 + 3, 70 * 9 + 2);
        (s.offset_a, s.offset_b, s.offset_c) = (1, 2, 3);
        (s.alpha, s.beta) = (0.5, 2.0);
        large(s, SplitK::Splits(1), false, 220 + i);
        let mut s = spec(ta, tb, 132, 136, 40);
        s.batch = 2;
        (s.offset_a, s.offset_b, s.offset_c) = (4, 8, 12);
        (s.alpha, s.beta) = (-1.5, 1.0);
        large(s, SplitK::Splits(1), false, 230 + i);
        // Split in 3 slices, the last shorter; aligned and with C (NaN) never read.
        let mut s = spec(ta, tb, 130, 68, 90);
        s.batch = 2;
        s.stride_a = 0;
        (s.offset_a, s.offset_b) = (4, 8);
        large(s, SplitK::Splits(3), true, 240 + i);
    }
}

#[test]
fn batched_with_offsets_alpha_and_beta() {
    for (i, (ta, tb)) in [(false, false), (false, true), (true, false), (true, true)].into_iter().enumerate() {
        // Unaligned offsets and strides: the scalar load path.
        let mut s = spec(ta, tb, 5, 7, 9);
        s.batch = 3;
        (s.stride_a, s.stride_b, s.stride_c) = (5 * 9 + 1, 9 * 7 + 3, 5 * 7 + 2);
        (s.offset_a, s.offset_b, s.offset_c) = (1, 2, 3);
        (s.alpha, s.beta) = (0.5, 2.0);
        check(s, false, 30 + i as u64);
        // Aligned: every row and matrix starts on 16 bytes, so float4 loads and stores apply.
        let mut s = spec(ta, tb, 8, 12, 20);
        s.batch = 2;
        (s.offset_a, s.offset_b, s.offset_c) = (4, 8, 12);
        (s.alpha, s.beta) = (-1.5, 1.0);
        check(s, false, 40 + i as u64);
        // One A shared by every batch (stride 0), as pointwise convolutions use it.
        let mut s = spec(ta, tb, 6, 10, 5);
        s.batch = 3;
        s.stride_a = 0;
        check(s, false, 45 + i as u64);
    }
}

#[test]
fn random_shapes_transposes_and_batches() {
    let mut rng = ferronet::rng::Rng::new(99);
    let mut dim = |max: u64| 1 + rng.below(max) as usize;
    for case in 0..12u64 {
        let (m, n, k) = (dim(70), dim(70), dim(40));
        let mut s = spec(case % 2 == 1, case / 2 % 2 == 1, m, n, k);
        s.batch = dim(3);
        (s.stride_a, s.stride_b, s.stride_c) = (m * k + dim(5) - 1, k * n + dim(5) - 1, m * n + dim(5) - 1);
        (s.offset_a, s.offset_b, s.offset_c) = (dim(8) - 1, dim(8) - 1, dim(8) - 1);
        (s.alpha, s.beta) = (1.25, if case % 3 == 0 { 0.0 } else { -0.75 });
        check(s, false, 60 + case);
    }
}

#[test]
fn beta_zero_never_reads_c_and_k_zero_scales_c() {
    // C full of NaN: any read of it with beta == 0 would poison the result.
    check(spec(false, false, 9, 13, 6), true, 50);
    check(spec(true, true, 16, 8, 4), true, 51);
    let mut s = spec(false, false, 3, 4, 0);
    s.beta = 0.5;
    check(s, false, 52);
}

#[test]
fn too_short_operands_are_a_clear_error() {
    let gpu = gpu();
    let a = gpu.upload(&[0.0f32; 6]).unwrap();
    let mut c = gpu.zeros(4).unwrap();
    let err = gpu.gemm(&spec(false, false, 2, 2, 4), &a, &a, &mut c).expect_err("A needs 8 elements").to_string();
    assert!(err.contains("operand A has 6 elements") && err.contains("needs 8"), "{err}");
}

#[test]
fn split_k_matches_the_cpu_for_every_transpose_batch_and_beta() {
    for (i, (ta, tb)) in [(false, false), (false, true), (true, false), (true, true)].into_iter().enumerate() {
        let i = i as u64;
        // K = 75 in slices of 16: 5 slices, the last 11 deep; tile edges in m and n.
        check_split(spec(ta, tb, 67, 5, 75), SplitK::Splits(5), false, 100 + i);
        // Batched with unaligned offsets and strides (scalar loads), alpha and beta accumulate.
        let mut s = spec(ta, tb, 5, 7, 41);
        s.batch = 3;
        (s.stride_a, s.stride_b, s.stride_c) = (5 * 41 + 1, 41 * 7 + 3, 5 * 7 + 2);
        (s.offset_a, s.offset_b, s.offset_c) = (1, 2, 3);
        (s.alpha, s.beta) = (0.5, 2.0);
        check_split(s, SplitK::Splits(3), false, 110 + i);
        // Aligned (float4 loads and partial stores), shared A, C (all NaN) never read with beta == 0.
        let mut s = spec(ta, tb, 8, 12, 52);
        s.batch = 2;
        s.stride_a = 0;
        (s.offset_a, s.offset_b) = (4, 8);
        check_split(s, SplitK::Splits(4), true, 120 + i);
    }
    // Auto on a one-tile grid deep enough to split (K = 600: 2 slices of 304 and 296).
    let mut s = spec(false, true, 20, 30, 600);
    s.beta = -0.5;
    check_split(s, SplitK::Auto, false, 130);
}

#[test]
fn split_k_is_deterministic_and_close_to_the_unsplit_kernel() {
    let mut s = spec(true, false, 33, 40, 200);
    (s.alpha, s.beta) = (1.5, 0.25);
    let split = check_split(s, SplitK::Splits(7), false, 140);
    // Blocks in linear order on one host thread, and shuffled differently per launch on many:
    // the fixed-order reduction must give the same bits whatever the schedule.
    let (la, lb, lc) = s.required_lens();
    let (a, b, c) = (random_f32(la + 1, 140, -1.0, 1.0), random_f32(lb + 1, 141, -1.0, 1.0), random_f32(lc + 1, 142, -1.0, 1.0));
    let orders = [
        SimOptions { block_order: BlockOrder::Linear, threads: 1, ..SimOptions::default() },
        SimOptions { block_order: BlockOrder::Shuffled(7), ..SimOptions::default() },
    ];
    let mut first: Option<Vec<f32>> = None;
    for options in orders {
        let gpu = GpuBackend::new(Arc::new(SimDriver::new(options)));
        let (ga, gb) = (gpu.upload(&a).unwrap(), gpu.upload(&b).unwrap());
        for run in 0..2 {
            let mut gc = gpu.upload(&c).unwrap();
            gpu.gemm_split(&s, SplitK::Splits(7), &ga, &gb, &mut gc).unwrap();
            let got = gpu.download(&gc).unwrap();
            let want = first.get_or_insert_with(|| got.clone());
            assert!(got.iter().zip(want.iter()).all(|(x, y)| x.to_bits() == y.to_bits()), "split-K bits differ ({options:?}, run {run})");
        }
    }
    // A different summation order than the unsplit kernel: equal within tolerance, not bitwise.
    let unsplit = check_split(s, SplitK::Splits(1), false, 140);
    assert_close("split-K vs unsplit", &split, &widen(&unsplit), 1e-5, 1e-5);
}

/// A simulator backend reporting `multiprocessors` SMs, sanitizer off (the selection is under test).
fn sim_with_sms(multiprocessors: usize) -> GpuBackend {
    GpuBackend::new(Arc::new(SimDriver::new(SimOptions { multiprocessors, sanitize: false, ..SimOptions::default() })))
}

/// The GEMM kernels `spec` launches on `gpu`.
fn gemm_kernels(gpu: &GpuBackend, spec: &GemmSpec<f32>) -> Vec<String> {
    let (la, lb, lc) = spec.required_lens();
    let (a, b) = (gpu.upload(&vec![0.5f32; la]).unwrap(), gpu.upload(&vec![0.25f32; lb]).unwrap());
    let mut c = gpu.zeros(lc).unwrap();
    gpu.take_kernel_log();
    gpu.gemm(spec, &a, &b, &mut c).unwrap();
    gpu.take_kernel_log()
}

#[test]
fn split_k_is_chosen_for_small_grids_only() {
    // Four SMs: two waves are 2 x 4 x 4 resident blocks = 32 tiles.
    let gpu = sim_with_sms(4);
    let split = ["gemm::sgemm_nn_split".to_string(), "gemm::splitk_reduce".to_string()];
    // One tile keeps 3 of 4 SMs idle; K = 1024 gives 4 slices of 256: split.
    assert_eq!(gemm_kernels(&gpu, &spec(false, false, 64, 64, 1024)), split);
    // K too shallow for two 256-deep slices: not split.
    assert_eq!(gemm_kernels(&gpu, &spec(false, false, 64, 64, 500)), ["gemm::sgemm_nn"]);
    // 128 x 256: 8 small tiles already busy every SM and would not split; 4 tiles of 64 x 128
    // read B as often and A half as often, and still fill the 4 SMs unsplit.
    let wide = spec(false, false, 128, 256, 512);
    assert_eq!(wide.k_split_on(GemmTile::Small, SplitK::Auto, 4).splits, 1);
    assert_eq!(gemm_kernels(&gpu, &wide), ["gemm::sgemm_nn_64x128"]);
    // 2 large tiles would split in 2 to fill them.
    assert_eq!(wide.k_split_on(GemmTile::Large, SplitK::Auto, 4).splits, 2);
    // Big enough for both tiles to fill the device unsplit: the large one.
    assert_eq!(gemm_kernels(&gpu, &spec(true, false, 512, 512, 64)), ["gemm::sgemm_tn_128"]);
    // A grid of two waves or more is never split, and a larger device splits a grid further.
    let (grid_of_32, one_tile) = (spec(false, false, 64, 64 * 32, 1 << 16), spec(false, false, 64, 64, 1 << 16));
    assert_eq!(grid_of_32.k_split_on(GemmTile::Small, SplitK::Auto, 4).splits, 1);
    assert_eq!(one_tile.k_split_on(GemmTile::Small, SplitK::Auto, 4).splits, 32);
    assert!(one_tile.k_split_on(GemmTile::Small, SplitK::Auto, 82).splits > 32);
}
