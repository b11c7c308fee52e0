//! An activation is its own node: element-wise, the output has the input's shape.

use super::Activation;
use crate::element::Element;
use crate::error::Result;
use crate::ops::node::{BackwardCtx, ForwardCtx, InputGrad, NodeOp, ParamId, Saved};
use crate::ops::Backend;
use crate::shape::Layout;

impl NodeOp for Activation {
    fn reads_stored(&self, _layout: Layout) -> bool {
        true
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        Ok(inputs[0].to_vec())
    }
    fn describe(&self) -> String {
        self.name().into()
    }
    fn kept_inputs(&self, _inputs: usize, _trainable: &dyn Fn(ParamId) -> bool) -> Vec<bool> {
        vec![true]
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        Ok((ctx.backend.activation_forward(*self, xs[0])?, Saved::None))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        let dx = ctx.backend.activation_backward(*self, ctx.kept_input(0), dy)?;
        ctx.grads.send_input(0, InputGrad::New(dx))
    }
}
