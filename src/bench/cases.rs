//! The benchmarked layer shapes: GEMM square and skinny, im2col/col2im and convolution at
//! ResNet-18 CIFAR shapes, MobileNetV2's pointwise and depthwise convolutions, pooling, batch
//! norm, softmax-cross-entropy and the optimisers.
//!
//! Each case has a full shape (timed on the CPU and on a GPU) and a smaller simulator shape: the
//! simulator interprets every instruction, so it runs one image instead of the batch (a slice of
//! rows or columns for GEMM, of elements for the optimisers). Every one of these kernels splits
//! its work along that axis into independent blocks doing the same per-block work, so its
//! counters grow linearly with it; `sim_scale` is that ratio, and the prediction multiplies the
//! simulated counters by it.

use super::ops::KernelOp;
use crate::error::{Error, Result};
use crate::ops::{AdaptivePoolGeom, BatchNormGeom, ConvGeom, PoolGeom};

#[derive(Clone, Debug)]
pub struct BenchCase {
    /// Unique, e.g. "conv_fwd resnet18 64x32x32 3x3".
    pub name: String,
    /// The op family (kernels/<family>.cu).
    pub family: &'static str,
    pub full: KernelOp,
    pub sim: KernelOp,
    /// Full-shape counters = simulated counters * sim_scale.
    pub sim_scale: f64,
}

/// The ResNet-18 parameter count: the optimiser cases update a tensor of this many values.
const RESNET18_PARAMS: usize = 11_689_512;
/// The optimiser cases simulate this fraction of it.
const OPTIM_SIM_DIVISOR: usize = 16;

fn conv(n: usize, c_in: usize, hw: usize, c_out: usize, k: usize, stride: usize, groups: usize) -> Result<ConvGeom> {
    ConvGeom::new(n, c_in, (hw, hw), c_out, (k, k), (stride, stride), (k / 2, k / 2), (1, 1), groups)
}

fn pool(n: usize, c: usize, hw: usize, k: usize, stride: usize, pad: usize) -> Result<PoolGeom> {
    PoolGeom::new(n, c, (hw, hw), (k, k), (stride, stride), (pad, pad), false, true)
}

/// A layer's convolution geometry for a given batch size.
type GeomAtBatch = fn(usize) -> Result<ConvGeom>;

