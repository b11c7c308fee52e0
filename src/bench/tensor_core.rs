//! PREDICTED times of the tensor-core kernels (bf16 inputs, f32 accumulation) at full size: the
//! GEMM (`kernels/gemm_tc.cu`) on a 4096^3 product and on ResNet-18's (CIFAR stem) 3x3 forward
//! convolutions as plain GEMMs over an explicit im2col matrix (M = output channels, N = images x
//! output pixels, K = input channels x 9), and the same convolutions, and the stride-2 ones that
//! open stages 2-4, through the implicit-GEMM convolution (`kernels/conv_tc.cu`, NHWC, no im2col
//! matrix). The simulator runs 16 blocks of each launch, spread over its grid, with the full K
//! (so each block does all its real work) and scales the counters to the whole grid; the GPU
//! models turn them into times. Those kernels take 16-bit operands; training, whose tensors are
//! still f32 holding rounded values, runs the tensor-core training tiles instead
//! (`kernels/tc_gemm_tile.cuh`: f32 operands gathered in place and converted), so the
//! `tc_train_*` cases predict those on the same shapes: the 4096^3 product on a linear layer's
//! 64x64 tiles, and every ResNet-18 3x3 forward convolution as training launches it (NCHW,
//! implicit im2col, the tile the launcher plans). The Turing cases run the f16 kernels of the
//! modules' compute_75 builds on a simulated sm_75 device of a T4's 40 SMs and predict a T4
//! ([`TcTarget`]). Correctness is checked by the GPU-vs-CPU
//! tests on small shapes (tests/ops/gpu_gemm_tc.rs, gpu_conv_tc.rs, gpu_linear.rs,
//! gpu_conv.rs): a sampled run computes nothing meaningful.

use crate::error::{Error, Result};
use crate::gpu::GpuBackend;
use crate::ops::conv::forward_spec;
use crate::ops::conv::tc::{conv_tc_forward, TcConv};
use crate::ops::gemm::tc::{gemm_tc_half, TcGemm, TcInput};
use crate::ops::gemm::GemmSpec;
use crate::ops::{ConvGeom, ConvOps, PrecisionOps};
use crate::sim::counters::LaunchStats;
use crate::sim::roofline::{slower, GpuModel, Limit, LaunchPrediction, GPU_MODELS, T4};
use crate::sim::{SimDriver, SimOptions};
use serde::Serialize;
use std::sync::Arc;

/// Blocks of each launch the simulator runs.
const SAMPLED_BLOCKS: u32 = 16;

/// The kernel a case runs.
#[derive(Clone, Copy, Debug)]
pub enum TcWork {
    /// `gemm_tc` on 16-bit operands.
    Gemm(TcGemm),
    /// `conv_tc`'s NHWC forward on 16-bit tensors.
    Conv(TcConv),
    /// A linear layer's training GEMM (C = A B) on f32 operands.
    TrainingGemm(TcGemm),
    /// Training's forward convolution on NCHW f32 tensors (its GEMM: M = output channels,
    /// N = images x output pixels, K = input channels x taps).
    TrainingConv(TcConv),
}

impl TcWork {
    fn flops(&self) -> f64 {
        match self {
            TcWork::Gemm(shape) | TcWork::TrainingGemm(shape) => shape.flops(),
            TcWork::Conv(conv) | TcWork::TrainingConv(conv) => conv.flops(),
        }
    }
    /// The GEMM's (M, N, K); a convolution's per group.
    fn gemm_dims(&self) -> (usize, usize, usize) {
        match self {
            TcWork::Gemm(TcGemm { m, n, k, .. }) | TcWork::TrainingGemm(TcGemm { m, n, k, .. }) => (*m, *n, *k),
            TcWork::Conv(conv) => conv.gemm_dims(),
            TcWork::TrainingConv(conv) => {
                let spec = forward_spec(&conv.geom);
                (spec.m, spec.n, spec.k)
            }
        }
    }
}

/// The simulated device a case runs on and the GPUs its counters predict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcTarget {
    /// Compute capability 8.6 (the tensor-core modules' compute_80 builds): RTX 3090, RTX 4090
    /// and H100.
    Ampere,
    /// Compute capability 7.5 (their compute_75 builds, f16 only): a T4.
    Turing,
}

