//! Linear-layer cases: gradient checks with and without bias, batch 1 and > 1; and benchmarks of
//! the forward at bf16, which a GPU of compute capability 8.0 or newer runs on its tensor-core
//! training tiles (`ops::gemm::tc_train`) and times against cuBLAS's `cublasGemmEx` on bf16
//! operands.

use super::LinearGeom;
use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{BenchCases, BenchKernel, CublasGemm, FamilyCases, GradCases, GradOp, Operands, RunKernel};
use crate::ops::Backend;
use crate::precision::Precision;

pub struct Cases;

impl FamilyCases for Cases {
    fn grad_cases(&self, cases: &mut GradCases) {
        // n=20: the weight gradient's GEMM reduces over the batch in two k-slices of 16, so the
        // barrier that ends a slice is exercised (tests/sim/barrier_sweep.rs).
        for &(n, fi, fo, bias) in &[(2, 5, 3, true), (1, 7, 4, false), (4, 16, 10, true), (20, 6, 5, false)] {
            let g = LinearGeom::new(n, fi, fo).expect("gradcheck linear configs are valid");
            let mut inputs = vec![cases.symmetric(n * fi), cases.symmetric(fo * fi)];
            if bias {
                inputs.push(cases.symmetric(fo));
            }
            cases.push("linear", format!("n={n} in={fi} out={fo} bias={bias}"), LinearGrad { g, bias }, inputs, n * fo);
        }
    }

    /// A 4096^3 product (the yardstick) and a layer of 1024 -> 1024 features at the
    /// benchmark's batch. The simulator takes at most 64 rows and 512 or 64 of the output
    /// features: whole 64x64 tiles with the full K.
    fn bench_cases(&self, cases: &mut BenchCases) -> Result<()> {
        let precision = Precision::Bf16;
        let square = LinearForward { g: LinearGeom::new(4096, 4096, 4096)?, precision };
        let square_sim = LinearForward { g: LinearGeom::new(64, 4096, 512)?, precision };
        cases.add("linear_fwd bf16 tensor cores 4096x4096x4096".into(), square, square_sim, 64.0 * 8.0);
        let batch = cases.batch();
        let layer = LinearForward { g: LinearGeom::new(batch, 1024, 1024)?, precision };
        let layer_sim = LinearForward { g: LinearGeom::new(batch.min(64), 1024, 64)?, precision };
        let scale = batch as f64 / batch.min(64) as f64 * 16.0;
        cases.add(format!("linear_fwd bf16 tensor cores batch {batch}, 1024 -> 1024"), layer, layer_sim, scale);
        Ok(())
    }
}

/// y = x W^T with x and W drawn in `precision` and the backend's GEMMs declared to take it (as a
/// training run at that precision declares them), declared back to fp32 after.
struct LinearForward {
    g: LinearGeom,
    precision: Precision,
}

impl BenchKernel for LinearForward {
    fn operand_ranges(&self) -> Vec<(usize, f64, f64)> {
        let g = &self.g;
        vec![(g.n * g.in_features, -1.0, 1.0), (g.out_features * g.in_features, -1.0, 1.0)]
    }
    fn operand_precision(&self) -> Precision {
        self.precision
    }
    fn flops(&self) -> f64 {
        2.0 * (self.g.n * self.g.in_features * self.g.out_features) as f64
    }
    fn min_bytes(&self) -> f64 {
        let g = &self.g;
        4.0 * (g.n * g.in_features + g.out_features * g.in_features + g.n * g.out_features) as f64
    }
    fn reduction_len(&self) -> usize {
        self.g.in_features
    }
    fn describe(&self) -> String {
        let g = &self.g;
        format!("n={} in={} out={} {}", g.n, g.in_features, g.out_features, self.precision.name())
    }
    fn as_cublas_gemm(&self) -> Option<CublasGemm> {
        let g = &self.g;
        Some(CublasGemm { precision: self.precision, trans_a: false, trans_b: true, m: g.n, n: g.out_features, k: g.in_features })
    }
}

impl RunKernel for LinearForward {
    fn execute<E: Element, B: Backend<E>>(&self, b: &B, ops: &mut Operands<E, B>) -> Result<Vec<B::Buf>> {
        b.declare_gemm_operand_format(self.precision);
        let y = b.linear_forward(&ops.bufs[0], &ops.bufs[1], None, &self.g);
        // The backend runs the other cases, and their fp32 GEMMs stay on the SGEMM.
        b.declare_gemm_operand_format(Precision::Fp32);
        Ok(vec![y?])
    }
}

/// Inputs x, weight and (with `bias`) bias.
struct LinearGrad {
    g: LinearGeom,
    bias: bool,
}

impl GradOp for LinearGrad {
    fn run<E: Element, B: Backend<E>>(&self, b: &B, inputs: &[B::Buf], dy: &B::Buf, _dy_host: &[E]) -> Result<(B::Buf, Vec<B::Buf>)> {
        let (g, x, w) = (&self.g, &inputs[0], &inputs[1]);
        let y = b.linear_forward(x, w, inputs.get(2), g)?;
        let mut grads = vec![b.linear_backward_data(dy, w, g)?, b.linear_backward_weight(x, dy, g)?];
        if self.bias {
            grads.push(b.linear_backward_bias(dy, g)?);
        }
        Ok((y, grads))
    }
    /// x; the weight and bias are parameters.
    fn stored_inputs(&self) -> usize {
        1
    }
}
