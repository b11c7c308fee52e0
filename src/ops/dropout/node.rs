//! The Dropout node: a fresh keep mask per step in training, the identity in evaluation.

use super::check_probability;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::node::{numel, BackwardCtx, ForwardCtx, InputGrad, NodeOp, Saved};
use crate::ops::Backend;
use crate::shape::Layout;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    p: f64,
}

impl Dropout {
    /// `p` in [0, 1) is the probability of dropping an element.
    pub fn new(p: f64) -> Result<Self> {
        check_probability(p)?;
        Ok(Dropout { p })
    }
    pub fn p(&self) -> f64 {
        self.p
    }
}

impl NodeOp for Dropout {
    fn reads_stored(&self, _layout: Layout) -> bool {
        true
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        Ok(inputs[0].to_vec())
    }
    fn describe(&self) -> String {
        format!("dropout {}", self.p)
    }
    fn aliases_input(&self, training: bool, _inputs: usize) -> bool {
        !training || self.p == 0.0
    }
    /// The scaled keep mask, one element per output element, in training.
    fn saved_bytes(&self, training: bool, output: &[usize], n: usize, elem: usize) -> usize {
        if training && self.p > 0.0 {
            n * numel(output) * elem
        } else {
            0
        }
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        let step_seed = ctx.step_seed.ok_or_else(|| Error::config("dropout in training needs the step's seed on the device"))?;
        let (y, mask) = ctx.backend.dropout_forward(xs[0], self.p, step_seed, ctx.node as u64)?;
        Ok((y, if ctx.record { Saved::Mask(mask) } else { Saved::None }))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        match ctx.saved {
            Saved::Mask(mask) => {
                let dx = ctx.backend.dropout_backward(dy, mask)?;
                ctx.grads.send_input(0, InputGrad::New(dx))
            }
            _ => ctx.grads.send_input(0, InputGrad::PassDy),
        }
    }
}
