//! GPU layout conversions (the Relayout node's batched transpose) against the CPU's reordering:
//! they only move values, so every stored format comes back bit for bit and keeps its format.

use ferronet_test_support::gpu::{gpu, random_f32};
use ferronet_test_support::stored::StoredPrecision;

use ferronet::cpu::CpuBackend;

use ferronet::cpu::layout::{nchw_to_nhwc, nhwc_to_nchw};
use ferronet::ops::LayoutOps;
use ferronet::precision::Precision;

/// f32, bf16 and fp16 images of 40 channels by 35 pixels (two 32-wide tiles each way, the second
/// partial) to channels last and back.
#[test]
fn conversions_move_every_stored_format_unchanged() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    let (n, c, hw) = (2, 40, 35);
    let x = random_f32(n * c * hw, 1, -3.0, 3.0);
    for p in [Precision::Fp32, Precision::Bf16, Precision::Fp16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let rounded = stored.rounded(&x);
        let last = gpu.to_channels_last(&stored.on_gpu(&x), n, c, hw).unwrap();
        assert_eq!(stored.download("channels last", &last), nchw_to_nhwc(&rounded, c, hw), "{p} channels last");
        let first = gpu.to_channels_first(&last, n, c, hw).unwrap();
        assert_eq!(stored.download("channels first", &first), nhwc_to_nchw(&nchw_to_nhwc(&rounded, c, hw), c, hw), "{p} channels first");
    }
}