/// Every case with the batch-dependent shapes at `batch` images.
pub fn kernel_cases(batch: usize) -> Result<Vec<BenchCase>> {
    if batch == 0 {
        return Err(Error::config("--batch must be at least 1"));
    }
    let mut cases = Vec::new();
    let scale = batch as f64;
    let mut add = |name: String, family: &'static str, full: KernelOp, sim: KernelOp, sim_scale: f64| {
        cases.push(BenchCase { name, family, full, sim, sim_scale });
    };

    // GEMM: square; a linear layer's forward (x * W^T, skinny in M = batch) and its weight
    // gradient (dy^T * x, skinny in K = batch). The simulator takes a 64-wide slice (one block
    // tile) of the long M or N axis.
    let gemm = |trans_a, trans_b, m, n, k| KernelOp::Gemm { trans_a, trans_b, m, n, k };
    add("gemm_nn square 1024^3".into(), "gemm", gemm(false, false, 1024, 1024, 1024), gemm(false, false, 64, 1024, 1024), 16.0);
    add(
        "gemm_nt skinny 128x4096x4096 (fc fwd)".into(),
        "gemm",
        gemm(false, true, 128, 4096, 4096),
        gemm(false, true, 128, 64, 4096),
        64.0,
    );
    add(
        "gemm_tn skinny 4096x4096x128 (fc dW)".into(),
        "gemm",
        gemm(true, false, 4096, 4096, 128),
        gemm(true, false, 64, 4096, 128),
        64.0,
    );

    // ResNet-18 on CIFAR: the 3x3 convolutions of its three widest stages.
    for (c, hw) in [(64, 32), (128, 16), (256, 8)] {
        let full = conv(batch, c, hw, c, 3, 1, 1)?;
        let sim = conv(1, c, hw, c, 3, 1, 1)?;
        let shape = format!("resnet18 {c}x{hw}x{hw} 3x3");
        if c == 64 {
            add(format!("im2col {shape}"), "conv", KernelOp::Im2col(full), KernelOp::Im2col(sim), scale);
            add(format!("col2im {shape}"), "conv", KernelOp::Col2im(full), KernelOp::Col2im(sim), scale);
        }
        add(format!("conv_fwd {shape}"), "conv", KernelOp::ConvForward(full), KernelOp::ConvForward(sim), scale);
        add(format!("conv_bwd_data {shape}"), "conv", KernelOp::ConvBackwardData(full), KernelOp::ConvBackwardData(sim), scale);
        add(format!("conv_bwd_filter {shape}"), "conv", KernelOp::ConvBackwardFilter(full), KernelOp::ConvBackwardFilter(sim), scale);
    }

    // MobileNetV2 at 224x224, the 56x56 stage (24 channels, expansion 6): 1x1 expand and
    // project, the 3x3 depthwise convolution, and the stride-2 depthwise that leaves the stage.
    let mobilenet: [(&str, GeomAtBatch); 4] = [
        ("1x1 expand 24->144 56x56", |n| conv(n, 24, 56, 144, 1, 1, 1)),
        ("1x1 project 144->24 56x56", |n| conv(n, 144, 56, 24, 1, 1, 1)),
        ("dw 3x3 144x56x56", |n| conv(n, 144, 56, 144, 3, 1, 144)),
        ("dw 3x3 s2 144x56x56", |n| conv(n, 144, 56, 144, 3, 2, 144)),
    ];
    for (shape, geom) in mobilenet {
        let (full, sim) = (geom(batch)?, geom(1)?);
        let shape = format!("mobilenet_v2 {shape}");
        add(format!("conv_fwd {shape}"), "conv", KernelOp::ConvForward(full), KernelOp::ConvForward(sim), scale);
        add(format!("conv_bwd_data {shape}"), "conv", KernelOp::ConvBackwardData(full), KernelOp::ConvBackwardData(sim), scale);
        add(format!("conv_bwd_filter {shape}"), "conv", KernelOp::ConvBackwardFilter(full), KernelOp::ConvBackwardFilter(sim), scale);
    }

    // Pooling: ResNet's ImageNet stem max-pool, an Inception-style 3x3 average pool, and the
    // global average pool before the classifier.
    let (max_full, max_sim) = (pool(batch, 64, 112, 3, 2, 1)?, pool(1, 64, 112, 3, 2, 1)?);
    add("max_pool_fwd 64x112x112 3x3 s2".into(), "pool", KernelOp::MaxPoolForward(max_full), KernelOp::MaxPoolForward(max_sim), scale);
    add("max_pool_bwd 64x112x112 3x3 s2".into(), "pool", KernelOp::MaxPoolBackward(max_full), KernelOp::MaxPoolBackward(max_sim), scale);
    let (avg_full, avg_sim) = (pool(batch, 288, 35, 3, 1, 1)?, pool(1, 288, 35, 3, 1, 1)?);
    add("avg_pool_fwd 288x35x35 3x3 s1".into(), "pool", KernelOp::AvgPoolForward(avg_full), KernelOp::AvgPoolForward(avg_sim), scale);
    add("avg_pool_bwd 288x35x35 3x3 s1".into(), "pool", KernelOp::AvgPoolBackward(avg_full), KernelOp::AvgPoolBackward(avg_sim), scale);
    let (gap_full, gap_sim) = (AdaptivePoolGeom::new(batch, 512, (7, 7), (1, 1))?, AdaptivePoolGeom::new(1, 512, (7, 7), (1, 1))?);
    add("global_avg_pool_fwd 512x7x7".into(), "pool", KernelOp::AdaptiveAvgPoolForward(gap_full), KernelOp::AdaptiveAvgPoolForward(gap_sim), scale);
    add("global_avg_pool_bwd 512x7x7".into(), "pool", KernelOp::AdaptiveAvgPoolBackward(gap_full), KernelOp::AdaptiveAvgPoolBackward(gap_sim), scale);

    // Batch norm after the ResNet-18 CIFAR convolutions (the first and the last stage).
    for (c, hw) in [(64, 32), (256, 8)] {
        let (full, sim) = (BatchNormGeom::new(batch, c, hw * hw, 1e-5)?, BatchNormGeom::new(1, c, hw * hw, 1e-5)?);
        let shape = format!("{c}x{hw}x{hw}");
        add(format!("bn_fwd_train {shape}"), "norm", KernelOp::BatchNormForwardTrain(full), KernelOp::BatchNormForwardTrain(sim), scale);
        add(format!("bn_bwd {shape}"), "norm", KernelOp::BatchNormBackward(full), KernelOp::BatchNormBackward(sim), scale);
    }

    // Softmax-cross-entropy over ImageNet's 1000 classes, one row per image.
    let rows = 4 * batch;
    add(
        format!("softmax_ce {rows}x1000"),
        "loss",
        KernelOp::SoftmaxCrossEntropy { n: rows, classes: 1000 },
        KernelOp::SoftmaxCrossEntropy { n: 4, classes: 1000 },
        batch as f64,
    );

    // One optimiser step over a ResNet-18-sized parameter tensor.
    let sim_len = RESNET18_PARAMS.div_ceil(OPTIM_SIM_DIVISOR);
    let optim_scale = RESNET18_PARAMS as f64 / sim_len as f64;
    add("sgd_momentum resnet18 params".into(), "optim", KernelOp::Sgd { len: RESNET18_PARAMS }, KernelOp::Sgd { len: sim_len }, optim_scale);
    add("adam resnet18 params".into(), "optim", KernelOp::Adam { len: RESNET18_PARAMS }, KernelOp::Adam { len: sim_len }, optim_scale);
    Ok(cases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_the_sim_scale_matches_the_flop_ratio() {
        let cases = kernel_cases(8).unwrap();
        let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), cases.len());
        for c in &cases {
            let (full, sim) = (c.full.flops(), c.sim.flops());
            if full > 0.0 {
                assert!((full / sim - c.sim_scale).abs() < 1e-9 * c.sim_scale, "{}: {full} / {sim} vs {}", c.name, c.sim_scale);
            }
        }
        assert!(kernel_cases(0).is_err());
    }
}