impl TcTarget {
    /// The simulated device: its compute capability (which module build it loads), SM count
    /// (the tiles its launchers plan) and per-SM limits.
    fn sim_options(self) -> SimOptions {
        match self {
            TcTarget::Ampere => SimOptions::default(),
            TcTarget::Turing => SimOptions { compute_capability: (7, 5), multiprocessors: T4.sms as usize, residency: T4, ..SimOptions::default() },
        }
    }
    fn models(self) -> &'static [GpuModel] {
        match self {
            TcTarget::Ampere => &GPU_MODELS,
            TcTarget::Turing => &[T4],
        }
    }
}

/// One benchmarked launch.
#[derive(Clone, Debug)]
pub struct TcCase {
    pub name: String,
    pub work: TcWork,
    pub target: TcTarget,
}

/// ResNet-18's (CIFAR stem) 3x3 convolutions at `batch` images: (input channels, output
/// channels, input side, stride). The stem's 3 input channels are left out: the tensor-core
/// kernels need channel counts that are multiples of 8.
fn resnet18_3x3(batch: usize) -> Vec<ConvGeom> {
    [(64, 64, 32, 1), (64, 128, 32, 2), (128, 128, 16, 1), (128, 256, 16, 2), (256, 256, 8, 1), (256, 512, 8, 2), (512, 512, 4, 1)]
        .into_iter()
        .map(|(c_in, c_out, side, stride)| ConvGeom::new(batch, c_in, (side, side), c_out, (3, 3), (stride, stride), (1, 1), (1, 1), 1).unwrap())
        .collect()
}

/// The cases at `batch` images for the convolution shapes: the plain GEMMs (`tc_gemm`) of the
/// stride-1 convolutions, every 3x3 convolution through the implicit kernel (`tc_conv`), then
/// the training tiles on the 4096^3 product and every 3x3 convolution (`tc_train_*`).
pub fn tc_cases(batch: usize) -> Vec<TcCase> {
    let bf16 = |m, n, k| TcGemm { input: TcInput::Bf16, m, n, k };
    let ampere = |name: String, work: TcWork| TcCase { name, work, target: TcTarget::Ampere };
    let mut cases = vec![ampere("tc_gemm bf16 4096^3".into(), TcWork::Gemm(bf16(4096, 4096, 4096)))];
    let convs = resnet18_3x3(batch);
    for g in convs.iter().filter(|g| g.sh == 1) {
        let shape = bf16(g.c_out, batch * g.oh * g.ow, g.c_in * 9);
        cases.push(ampere(
            format!("tc_gemm bf16 conv_fwd resnet18 {}x{}x{} 3x3 as a plain GEMM {}x{}x{}", g.c_in, g.h, g.w, shape.m, shape.n, shape.k),
            TcWork::Gemm(shape),
        ));
    }
    for geom in convs {
        let conv = TcConv { input: TcInput::Bf16, geom };
        let (m, n, k) = conv.gemm_dims();
        cases.push(ampere(
            format!("tc_conv bf16 conv_fwd resnet18 {}x{}x{} 3x3 s{} -> {} NHWC implicit GEMM {m}x{n}x{k}", geom.c_in, geom.h, geom.w, geom.sh, geom.c_out),
            TcWork::Conv(conv),
        ));
    }
    cases.push(ampere("tc_train_gemm bf16 4096^3 f32 storage, 64x64 training tiles".into(), TcWork::TrainingGemm(bf16(4096, 4096, 4096))));
    for geom in resnet18_3x3(batch) {
        let conv = TcConv { input: TcInput::Bf16, geom };
        let (m, n, k) = TcWork::TrainingConv(conv).gemm_dims();
        cases.push(ampere(
            format!(
                "tc_train_conv bf16 conv_fwd resnet18 {}x{}x{} 3x3 s{} -> {} NCHW f32 storage, implicit GEMM {m}x{n}x{k}",
                geom.c_in, geom.h, geom.w, geom.sh, geom.c_out
            ),
            TcWork::TrainingConv(conv),
        ));
    }
    // Turing's f16 builds (two m16n8k8 per m16n8k16, copies without cp.async) on a T4.
    let f16 = TcGemm { input: TcInput::F16, m: 4096, n: 4096, k: 4096 };
    cases.push(TcCase { name: "tc_gemm f16 4096^3 Turing (compute_75 build)".into(), work: TcWork::Gemm(f16), target: TcTarget::Turing });
    cases.push(TcCase {
        name: "tc_train_gemm f16 4096^3 f32 storage, 64x64 training tiles, Turing (compute_75 build)".into(),
        work: TcWork::TrainingGemm(f16),
        target: TcTarget::Turing,
    });
    // A channels-first convolution, which Turing's tensor cores run too: ResNet-18's 128 x 16 x
    // 16 3x3.
    let geom = resnet18_3x3(batch)[2];
    let conv = TcConv { input: TcInput::F16, geom };
    let (m, n, k) = TcWork::TrainingConv(conv).gemm_dims();
    cases.push(TcCase {
        name: format!("tc_train_conv f16 conv_fwd resnet18 {}x{}x{} 3x3 s1 NCHW f32 storage, implicit GEMM {m}x{n}x{k}, Turing (compute_75 build)", geom.c_in, geom.h, geom.w),
        work: TcWork::TrainingConv(conv),
        target: TcTarget::Turing,
    });
    cases
}

