//! PREDICTED times of the tensor-core GEMM (`kernels/gemm_tc.cu`, bf16 inputs, f32 accumulation)
//! at full size: a 4096^3 product and the forward GEMMs of ResNet-18's (CIFAR stem) 3x3
//! convolutions as plain GEMMs (M = output channels, N = images x output pixels, K = input
//! channels x 9; the convolution kernels do not use tensor cores yet). The simulator runs 16
//! blocks of each launch, spread over its grid, with the full K (so each block does all its
//! real work) and scales the counters to the whole grid; the GPU models turn them into times.
//! Correctness is checked by the GPU-vs-CPU tests on small shapes (tests/ops/gpu_gemm_tc.rs):
//! a sampled run computes nothing meaningful.

use crate::error::Result;
use crate::gpu::GpuBackend;
use crate::ops::gemm::tc::{gemm_tc_half, TcGemm, TcInput};
use crate::sim::roofline::{slower, Limit, GPU_MODELS};
use crate::sim::{SimDriver, SimOptions};
use serde::Serialize;
use std::sync::Arc;

/// Blocks of each launch the simulator runs.
const SAMPLED_BLOCKS: u32 = 16;

/// One benchmarked product.
#[derive(Clone, Debug)]
pub struct TcCase {
    pub name: String,
    pub shape: TcGemm,
}

/// The cases at `batch` images for the convolution shapes.
pub fn tc_cases(batch: usize) -> Vec<TcCase> {
    let bf16 = |m, n, k| TcGemm { input: TcInput::Bf16, m, n, k };
    let mut cases = vec![TcCase { name: "tc_gemm bf16 4096^3".into(), shape: bf16(4096, 4096, 4096) }];
    for (channels, side) in [(64, 32), (128, 16), (256, 8), (512, 4)] {
        let shape = bf16(channels, batch * side * side, channels * 9);
        cases.push(TcCase {
            name: format!("tc_gemm bf16 conv_fwd resnet18 {channels}x{side}x{side} 3x3 as a plain GEMM {}x{}x{}", shape.m, shape.n, shape.k),
            shape,
        });
    }
    cases
}

/// The prediction for one GPU.
#[derive(Clone, Debug, Serialize)]
pub struct TcPrediction {
    pub gpu: &'static str,
    /// No cache: every sector each block touches moves through DRAM (pessimistic).
    pub seconds: f64,
    pub limit: Limit,
    /// Achieved FLOP/s over the GPU's dense bf16 tensor-core peak with f32 accumulation.
    pub fraction_of_tensor_peak: f64,
    /// Ideal cache: the on-chip roofs, or the compulsory bytes (A and B in bf16, C in f32)
    /// through DRAM, whichever is slower (optimistic).
    pub seconds_ideal_cache: f64,
    pub limit_ideal_cache: Limit,
    pub fraction_of_tensor_peak_ideal_cache: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct TcReport {
    pub name: String,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub grid: (u32, u32, u32),
    /// Counters of the whole grid (scaled from the sampled blocks).
    pub tensor_flops: u64,
    pub shared_wavefronts: u64,
    pub bank_conflicts: u64,
    pub dram_bytes: u64,
    pub warp_insts: u64,
    pub sim_seconds: f64,
    pub predictions: Vec<TcPrediction>,
}

/// Simulates `case` (sampled) and predicts its time on every modelled GPU.
pub fn predict_tc(case: &TcCase) -> Result<TcReport> {
    let TcGemm { m, n, k, .. } = case.shape;
    let driver = Arc::new(SimDriver::new(SimOptions { sanitize: false, sample_blocks: Some(SAMPLED_BLOCKS), ..SimOptions::default() }));
    let gpu = GpuBackend::new(driver.clone());
    // The values do not matter: the sampled blocks' results are discarded.
    let (a, b) = (gpu.alloc_zeroed::<u16>(m * k)?, gpu.alloc_zeroed::<u16>(k * n)?);
    let mut c = gpu.alloc::<f32>(m * n)?;
    // The tile the launcher plans for the simulated device (an RTX 3090's 82 SMs).
    gemm_tc_half(&gpu, case.shape, None, &a, &b, &mut c)?;
    let stats = driver.take_launch_stats().remove(0);
    let compulsory_bytes = (2 * (m * k + k * n) + 4 * m * n) as f64;
    let predictions = GPU_MODELS
        .iter()
        .map(|model| {
            let no_cache = model.predict(&stats);
            let ideal = slower(model.predict_on_chip(&stats), model.dram_time(compulsory_bytes));
            let ideal = if ideal.seconds > no_cache.seconds { no_cache } else { ideal };
            let fraction = |seconds: f64| case.shape.flops() / seconds / model.peak_tensor_16bit_flops;
            TcPrediction {
                gpu: model.name,
                seconds: no_cache.seconds,
                limit: no_cache.limit,
                fraction_of_tensor_peak: fraction(no_cache.seconds),
                seconds_ideal_cache: ideal.seconds,
                limit_ideal_cache: ideal.limit,
                fraction_of_tensor_peak_ideal_cache: fraction(ideal.seconds),
            }
        })
        .collect();
    Ok(TcReport {
        name: case.name.clone(),
        m,
        n,
        k,
        grid: stats.grid,
        tensor_flops: stats.tensor_flops_16bit,
        shared_wavefronts: stats.shared_wavefronts,
        bank_conflicts: stats.bank_conflicts,
        dram_bytes: stats.dram_bytes(),
        warp_insts: stats.warp_insts,
        sim_seconds: stats.sim_seconds,
        predictions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sampled_prediction_counts_every_block_of_the_grid() {
        // 3 x 4 blocks of 64 rows (few tiles), all run (fewer than the sample): the exact padded work.
        let case = TcCase { name: "small".into(), shape: TcGemm { input: TcInput::Bf16, m: 200, n: 296, k: 64 } };
        let report = predict_tc(&case).unwrap();
        assert_eq!(report.grid, (3, 4, 1));
        assert_eq!(report.tensor_flops, 2 * 256 * 384 * 64);
        assert_eq!(report.bank_conflicts, 0);
        let rtx4090 = report.predictions.iter().find(|p| p.gpu == "RTX 4090").unwrap();
        assert!(rtx4090.seconds >= rtx4090.seconds_ideal_cache && rtx4090.fraction_of_tensor_peak > 0.0, "{rtx4090:?}");
        assert_eq!(tc_cases(2).len(), 5);
    }
}
