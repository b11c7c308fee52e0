//! Flatten's gradient checks: forward and backward move no data, so the device copy stands for
//! both and the check confirms gradients pass through unchanged.

use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{FamilyCases, GradCases, GradOp};
use crate::ops::Backend;

pub struct Cases;

impl FamilyCases for Cases {
    fn grad_cases(&self, cases: &mut GradCases) {
        for len in [2 * 3 * 2 * 2, 5] {
            let x = cases.symmetric(len);
            cases.push("flatten", format!("[N, C, H, W] with {len} elements -> [N, C*H*W]"), FlattenGrad, vec![x], len);
        }
    }
}

struct FlattenGrad;

impl GradOp for FlattenGrad {
    fn run<E: Element, B: Backend<E>>(&self, b: &B, inputs: &[B::Buf], dy: &B::Buf, _dy_host: &[E]) -> Result<(B::Buf, Vec<B::Buf>)> {
        Ok((b.copy_buf(&inputs[0])?, vec![b.copy_buf(dy)?]))
    }
}
