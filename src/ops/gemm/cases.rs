//! GEMM benchmark cases: square, and a linear layer's forward (x * W^T, skinny in M = batch) and
//! weight gradient (dy^T * x, skinny in K = batch). The simulator takes a 64-wide slice (one
//! block tile) of the long M or N axis. (GEMM's gradients are checked through linear and conv.)

use super::GemmSpec;
use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{BenchCases, BenchKernel, FamilyCases, Operands, RunKernel};
use crate::ops::Backend;

pub struct Cases;

impl FamilyCases for Cases {
    fn bench_cases(&self, cases: &mut BenchCases) -> Result<()> {
        let gemm = |trans_a, trans_b, m, n, k| GemmKernel { trans_a, trans_b, m, n, k };
        cases.add("gemm_nn square 1024^3".into(), gemm(false, false, 1024, 1024, 1024), gemm(false, false, 64, 1024, 1024), 16.0);
        cases.add("gemm_nt skinny 128x4096x4096 (fc fwd)".into(), gemm(false, true, 128, 4096, 4096), gemm(false, true, 128, 64, 4096), 64.0);
        cases.add("gemm_tn skinny 4096x4096x128 (fc dW)".into(), gemm(true, false, 4096, 4096, 128), gemm(true, false, 64, 4096, 128), 64.0);
        Ok(())
    }
}

/// C = op(A) * op(B), overwriting C (operand 2).
#[derive(Clone, Copy)]
struct GemmKernel {
    trans_a: bool,
    trans_b: bool,
    m: usize,
    n: usize,
    k: usize,
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
        let GemmKernel { trans_a, trans_b, m, n, k } = *self;
        format!("m={m} n={n} k={k} trans_a={trans_a} trans_b={trans_b}")
    }
    fn as_sgemm(&self) -> Option<(bool, bool, usize, usize, usize)> {
        Some((self.trans_a, self.trans_b, self.m, self.n, self.k))
    }
}

impl RunKernel for GemmKernel {
    fn execute<E: Element, B: Backend<E>>(&self, b: &B, ops: &mut Operands<E, B>) -> Result<Vec<B::Buf>> {
        let (a, rest) = ops.bufs.split_at_mut(1);
        let (bm, c) = rest.split_at_mut(1);
        b.gemm(&GemmSpec::new(self.trans_a, self.trans_b, self.m, self.n, self.k), &a[0], &bm[0], &mut c[0])?;
        Ok(vec![])
    }
}
