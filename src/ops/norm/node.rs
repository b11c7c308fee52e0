//! The BatchNorm2d node: batch statistics in training (optionally moving the running
//! statistics), running statistics in evaluation.

use super::{sync, BatchNormGeom};
use crate::element::Element;
use crate::error::Result;
use crate::ops::node::{chw, BackwardCtx, ForwardCtx, GradFlow, InputGrad, NodeOp, ParamId, Saved};
use crate::ops::Backend;

/// The parameters and state of one batch-norm layer, by id in the executor's store.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormParams {
    pub gamma: ParamId,
    pub beta: ParamId,
    pub running_mean: ParamId,
    pub running_var: ParamId,
}

#[derive(Clone, Debug, PartialEq)]
pub struct BatchNorm2d {
    eps: f64,
    momentum: f64,
    params: BatchNormParams,
}

impl BatchNorm2d {
    /// `eps` is checked with the input's shape, by `BatchNormGeom::new`.
    pub fn new(eps: f64, momentum: f64, params: BatchNormParams) -> Self {
        BatchNorm2d { eps, momentum, params }
    }
    pub fn eps(&self) -> f64 {
        self.eps
    }
    pub fn bn_params(&self) -> BatchNormParams {
        self.params
    }
    fn geom(&self, input: &[usize], n: usize) -> Result<BatchNormGeom> {
        let (c, h, w) = chw(input, "batch_norm2d")?;
        BatchNormGeom::new(n, c, h * w, self.eps)
    }
}

impl NodeOp for BatchNorm2d {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        self.geom(inputs[0], 1)?;
        Ok(inputs[0].to_vec())
    }
    fn describe(&self) -> String {
        "batchnorm".into()
    }
    fn params(&self) -> Vec<ParamId> {
        let p = &self.params;
        vec![p.gamma, p.beta, p.running_mean, p.running_var]
    }
    fn learnable_params(&self) -> Vec<ParamId> {
        vec![self.params.gamma, self.params.beta]
    }
    fn kept_inputs(&self, _inputs: usize, _trainable: &dyn Fn(ParamId) -> bool) -> Vec<bool> {
        vec![true]
    }
    /// The batch mean and inverse std, one value each per channel, in training.
    fn saved_bytes(&self, training: bool, output: &[usize], _n: usize, elem: usize) -> usize {
        if training {
            2 * output[0] * elem
        } else {
            0
        }
    }
    fn grad_flow(&self, _inputs: usize) -> GradFlow {
        GradFlow::AllAtOnce
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        let g = self.geom(ctx.inputs[0], ctx.n)?;
        let (backend, p) = (ctx.backend, &self.params);
        if !ctx.training {
            let v = |id| ctx.params.value(id);
            let y = backend.batch_norm2d_forward_eval(xs[0], v(p.gamma), v(p.beta), v(p.running_mean), v(p.running_var), &g)?;
            return Ok((y, Saved::None));
        }
        let values = ctx.params.values_mut(&[p.gamma, p.beta, p.running_mean, p.running_var])?;
        let [gm, bt, rm, rv]: [&mut B::Buf; 4] = values.try_into().ok().expect("four ids give four values");
        let (y, stats) = if let Some(group) = ctx.batch_norm_group {
            let running = ctx.update_running_stats.then_some((rm, rv));
            sync::forward_train(backend, group, xs[0], gm, bt, running, self.momentum, &g)?
        } else if ctx.update_running_stats {
            backend.batch_norm2d_forward_train(xs[0], gm, bt, rm, rv, self.momentum, &g)?
        } else {
            // The op always updates running statistics; give it scratch copies.
            let (mut rm_s, mut rv_s) = (ctx.scratch.copy_of(backend, rm)?, ctx.scratch.copy_of(backend, rv)?);
            let out = backend.batch_norm2d_forward_train(xs[0], gm, bt, &mut rm_s, &mut rv_s, self.momentum, &g)?;
            ctx.scratch.recycle(rm_s);
            ctx.scratch.recycle(rv_s);
            out
        };
        Ok((y, if ctx.record { Saved::BnStats(stats) } else { Saved::None }))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        let Saved::BnStats(stats) = ctx.saved else { unreachable!("a recorded BN keeps its statistics") };
        let g = self.geom(ctx.inputs[0], ctx.n)?;
        let gamma = ctx.params.value(self.params.gamma);
        let (dx, dgamma, dbeta) = match ctx.batch_norm_group {
            Some(group) => sync::backward(ctx.backend, group, dy, ctx.kept_input(0), gamma, stats, &g)?,
            None => ctx.backend.batch_norm2d_backward(dy, ctx.kept_input(0), gamma, stats, &g)?,
        };
        ctx.grads.send_input(0, InputGrad::New(dx))?;
        for (id, grad) in [(self.params.gamma, dgamma), (self.params.beta, dbeta)] {
            if ctx.grads.param_needs_grad(id) {
                ctx.grads.send_param(id, grad)?;
            }
        }
        Ok(())
    }
}
