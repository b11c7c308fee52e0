//! GPU layout conversions (the Relayout node's batched transpose) against the CPU's reordering:
//! they only move values, so every stored format comes back bit for bit and keeps its format.

use ferronet_test_support::gpu::{gpu, random_f32};
use ferronet_test_support::stored::StoredPrecision;

use ferronet::cpu::CpuBackend;
use ferronet::gpu::GpuBackend;
use ferronet::sim::{SimDriver, SimOptions};
use std::sync::Arc;

use ferronet::cpu::layout::{nchw_to_nhwc, nhwc_to_nchw};
use ferronet::ops::LayoutOps;
use ferronet::precision::Precision;

/// f32, bf16 and fp16 images to channels last and back, in shapes whose rows take 4 values per
/// access both ways (40 channels x 36 pixels), one way only (3 channels x 68 pixels: the RGB input)
/// and neither (6 x 35), over partial 64x64 tiles.
#[test]
fn conversions_move_every_stored_format_unchanged() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    for (seed, (n, c, hw)) in [(2, 40, 36), (2, 3, 68), (1, 6, 35), (1, 70, 130)].into_iter().enumerate() {
        let x = random_f32(n * c * hw, seed as u64, -3.0, 3.0);
        for p in [Precision::Fp32, Precision::Bf16, Precision::Fp16] {
            let stored = StoredPrecision::new(&gpu, &cpu, p);
            let rounded = stored.rounded(&x);
            let last = gpu.to_channels_last(&stored.on_gpu(&x), n, c, hw).unwrap();
            let want_last = nchw_to_nhwc(&rounded, c, hw);
            assert_eq!(stored.download("channels last", &last), want_last, "{p} [{n}, {c}, {hw}] channels last");
            let first = gpu.to_channels_first(&last, n, c, hw).unwrap();
            assert_eq!(stored.download("channels first", &first), nhwc_to_nchw(&want_last, c, hw), "{p} [{n}, {c}, {hw}] channels first");
        }
    }
}

/// On the simulator, a whole 64x128 image moves in single accesses of 4 values (16 bytes at f32,
/// 8 at 16 bits): 32 lanes x 4 values per warp access, loads and stores, with no bank conflict.
#[test]
fn whole_tiles_move_four_values_per_lane_without_bank_conflicts() {
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let (gpu, cpu) = (GpuBackend::new(driver.clone()), CpuBackend::new());
    let (c, hw) = (64, 128);
    let x = random_f32(c * hw, 9, -1.0, 1.0);
    for p in [Precision::Fp32, Precision::Bf16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let on_gpu = stored.on_gpu(&x);
        driver.take_launch_stats();
        let last = gpu.to_channels_last(&on_gpu, 1, c, hw).unwrap();
        assert_eq!(stored.download("channels last", &last), nchw_to_nhwc(&stored.rounded(&x), c, hw), "{p}");
        let stats = driver.take_launch_stats();
        let transpose = stats.iter().find(|s| s.kernel == "layout::transpose_images").expect("the transpose ran");
        let bytes = if p == Precision::Fp32 { 4 } else { 2 } * (c * hw) as u64;
        assert_eq!((transpose.global_load_bytes, transpose.global_store_bytes), (bytes, bytes), "{p}");
        assert_eq!(transpose.global_accesses, 2 * (c * hw / (32 * 4)) as u64, "{p}: one access per 4 values per lane");
        assert_eq!(transpose.bank_conflicts, 0, "{p}");
    }
}
