//! Nodes that compute nothing of their own: the graph's input and Flatten, a view of its input.
//! No backend trait and no kernels.

pub mod cases;

use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::node::{numel, BackwardCtx, ForwardCtx, InputGrad, NodeOp, Saved};
use crate::ops::Backend;

/// The image batch; its per-sample shape [C, H, W] is given when the graph is built.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Input;

impl NodeOp for Input {
    fn output_shape(&self, _inputs: &[&[usize]]) -> Result<Vec<usize>> {
        Err(Error::shape("the input node's shape is given, not derived from inputs"))
    }
    fn describe(&self) -> String {
        "input".into()
    }
    fn forward<E: Element, B: Backend<E>>(&self, _ctx: &mut ForwardCtx<'_, E, B>, _xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        unreachable!("the input node is never computed")
    }
    fn backward<E: Element, B: Backend<E>>(&self, _ctx: &mut BackwardCtx<'_, E, B>, _dy: &B::Buf) -> Result<()> {
        unreachable!("the input has no backward")
    }
}

/// [C, H, W] -> [C*H*W]: the input's buffer itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flatten;

impl NodeOp for Flatten {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        Ok(vec![numel(inputs[0])])
    }
    fn describe(&self) -> String {
        "flatten".into()
    }
    fn aliases_input(&self, _training: bool, _inputs: usize) -> bool {
        true
    }
    fn forward<E: Element, B: Backend<E>>(&self, _ctx: &mut ForwardCtx<'_, E, B>, _xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        unreachable!("flatten aliases its input (aliases_input)")
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, _dy: &B::Buf) -> Result<()> {
        ctx.grads.send_input(0, InputGrad::PassDy)
    }
}
