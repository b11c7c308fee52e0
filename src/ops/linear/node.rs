//! The Linear node: a dense layer over the flattened per-sample input.

use super::LinearGeom;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::node::{numel, BackwardCtx, ForwardCtx, InputGrad, NodeOp, ParamId, Saved};
use crate::ops::Backend;
use crate::shape::Layout;

/// [F] -> [out_features]; any input shape is flattened per sample.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    out_features: usize,
    weight: ParamId,
    bias: Option<ParamId>,
}

impl Linear {
    pub fn new(out_features: usize, weight: ParamId, bias: Option<ParamId>) -> Result<Self> {
        if out_features == 0 {
            return Err(Error::shape("linear needs at least one output feature"));
        }
        Ok(Linear { out_features, weight, bias })
    }
    fn geom(&self, input: &[usize], n: usize) -> Result<LinearGeom> {
        LinearGeom::new(n, numel(input), self.out_features)
    }
}

impl NodeOp for Linear {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        self.geom(inputs[0], 1)?;
        Ok(vec![self.out_features])
    }
    fn describe(&self) -> String {
        "linear".into()
    }
    fn macs(&self, inputs: &[&[usize]], output: &[usize]) -> u64 {
        (numel(output) * numel(inputs[0])) as u64
    }
    fn params(&self) -> Vec<ParamId> {
        std::iter::once(self.weight).chain(self.bias).collect()
    }
    /// Its GEMMs and bias gradient read x and dy, and write y and dx, in their stored formats
    /// (`LinearOps` on the GPU), whatever the layout.
    fn reads_stored(&self, _layout: Layout) -> bool {
        true
    }
    /// dx needs only the weight; the input is kept for the weight gradient.
    fn kept_inputs(&self, _inputs: usize, trainable: &dyn Fn(ParamId) -> bool) -> Vec<bool> {
        vec![trainable(self.weight)]
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        let g = self.geom(ctx.inputs[0], ctx.n)?;
        let b = self.bias.map(|b| ctx.params.value(b));
        Ok((ctx.backend.linear_forward(xs[0], ctx.params.value(self.weight), b, &g)?, Saved::None))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        let g = self.geom(ctx.inputs[0], ctx.n)?;
        let backend = ctx.backend;
        if ctx.grads.input_needs_grad(0) {
            let dx = backend.linear_backward_data(dy, ctx.params.value(self.weight), &g)?;
            ctx.grads.send_input(0, InputGrad::New(dx))?;
        }
        if ctx.grads.param_needs_grad(self.weight) {
            let dw = backend.linear_backward_weight(ctx.kept_input(0), dy, &g)?;
            ctx.grads.send_param(self.weight, dw)?;
        }
        if let Some(bias) = self.bias.filter(|&b| ctx.grads.param_needs_grad(b)) {
            ctx.grads.send_param(bias, backend.linear_backward_bias(dy, &g)?)?;
        }
        Ok(())
    }
}
