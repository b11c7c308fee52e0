//! The conversion node `graph::layout` places where a channels-last run's data enters and
//! leaves its image part. Its backward is the opposite conversion.

use crate::element::Element;
use crate::error::Result;
use crate::ops::node::{chw, BackwardCtx, ForwardCtx, InputGrad, NodeOp, Saved};
use crate::ops::Backend;
use crate::shape::Layout;

/// A [C, H, W] tensor moved into layout `to` from the other one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Relayout {
    pub to: Layout,
}

impl Relayout {
    /// `x` ([N, C, H, W] in the other layout) moved into `to`.
    fn convert<E: Element, B: Backend<E>>(to: Layout, backend: &B, x: &B::Buf, n: usize, shape: &[usize]) -> Result<B::Buf> {
        let (c, h, w) = chw(shape, "a layout conversion")?;
        match to {
            Layout::Nhwc => backend.to_channels_last(x, n, c, h * w),
            Layout::Nchw => backend.to_channels_first(x, n, c, h * w),
        }
    }
}

impl NodeOp for Relayout {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        chw(inputs[0], "a layout conversion")?;
        Ok(inputs[0].to_vec())
    }
    fn describe(&self) -> String {
        format!("to {}", self.to.name())
    }
    fn reads_stored(&self, _layout: Layout) -> bool {
        true
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        Ok((Self::convert(self.to, ctx.backend, xs[0], ctx.n, ctx.inputs[0])?, Saved::None))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        if !ctx.grads.input_needs_grad(0) {
            return Ok(());
        }
        let from = match self.to {
            Layout::Nhwc => Layout::Nchw,
            Layout::Nchw => Layout::Nhwc,
        };
        let dx = Self::convert(from, ctx.backend, dy, ctx.n, ctx.inputs[0])?;
        ctx.grads.send_input(0, InputGrad::New(dx))
    }
}