/// The prediction for one GPU.
#[derive(Clone, Debug, Serialize)]
pub struct TcPrediction {
    pub gpu: &'static str,
    /// No cache: every sector each block touches moves through DRAM (pessimistic).
    pub seconds: f64,
    pub limit: Limit,
    /// Achieved FLOP/s over the GPU's dense 16-bit tensor-core peak with f32 accumulation.
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
    let (m, n, k) = case.work.gemm_dims();
    let driver = Arc::new(SimDriver::new(SimOptions { sanitize: false, sample_blocks: Some(SAMPLED_BLOCKS), ..case.target.sim_options() }));
    let gpu = GpuBackend::new(driver.clone());
    // The values do not matter: the sampled blocks' results are discarded. Each launch takes the
    // tile its launcher plans for the simulated device (an RTX 3090's 82 SMs, or a T4's 40). The compulsory
    // bytes: the operands read once (bf16, or f32 in training's storage), the output in f32
    // written once.
    let compulsory_bytes = match case.work {
        TcWork::Gemm(shape) => {
            let (a, b) = (gpu.alloc_zeroed::<u16>(m * k)?, gpu.alloc_zeroed::<u16>(k * n)?);
            let mut c = gpu.alloc::<f32>(m * n)?;
            gemm_tc_half(&gpu, shape, None, &a, &b, &mut c)?;
            2 * (m * k + k * n) + 4 * m * n
        }
        TcWork::Conv(conv) => {
            let g = conv.geom;
            let (x, w) = (gpu.alloc_zeroed::<u16>(g.x_len())?, gpu.alloc_zeroed::<u16>(g.weight_len())?);
            let mut y = gpu.alloc::<f32>(g.y_len())?;
            conv_tc_forward(&gpu, conv, None, &x, &w, &mut y)?;
            2 * (g.x_len() + g.weight_len()) + 4 * g.y_len()
        }
        TcWork::TrainingGemm(shape) => {
            gpu.declare_gemm_operand_format(shape.input.precision());
            let (a, b) = (gpu.alloc_zeroed::<f32>(m * k)?, gpu.alloc_zeroed::<f32>(k * n)?);
            let mut c = gpu.alloc::<f32>(m * n)?;
            gpu.layer_gemm(&GemmSpec::new(false, false, m, n, k), &a, &b, &mut c)?;
            4 * (m * k + k * n + m * n)
        }
        TcWork::TrainingConv(conv) => {
            let g = conv.geom;
            gpu.declare_gemm_operand_format(conv.input.precision());
            let (x, w) = (gpu.alloc_zeroed::<f32>(g.x_len())?, gpu.alloc_zeroed::<f32>(g.weight_len())?);
            gpu.conv2d_forward(&x, &w, None, &g)?;
            4 * (g.x_len() + g.weight_len() + g.y_len())
        }
    } as f64;
    // A split K adds the partial products' reduction: the case's counters and times are its
    // launches' together, its grid the GEMM's.
    let launches = driver.take_launch_stats();
    let Some((first, rest)) = launches.split_first() else {
        return Err(Error::config(format!("{}: no kernel was launched", case.name)));
    };
    let mut stats = first.clone();
    rest.iter().for_each(|l| stats.merge(l));
    let flops = case.work.flops();
    let predictions = case
        .target
        .models()
        .iter()
        .map(|model| {
            let no_cache = summed(&launches, |l| model.predict(l));
            let ideal = slower(summed(&launches, |l| model.predict_on_chip(l)), model.dram_time(compulsory_bytes));
            let ideal = if ideal.seconds > no_cache.seconds { no_cache } else { ideal };
            let fraction = |seconds: f64| flops / seconds / model.peak_tensor_16bit_flops;
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

/// The time of `launches` one after the other, each predicted by `predict`, limited by the roof
/// of the longest.
fn summed(launches: &[LaunchStats], predict: impl Fn(&LaunchStats) -> LaunchPrediction) -> LaunchPrediction {
    let each: Vec<LaunchPrediction> = launches.iter().map(predict).collect();
    let longest = each.iter().max_by(|a, b| a.seconds.total_cmp(&b.seconds)).map_or(Limit::Dram, |p| p.limit);
    LaunchPrediction { seconds: each.iter().map(|p| p.seconds).sum(), limit: longest }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sampled_prediction_counts_every_block_of_the_grid() {
        // 3 x 4 blocks of 64 rows (few tiles), all run (fewer than the sample): the exact padded work.
        let case = TcCase { name: "small".into(), work: TcWork::Gemm(TcGemm { input: TcInput::Bf16, m: 200, n: 296, k: 64 }), target: TcTarget::Ampere };
        let report = predict_tc(&case).unwrap();
        assert_eq!(report.grid, (3, 4, 1));
        assert_eq!(report.tensor_flops, 2 * 256 * 384 * 64);
        assert_eq!(report.bank_conflicts, 0);
        let rtx4090 = report.predictions.iter().find(|p| p.gpu == "RTX 4090").unwrap();
        assert!(rtx4090.seconds >= rtx4090.seconds_ideal_cache && rtx4090.fraction_of_tensor_peak > 0.0, "{rtx4090:?}");
        assert_eq!(tc_cases(2).len(), 23);
        // Turing's f16 build, predicted for a T4 alone.
        let turing = TcCase { target: TcTarget::Turing, work: TcWork::Gemm(TcGemm { input: TcInput::F16, m: 200, n: 296, k: 64 }), ..case };
        let report = predict_tc(&turing).unwrap();
        assert_eq!(report.tensor_flops, 2 * 256 * 384 * 64);
        assert_eq!(report.predictions.iter().map(|p| p.gpu).collect::<Vec<_>>(), ["T4"]);
        // Turing's tensor cores run the channels-first convolution (the last case).
        let conv = tc_cases(2).pop().unwrap();
        assert!(conv.name.contains("NCHW") && conv.target == TcTarget::Turing, "{}", conv.name);
        assert!(predict_tc(&conv).unwrap().tensor_flops > 0, "{}: no tensor-core work", conv.name);
    }

    #[test]
    fn a_sampled_convolution_prediction_counts_the_padded_tiles() {
        // 2 images of 12x12 pixels (288 pixels: 3 pixel tiles), 64 channels (one channel tile).
        let geom = ConvGeom::new(2, 64, (12, 12), 64, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
        let case = TcCase { name: "small conv".into(), work: TcWork::Conv(TcConv { input: TcInput::Bf16, geom }), target: TcTarget::Ampere };
        let report = predict_tc(&case).unwrap();
        assert_eq!(report.grid, (3, 1, 1));
        assert_eq!(report.tensor_flops, 2 * 384 * 64 * 576);
        assert_eq!(report.bank_conflicts, 0);
    }
}
