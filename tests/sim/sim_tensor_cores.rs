//! Tensor-core instructions (compute_80 inline PTX): mma.sync m16n8k16 bf16/f16, m16n8k8 f16 and
//! tf32 against D = A B + C computed here, ldmatrix x1/x2/x4 with and without .trans against
//! the elements each lane must receive, the tensor-FLOP and bank-conflict counters, and the
//! sanitizer's report of a misaligned ldmatrix row.

use ferronet::device::driver::KernelArg;
use ferronet::gpu::GpuBackend;
use ferronet::sim::{SimDriver, SimOptions};
use ferronet_test_support::assert_mentions;
use ferronet_test_support::sim::{one_block, sim_for_cc};
use half::{bf16, f16};
use std::sync::Arc;

const TENSOR_CORES: &str = include_str!("sim_kernels/tensor_cores.cu");
const SM80: (i32, i32) = (8, 0);

fn tensor_sim() -> (Arc<SimDriver>, GpuBackend) {
    sim_for_cc(SimOptions::default(), "tensor_cores", TENSOR_CORES, SM80)
}

/// Row-major D = A (m x k) B (k x n) + C in f64.
fn mma_reference(a: &[f64], b: &[f64], c: &[f64], m: usize, n: usize, k: usize) -> Vec<f64> {
    (0..m * n).map(|i| c[i] + (0..k).map(|p| a[(i / n) * k + p] * b[p * n + i % n]).sum::<f64>()).collect()
}

/// Small multiples of 1/8 in [-2, 2): exact in bf16, f16 and tf32, and every sum of their
/// products exact in f32, so the result must match the reference exactly.
fn eighths(len: usize, seed: usize) -> Vec<f64> {
    (0..len).map(|i| ((i * 7 + seed * 13) % 32) as f64 / 8.0 - 2.0).collect()
}

fn run_mma(kernel: &str, k: usize, to_bits: fn(f64) -> u16) {
    let (driver, gpu) = tensor_sim();
    let (a, b, c) = (eighths(16 * k, 1), eighths(k * 8, 2), eighths(16 * 8, 3));
    let bits = |v: &[f64]| v.iter().map(|&x| to_bits(x)).collect::<Vec<u16>>();
    let (da, db) = (gpu.upload_slice(&bits(&a)).unwrap(), gpu.upload_slice(&bits(&b)).unwrap());
    let cf: Vec<f32> = c.iter().map(|&x| x as f32).collect();
    let dc = gpu.upload_slice(&cf).unwrap();
    let dd = gpu.alloc::<f32>(16 * 8).unwrap();
    gpu.launch("tensor_cores", kernel, one_block(32), &[da.arg(), db.arg(), dc.arg(), dd.arg()]).unwrap();
    let got: Vec<f64> = gpu.download_slice(&dd).unwrap().iter().map(|&x| x as f64).collect();
    assert_eq!(got, mma_reference(&a, &b, &c, 16, 8, k), "{kernel}");
    let stats = driver.take_launch_stats();
    assert_eq!(stats[0].tensor_flops_16bit, 2 * 16 * 8 * k as u64, "{kernel}: one warp mma");
    assert_eq!(stats[0].tensor_flops_tf32, 0);
}

#[test]
fn mma_m16n8k16_bf16_and_f16_follow_the_isa_fragment_layout() {
    run_mma("mma_bf16_k16", 16, |x| bf16::from_f64(x).to_bits());
    run_mma("mma_f16_k16", 16, |x| f16::from_f64(x).to_bits());
    run_mma("mma_f16_k8", 8, |x| f16::from_f64(x).to_bits());
}

#[test]
fn mma_products_are_exact_in_f32() {
    // A row of 1 + 2^-7 (exact in bf16) times B's column of 1 + 2^-7: each product is
    // 1 + 2^-6 + 2^-14, exact in f32 but not in bf16; sixteen of them plus C = 2^-30 sum to
    // 16 + 2^-2 + 2^-10 + 2^-30, which is the f32 16 + 2^-2 + 2^-10 (products rounded to bf16
    // would lose the 2^-10).
    let (_, gpu) = tensor_sim();
    let x = bf16::from_f64(1.0 + 2f64.powi(-7));
    assert_eq!(x.to_f64(), 1.0 + 2f64.powi(-7));
    let (da, db) = (gpu.upload_slice(&vec![x.to_bits(); 256]).unwrap(), gpu.upload_slice(&vec![x.to_bits(); 128]).unwrap());
    let dc = gpu.upload_slice(&vec![2f32.powi(-30); 128]).unwrap();
    let dd = gpu.alloc::<f32>(128).unwrap();
    gpu.launch("tensor_cores", "mma_bf16_k16", one_block(32), &[da.arg(), db.arg(), dc.arg(), dd.arg()]).unwrap();
    let want = (16.0 + 2f64.powi(-2) + 2f64.powi(-10)) as f32;
    assert_eq!(gpu.download_slice(&dd).unwrap(), vec![want; 128]);
}

