//! The GPU fully connected layer against the f64 CPU reference, forward and backward, on odd sizes
//! that exercise the SGEMM's edge tiles, on the fp32 SGEMM and on the tensor-core tiles of each
//! reduced format (operands rounded to it as training stores them, the reference on the same
//! values: only f32 accumulation differs, so the fp32 tolerance holds).

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, upload_pair};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::gpu::GpuBackend;
use ferronet::ops::{LinearGeom, LinearOps, PrecisionOps};
use ferronet::precision::Precision;
use ferronet::sim::{SimDriver, SimOptions};
use std::sync::Arc;

/// Random values in [-1, 1) rounded to `p`'s format.
fn values_at(p: Precision, len: usize, seed: u64) -> Vec<f32> {
    random_f32(len, seed, -1.0, 1.0).into_iter().map(|v| p.round(v)).collect()
}

#[test]
fn forward_and_backward_match_the_reference() {
    for p in [Precision::Fp32, Precision::Bf16, Precision::Fp16, Precision::Tf32] {
        let gpu = gpu();
        gpu.declare_gemm_operand_format(p);
        layers_match(&gpu, p, &[(1, 1, 1), (3, 17, 5), (4, 64, 10), (7, 33, 70)]);
        let tensor_cores = p != Precision::Fp32 && gpu.driver().compute_capability() >= (8, 0);
        let tiles = if tensor_cores { "gemm_tc::sgemm_" } else { "gemm::sgemm_" };
        assert!(gpu.take_kernel_log().iter().any(|k| k.starts_with(tiles)), "{p}: {tiles}* ran");
    }
}

/// On a 4-SM simulator the forward product of a wide layer on a small batch (one tile of output,
/// K = 2048) splits K on the tensor-core tiles too.
#[test]
fn tensor_core_products_with_k_split_match_the_reference() {
    for p in [Precision::Bf16, Precision::Fp16, Precision::Tf32] {
        let gpu = GpuBackend::new(Arc::new(SimDriver::new(SimOptions { multiprocessors: 4, ..SimOptions::default() })));
        gpu.declare_gemm_operand_format(p);
        layers_match(&gpu, p, &[(4, 2048, 8)]);
        let log = gpu.take_kernel_log();
        assert!(log.iter().any(|k| k.starts_with("gemm_tc::sgemm_") && k.ends_with("_split")), "{p}: a split tensor-core product: {log:?}");
        assert!(log.iter().any(|k| k == "gemm::splitk_reduce"), "{p}: {log:?}");
    }
}

/// Each layer's forward (with and without bias) and backward at `p` on `gpu` against the CPU.
fn layers_match(gpu: &GpuBackend, p: Precision, layers: &[(usize, usize, usize)]) {
    let cpu = CpuBackend::new();
    for (i, &(n, inf, outf)) in layers.iter().enumerate() {
        let g = LinearGeom::new(n, inf, outf).unwrap();
        let seed = 10 * i as u64;
        let (x, w, b, dy) = (values_at(p, n * inf, seed), values_at(p, outf * inf, seed + 1), values_at(p, outf, seed + 2), values_at(p, n * outf, seed + 3));
        let ((gx, cx), (gw, cw)) = (upload_pair(gpu, &cpu, &x), upload_pair(gpu, &cpu, &w));
        let ((gb, cb), (gdy, cdy)) = (upload_pair(gpu, &cpu, &b), upload_pair(gpu, &cpu, &dy));
        for bias in [true, false] {
            let y = gpu.linear_forward(&gx, &gw, bias.then_some(&gb), &g).unwrap();
            let want = cpu.linear_forward(&cx, &cw, bias.then_some(&cb), &g).unwrap();
            assert_close(&format!("forward (bias {bias}) {p} {g:?}"), &gpu.download(&y).unwrap(), &want, 1e-4, 1e-4);
        }
        let dx = gpu.linear_backward_data(&gdy, &gw, &g).unwrap();
        assert_close(&format!("backward data {p} {g:?}"), &gpu.download(&dx).unwrap(), &cpu.linear_backward_data(&cdy, &cw, &g).unwrap(), 1e-4, 1e-4);
        let dw = gpu.linear_backward_weight(&gx, &gdy, &g).unwrap();
        assert_close(&format!("backward weight {p} {g:?}"), &gpu.download(&dw).unwrap(), &cpu.linear_backward_weight(&cx, &cdy, &g).unwrap(), 1e-4, 1e-4);
        let db = gpu.linear_backward_bias(&gdy, &g).unwrap();
        assert_close(&format!("backward bias {p} {g:?}"), &gpu.download(&db).unwrap(), &cpu.linear_backward_bias(&cdy, &g).unwrap(), 1e-4, 1e-4);
    }
}

#[test]
fn a_weight_of_the_wrong_size_is_a_clear_error() {
    let gpu = gpu();
    let g = LinearGeom::new(2, 3, 4).unwrap();
    let err = gpu.linear_forward(&gpu.zeros(6).unwrap(), &gpu.zeros(11).unwrap(), None, &g).err().expect("W is 4x3").to_string();
    assert_eq!(err, "shape error: linear: weight has 11 elements but 12 are needed");
}
