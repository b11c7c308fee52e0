//! Linear-layer cases: gradient checks with and without bias, batch 1 and > 1.

use super::LinearGeom;
use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{FamilyCases, GradCases, GradOp};
use crate::ops::Backend;

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