#[test]
fn mma_m16n8k8_tf32_ignores_the_low_mantissa_bits() {
    let (driver, gpu) = tensor_sim();
    let (a, b, c) = (eighths(16 * 8, 4), eighths(8 * 8, 5), eighths(16 * 8, 6));
    // Bits below tf32's 10-bit mantissa are not seen by the tensor core.
    let noisy = |v: &[f64]| v.iter().map(|&x| f32::from_bits((x as f32).to_bits() | 0x0fff)).collect::<Vec<f32>>();
    let (da, db) = (gpu.upload_slice(&noisy(&a)).unwrap(), gpu.upload_slice(&noisy(&b)).unwrap());
    let dc = gpu.upload_slice(&c.iter().map(|&x| x as f32).collect::<Vec<_>>()).unwrap();
    let dd = gpu.alloc::<f32>(128).unwrap();
    gpu.launch("tensor_cores", "mma_tf32_k8", one_block(32), &[da.arg(), db.arg(), dc.arg(), dd.arg()]).unwrap();
    let got: Vec<f64> = gpu.download_slice(&dd).unwrap().iter().map(|&x| x as f64).collect();
    assert_eq!(got, mma_reference(&a, &b, &c, 16, 8, 8));
    let stats = driver.take_launch_stats();
    assert_eq!((stats[0].tensor_flops_tf32, stats[0].tensor_flops_16bit, stats[0].flops), (2048, 0, 0));
}

/// Element (r, c) of the 32x8 test matrix: distinct 16-bit values.
fn element(r: usize, c: usize) -> u32 {
    (r * 8 + c) as u32 + 0x100
}

/// Runs `load_matrices` and returns each lane's four registers and the launch's counters.
fn load(count: i32, trans: bool, pitch: i32, skew: i32) -> ferronet::Result<(Vec<u32>, ferronet::sim::LaunchStats)> {
    let (driver, gpu) = tensor_sim();
    let m: Vec<u16> = (0..32 * 8).map(|i| element(i / 8, i % 8) as u16).collect();
    let dm = gpu.upload_slice(&m).unwrap();
    let out = gpu.alloc::<u32>(128).unwrap();
    let args = [dm.arg(), KernelArg::I32(count), KernelArg::I32(trans as i32), KernelArg::I32(pitch), KernelArg::I32(skew), out.arg()];
    gpu.launch("tensor_cores", "load_matrices", one_block(32), &args)?;
    Ok((gpu.download_slice(&out).unwrap(), driver.take_launch_stats().remove(0)))
}

#[test]
fn ldmatrix_hands_each_lane_its_pairs_of_each_matrix() {
    // Lane 5 is thread 1 of group 1: row 1, columns 2 and 3 of each matrix, or with .trans
    // rows 2 and 3 of column 1.
    let (regs, _) = load(4, false, 8, 0).unwrap();
    assert_eq!(regs[4 * 5], element(1, 2) | element(1, 3) << 16);
    assert_eq!(regs[4 * 5 + 3], element(25, 2) | element(25, 3) << 16);
    let (regs, _) = load(4, true, 8, 0).unwrap();
    assert_eq!(regs[4 * 5], element(2, 1) | element(3, 1) << 16);
    assert_eq!(regs[4 * 5 + 2], element(18, 1) | element(19, 1) << 16);
    for count in [1, 2, 4] {
        for trans in [false, true] {
            let (regs, stats) = load(count, trans, 8, 0).unwrap();
            for l in 0..32 {
                let (g, t) = (l / 4, l % 4);
                for i in 0..4 {
                    let want = match (i < count as usize, trans) {
                        (false, _) => 0,
                        (true, false) => element(8 * i + g, 2 * t) | element(8 * i + g, 2 * t + 1) << 16,
                        (true, true) => element(8 * i + 2 * t, g) | element(8 * i + 2 * t + 1, g) << 16,
                    };
                    assert_eq!(regs[4 * l + i], want, "x{count} trans {trans} lane {l} register {i}");
                }
            }
            // Rows 16 bytes apart fill the 32 banks: one wavefront per matrix, no conflict.
            assert_eq!(stats.bank_conflicts, 0, "x{count}");
        }
    }
}

#[test]
fn ldmatrix_rows_sharing_banks_conflict() {
    // Rows 32 bytes apart: rows r and r + 4 of a matrix fall in the same four banks.
    let (regs, stats) = load(4, false, 16, 0).unwrap();
    assert_eq!(regs[4 * 5], element(1, 2) | element(1, 3) << 16);
    assert_eq!(stats.bank_conflicts, 4, "one extra wavefront per matrix");
}

#[test]
fn a_misaligned_ldmatrix_row_is_reported() {
    let err = load(4, false, 8, 4).unwrap_err();
    assert_mentions(
        &err,
        &[
            "kernel fault in tensor_cores::load_matrices: misaligned ldmatrix row",
            "ldmatrix.sync.aligned.m8n8.x4.shared.b16",
            "thread (5,0,0)",
            "row 5 of matrix 0",
            "not 16-byte aligned",
        ],
    );
}
