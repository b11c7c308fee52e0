//! GEMM benchmark cases: square, a linear layer's forward (x * W^T, skinny in M = batch) and
//! weight gradient (dy^T * x, skinny in K = batch), and ResNet-18/CIFAR convolution weight
//! gradients (dy * cols^T: M = C_out, N = C_in * 9, K = images * H * W) with and without split-K.
//! The simulator takes a 64-wide slice (one block tile) of the long M or N axis. Each case runs
//! the K split that `SplitK::Auto` picks for its full shape on an RTX 3090 (or the one its name
//! forces), on the simulator's slice too, whose own grid would plan differently. (GEMM's
//! gradients are checked through linear and conv.)

use super::{GemmSpec, SplitK};
use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{BenchCases, BenchKernel, CublasGemm, FamilyCases, Operands, RunKernel};
use crate::ops::Backend;
use crate::precision::Precision;
use crate::sim::roofline::RTX_3090;

pub struct Cases;

impl FamilyCases for Cases {
    fn bench_cases(&self, cases: &mut BenchCases) -> Result<()> {
        let planned = |trans_a, trans_b, m, n, k| {
            let spec = GemmSpec::<f32>::new(trans_a, trans_b, m, n, k);
            GemmKernel { trans_a, trans_b, m, n, k, splits: spec.k_split(SplitK::Auto, RTX_3090.sms as usize).splits }
        };
        let slice = |full: GemmKernel, m, n| GemmKernel { m, n, ..full };
        let square = planned(false, false, 1024, 1024, 1024);
        cases.add("gemm_nn square 1024^3".into(), square, slice(square, 64, 1024), 16.0);
        let fc_fwd = planned(false, true, 128, 4096, 4096);
        cases.add("gemm_nt skinny 128x4096x4096 (fc fwd)".into(), fc_fwd, slice(fc_fwd, 128, 64), 64.0);
        let fc_dw = planned(true, false, 4096, 4096, 128);
        cases.add("gemm_tn skinny 4096x4096x128 (fc dW)".into(), fc_dw, slice(fc_dw, 64, 4096), 64.0);
        // ResNet-18/CIFAR weight gradients: layer 1 (9 tiles), split as planned; layer 4 (576
        // tiles, under two waves), which the planner leaves whole, forced into 2 slices.
        let images = cases.batch();
        let layer1 = planned(false, true, 64, 576, images * 32 * 32);
        let layer4 = planned(false, true, 512, 4608, images * 4 * 4);
        for (layer, hw, full, forced) in [("layer1 64x576", "32x32", layer1, layer1.splits), ("layer4 512x4608", "4x4", layer4, 2)] {
            let mut variants = vec![1, forced];
            variants.dedup();
            for splits in variants {
                let split_k = if splits == 1 { "no split-K".to_string() } else { format!("split-K x{splits}") };
                let full = GemmKernel { splits, ..full };
                let name = format!("gemm_nt conv dW resnet18 {layer}, K={images}x{hw}, {split_k}");
                cases.add(name, full, slice(full, full.m, 64), full.n as f64 / 64.0);
            }
        }
        Ok(())
    }
}

/// C = op(A) * op(B), overwriting C (operand 2), with K in at most `splits` slices on a GPU.
#[derive(Clone, Copy)]
struct GemmKernel {
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
    splits: usize,
}

impl BenchKernel for GemmKernel {
    fn operand_ranges(&self) -> Vec<(usize, f64, f64)> {
        let GemmKernel { m, n, k, .. } = *self;
        vec![(m * k, -1.0, 1.0), (k * n, -1.0, 1.0), (m * n, -1.0, 1.0)]
    }
    fn written_operands(&self) -> &'static [usize] {
        &[2]
    }
    fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }
    fn min_bytes(&self) -> f64 {
        4.0 * (self.m * self.k + self.k * self.n + self.m * self.n) as f64
    }
    fn reduction_len(&self) -> usize {
        self.k
    }
    fn describe(&self) -> String {
        let GemmKernel { trans_a, trans_b, m, n, k, splits } = *self;
        format!("m={m} n={n} k={k} trans_a={trans_a} trans_b={trans_b} splits={splits}")
    }
    fn as_cublas_gemm(&self) -> Option<CublasGemm> {
        let GemmKernel { trans_a, trans_b, m, n, k, .. } = *self;
        Some(CublasGemm { precision: Precision::Fp32, trans_a, trans_b, m, n, k })
    }
}

impl RunKernel for GemmKernel {
    fn execute<E: Element, B: Backend<E>>(&self, b: &B, ops: &mut Operands<E, B>) -> Result<Vec<B::Buf>> {
        let (a, rest) = ops.bufs.split_at_mut(1);
        let (bm, c) = rest.split_at_mut(1);
        let spec = GemmSpec::new(self.trans_a, self.trans_b, self.m, self.n, self.k);
        b.gemm_split(&spec, SplitK::Splits(self.splits), &a[0], &bm[0], &mut c[0])?;
        Ok(vec![])
    }
}
