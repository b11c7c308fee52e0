//! Conversion cases: gradient checks of both directions (each one's gradient is the other),
//! with images smaller and larger than the GPU's 32x32 tiles.

use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{FamilyCases, GradCases, GradOp};
use crate::ops::Backend;

pub struct Cases;

impl FamilyCases for Cases {
    fn grad_cases(&self, cases: &mut GradCases) {
        for &(n, c, hw) in &[(2, 3, 5), (1, 40, 33), (2, 1, 7)] {
            for to_last in [true, false] {
                let x = cases.symmetric(n * c * hw);
                let (op, config) = match to_last {
                    true => ("to_channels_last", format!("[N={n}, C={c}, HW={hw}] -> [N, HW, C]")),
                    false => ("to_channels_first", format!("[N={n}, HW={hw}, C={c}] -> [N, C, HW]")),
                };
                cases.push(op, config, LayoutGrad { n, c, hw, to_last }, vec![x], n * c * hw);
            }
        }
    }
}

struct LayoutGrad {
    n: usize,
    c: usize,
    hw: usize,
    to_last: bool,
}

impl GradOp for LayoutGrad {
    fn run<E: Element, B: Backend<E>>(&self, b: &B, inputs: &[B::Buf], dy: &B::Buf, _dy_host: &[E]) -> Result<(B::Buf, Vec<B::Buf>)> {
        let LayoutGrad { n, c, hw, to_last } = *self;
        Ok(match to_last {
            true => (b.to_channels_last(&inputs[0], n, c, hw)?, vec![b.to_channels_first(dy, n, c, hw)?]),
            false => (b.to_channels_first(&inputs[0], n, c, hw)?, vec![b.to_channels_last(dy, n, c, hw)?]),
        })
    }
    fn stored_inputs(&self) -> usize {
        1
    }
}
