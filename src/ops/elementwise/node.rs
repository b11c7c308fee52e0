//! The element-wise nodes: sum and product of two same-shaped inputs, and squeeze-excitation's
//! per-channel gating.

use super::ChannelBroadcast;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::node::{chw, BackwardCtx, ForwardCtx, GradFlow, InputGrad, NodeOp, ParamId, Saved};
use crate::ops::Backend;
use crate::shape::Layout;

fn same_shape(inputs: &[&[usize]]) -> Result<Vec<usize>> {
    let (a, b) = (inputs[0], inputs[1]);
    if a != b {
        return Err(Error::shape(format!("operand shapes {a:?} and {b:?} differ")));
    }
    Ok(a.to_vec())
}

/// inputs[0] + inputs[1], same shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Add;

impl NodeOp for Add {
    fn reads_stored(&self, _layout: Layout) -> bool {
        true
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        same_shape(inputs)
    }
    fn describe(&self) -> String {
        "add".into()
    }
    fn grad_flow(&self, _inputs: usize) -> GradFlow {
        GradFlow::PassDy
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        Ok((ctx.backend.add(xs[0], xs[1])?, Saved::None))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, _dy: &B::Buf) -> Result<()> {
        ctx.grads.send_input(0, InputGrad::PassDy)?;
        ctx.grads.send_input(1, InputGrad::PassDy)
    }
}

/// inputs[0] * inputs[1], same shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mul;

impl NodeOp for Mul {
    fn reads_stored(&self, _layout: Layout) -> bool {
        true
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        same_shape(inputs)
    }
    fn describe(&self) -> String {
        "mul".into()
    }
    fn kept_inputs(&self, _inputs: usize, _trainable: &dyn Fn(ParamId) -> bool) -> Vec<bool> {
        vec![true, true]
    }
    fn grad_flow(&self, _inputs: usize) -> GradFlow {
        GradFlow::AllAtOnce
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        Ok((ctx.backend.mul(xs[0], xs[1])?, Saved::None))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        let (da, db) = ctx.backend.mul_backward(ctx.kept_input(0), ctx.kept_input(1), dy)?;
        ctx.grads.send_input(0, InputGrad::New(da))?;
        ctx.grads.send_input(1, InputGrad::New(db))
    }
}

/// inputs[0] [C, H, W] times inputs[1] [C, 1, 1] broadcast per sample (squeeze-excitation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MulChannel;

impl MulChannel {
    fn geom(input: &[usize], n: usize, layout: Layout) -> Result<ChannelBroadcast> {
        let (c, h, w) = chw(input, "mul_channel")?;
        Ok(ChannelBroadcast { n, c, hw: h * w, per_sample: true, layout })
    }
}

impl NodeOp for MulChannel {
    fn reads_stored(&self, _layout: Layout) -> bool {
        true
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let (c, _, _) = chw(inputs[0], "mul_channel")?;
        if inputs[1] != [c, 1, 1] {
            return Err(Error::shape(format!("gate shape {:?} must be [{c}, 1, 1]", inputs[1])));
        }
        Ok(inputs[0].to_vec())
    }
    fn describe(&self) -> String {
        "mul channel".into()
    }
    fn kept_inputs(&self, _inputs: usize, _trainable: &dyn Fn(ParamId) -> bool) -> Vec<bool> {
        vec![true, true]
    }
    fn grad_flow(&self, _inputs: usize) -> GradFlow {
        GradFlow::AllAtOnce
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        let g = Self::geom(ctx.inputs[0], ctx.n, ctx.layout)?;
        Ok((ctx.backend.mul_channel(xs[0], xs[1], &g)?, Saved::None))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        let g = Self::geom(ctx.inputs[0], ctx.n, ctx.layout)?;
        let (dx, ds) = ctx.backend.mul_channel_backward(ctx.kept_input(0), ctx.kept_input(1), dy, &g)?;
        ctx.grads.send_input(0, InputGrad::New(dx))?;
        ctx.grads.send_input(1, InputGrad::New(ds))
    }
}
