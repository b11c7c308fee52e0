//! The GPU fully connected layer against the f64 CPU reference, forward and backward, on odd sizes
//! that exercise the SGEMM's edge tiles, on the fp32 SGEMM and on the tensor-core tiles of each
//! reduced format (operands rounded to it as training stores them, the reference on the same
//! values: only f32 accumulation differs, so the fp32 tolerance holds).

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, upload_pair};
use ferronet_test_support::stored::{Agreement, StoredPrecision};

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

/// A bf16/fp16 run's linear layer on 16-bit x and dy (on the tensor-core tiles, unsplit and split
/// on a 4-SM simulator): y and dx are stored in the input's format and equal the CPU's f32 results
/// rounded to it (to one unit of the format's last place, where the f32 sums differ across a
/// rounding boundary); dW and db stay f32 at the fp32 tolerance.
#[test]
fn sixteen_bit_activations_are_read_and_written_in_place() {
    let cpu = CpuBackend::new();
    for (p, tol) in [(Precision::Bf16, 8e-3), (Precision::Fp16, 1e-3)] {
        let within = Agreement::Within { atol: tol, rtol: tol };
        let small = GpuBackend::new(Arc::new(SimDriver::new(SimOptions { multiprocessors: 4, ..SimOptions::default() })));
        for (gpu, (n, inf, outf)) in [(gpu(), (3, 17, 5)), (gpu(), (4, 64, 12)), (small, (4, 2048, 8))] {
            gpu.declare_gemm_operand_format(p);
            let stored = StoredPrecision::new(&gpu, &cpu, p);
            let g = LinearGeom::new(n, inf, outf).unwrap();
            let (x, w, b, dy) = (values_at(p, n * inf, 1), values_at(p, outf * inf, 2), values_at(p, outf, 3), values_at(p, n * outf, 4));
            let (gx, gdy, gw, gb) = (stored.on_gpu(&x), stored.on_gpu(&dy), gpu.upload(&w).unwrap(), gpu.upload(&b).unwrap());
            let wide = |v: &[f32]| cpu.upload(&v.iter().map(|&a| a as f64).collect::<Vec<f64>>()).unwrap();
            let (cx, cw, cb, cdy) = (wide(&x), wide(&w), wide(&b), wide(&dy));
            let what = |pass: &str| format!("{pass} {p} {g:?}");
            let y = gpu.linear_forward(&gx, &gw, Some(&gb), &g).unwrap();
            stored.check(&format!("forward {g:?}"), &y, cpu.linear_forward(&cx, &cw, Some(&cb), &g).unwrap(), within);
            let dx = gpu.linear_backward_data(&gdy, &gw, &g).unwrap();
            stored.check(&format!("backward data {g:?}"), &dx, cpu.linear_backward_data(&cdy, &cw, &g).unwrap(), within);
            let dw = gpu.linear_backward_weight(&gx, &gdy, &g).unwrap();
            assert_close(&what("backward weight"), &gpu.download(&dw).unwrap(), &cpu.download(&cpu.linear_backward_weight(&cx, &cdy, &g).unwrap()).unwrap(), 1e-4, 1e-4);
            let db = gpu.linear_backward_bias(&gdy, &g).unwrap();
            assert_close(&what("backward bias"), &gpu.download(&db).unwrap(), &cpu.download(&cpu.linear_backward_bias(&cdy, &g).unwrap()).unwrap(), 1e-4, 1e-4);
            assert!(gpu.take_kernel_log().iter().any(|k| k.starts_with("gemm_tc::sgemm_")), "{p}: the tensor-core tiles ran");
        }
    }
}

#[test]
fn a_weight_of_the_wrong_size_is_a_clear_error() {
    let gpu = gpu();
    let g = LinearGeom::new(2, 3, 4).unwrap();
    let err = gpu.linear_forward(&gpu.zeros(6).unwrap(), &gpu.zeros(11).unwrap(), None, &g).err().expect("W is 4x3").to_string();
    assert_eq!(err, "shape error: linear: weight has 11 elements but 12 are needed");
}
