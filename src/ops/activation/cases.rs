//! Activation cases: gradient checks of every activation, with inputs kept away from its kinks.

use super::Activation;
use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{FamilyCases, GradCases, GradOp};
use crate::ops::Backend;

pub struct Cases;

impl FamilyCases for Cases {
    fn grad_cases(&self, cases: &mut GradCases) {
        for act in Activation::ALL {
            let (kinks, scale): (&[f64], f64) = match act {
                Activation::Relu => (&[0.0], 2.0),
                Activation::Relu6 => (&[0.0, 6.0], 8.0),
                Activation::Hardswish => (&[-3.0, 3.0], 5.0),
                Activation::Sigmoid | Activation::Silu => (&[], 6.0),
            };
            for len in [37, 2 * 3 * 5 * 5] {
                let x = cases.away_from(len, scale, kinks, 1e-3);
                cases.push(act.name(), format!("len={len} range=±{scale}"), ActivationGrad(act), vec![x], len);
            }
        }
    }
}

struct ActivationGrad(Activation);

impl GradOp for ActivationGrad {
    fn run<E: Element, B: Backend<E>>(&self, b: &B, inputs: &[B::Buf], dy: &B::Buf, _dy_host: &[E]) -> Result<(B::Buf, Vec<B::Buf>)> {
        Ok((b.activation_forward(self.0, &inputs[0])?, vec![b.activation_backward(self.0, &inputs[0], dy)?]))
    }
    fn stored_inputs(&self) -> usize {
        1
    }
}
