//! The BatchNorm2d node: batch statistics in training (optionally moving the running
//! statistics), running statistics in evaluation; and BatchNormAct, batch norm -> (residual add)
//! -> activation as one node.

use super::{sync, BatchNormGeom};
use crate::element::Element;
use crate::error::Result;
use crate::ops::node::{channel_rows, chw, BackwardCtx, ForwardCtx, GradFlow, InputGrad, NodeOp, ParamId, Saved};
use crate::ops::{Activation, Backend};
use crate::shape::Layout;

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
    fn geom(&self, input: &[usize], n: usize, layout: Layout) -> Result<BatchNormGeom> {
        let (n, c, hw) = channel_rows(layout, n, chw(input, "batch_norm2d")?);
        BatchNormGeom::new(n, c, hw, self.eps)
    }

    /// Runs a training forward `op(backend, gamma, beta, running_mean, running_var)` that moves
    /// the running statistics, on scratch copies of them when this step must not move them.
    fn train_forward<E: Element, B: Backend<E>, T>(
        &self,
        ctx: &mut ForwardCtx<'_, E, B>,
        op: impl FnOnce(&B, &B::Buf, &B::Buf, &mut B::Buf, &mut B::Buf) -> Result<T>,
    ) -> Result<T> {
        let (backend, p) = (ctx.backend, &self.params);
        let values = ctx.params.values_mut(&[p.gamma, p.beta, p.running_mean, p.running_var])?;
        let [gm, bt, rm, rv]: [&mut B::Buf; 4] = values.try_into().ok().expect("four ids give four values");
        if ctx.update_running_stats {
            return op(backend, gm, bt, rm, rv);
        }
        // The ops always update running statistics; give them scratch copies.
        let (mut rm_s, mut rv_s) = (ctx.scratch.copy_of(backend, rm)?, ctx.scratch.copy_of(backend, rv)?);
        let out = op(backend, gm, bt, &mut rm_s, &mut rv_s);
        ctx.scratch.recycle(rm_s);
        ctx.scratch.recycle(rv_s);
        out
    }

    /// Sends dgamma and dbeta to the parameters that need them.
    fn send_param_grads<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dgamma: B::Buf, dbeta: B::Buf) -> Result<()> {
        for (id, grad) in [(self.params.gamma, dgamma), (self.params.beta, dbeta)] {
            if ctx.grads.param_needs_grad(id) {
                ctx.grads.send_param(id, grad)?;
            }
        }
        Ok(())
    }
}

impl NodeOp for BatchNorm2d {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        self.geom(inputs[0], 1, Layout::Nchw)?;
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
    /// Every kernel of both layouts reads and writes activations in their stored format; the
    /// synchronised backward, which goes on through elementwise kernels, widens its inputs first.
    fn reads_stored(&self, _layout: Layout) -> bool {
        true
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        let g = self.geom(ctx.inputs[0], ctx.n, ctx.layout)?;
        let (backend, p) = (ctx.backend, &self.params);
        if !ctx.training {
            let v = |id| ctx.params.value(id);
            let y = backend.batch_norm2d_forward_eval(xs[0], v(p.gamma), v(p.beta), v(p.running_mean), v(p.running_var), &g)?;
            return Ok((y, Saved::None));
        }
        let (y, stats) = match ctx.batch_norm_group {
            Some(group) => {
                let values = ctx.params.values_mut(&[p.gamma, p.beta, p.running_mean, p.running_var])?;
                let [gm, bt, rm, rv]: [&mut B::Buf; 4] = values.try_into().ok().expect("four ids give four values");
                let running = ctx.update_running_stats.then_some((rm, rv));
                sync::forward_train(backend, group, xs[0], gm, bt, running, self.momentum, &g)?
            }
            None => self.train_forward(ctx, |backend, gamma, beta, rm, rv| {
                backend.batch_norm2d_forward_train(xs[0], gamma, beta, rm, rv, self.momentum, &g)
            })?,
        };
        Ok((y, if ctx.record { Saved::BnStats(stats) } else { Saved::None }))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        let Saved::BnStats(stats) = ctx.saved else { unreachable!("a recorded BN keeps its statistics") };
        let g = self.geom(ctx.inputs[0], ctx.n, ctx.layout)?;
        let gamma = ctx.params.value(self.params.gamma);
        let (dx, dgamma, dbeta) = match ctx.batch_norm_group {
            Some(group) => {
                // The synchronised backward's per-channel correction runs other families'
                // kernels, which read f32; the executor stores its f32 result rounded once.
                let (wide_dy, wide_x) = (ctx.backend.widened(dy)?, ctx.backend.widened(ctx.kept_input(0))?);
                let x = wide_x.as_ref().unwrap_or(ctx.kept_input(0));
                sync::backward(ctx.backend, group, wide_dy.as_ref().unwrap_or(dy), x, gamma, stats, &g)?
            }
            None => ctx.backend.batch_norm2d_backward(dy, ctx.kept_input(0), gamma, stats, &g)?,
        };
        ctx.grads.send_input(0, InputGrad::New(dx))?;
        self.send_param_grads(ctx, dgamma, dbeta)
    }
}

/// Batch norm -> (residual add) -> activation as one node, for training (`graph::fuse`): inputs
/// [x] or [x, residual], output act(bn(x) + residual). Backward reads x and the residual and
/// recomputes the pre-activation, so neither the batch norm's output nor the sum is kept.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormAct {
    bn: BatchNorm2d,
    activation: Activation,
    residual: bool,
}

impl BatchNormAct {
    pub fn new(bn: BatchNorm2d, activation: Activation, residual: bool) -> Self {
        BatchNormAct { bn, activation, residual }
    }
    pub fn batch_norm(&self) -> &BatchNorm2d {
        &self.bn
    }
    pub fn activation(&self) -> Activation {
        self.activation
    }
    pub fn has_residual(&self) -> bool {
        self.residual
    }
}

impl NodeOp for BatchNormAct {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        if self.residual && inputs[0] != inputs[1] {
            return Err(crate::error::Error::shape(format!(
                "batch norm output {:?} and residual {:?} differ in shape",
                inputs[0], inputs[1]
            )));
        }
        self.bn.output_shape(&inputs[..1])
    }
    fn describe(&self) -> String {
        let add = if self.residual { "+add" } else { "" };
        format!("batchnorm{add}+{}", self.activation.name())
    }
    fn params(&self) -> Vec<ParamId> {
        self.bn.params()
    }
    fn learnable_params(&self) -> Vec<ParamId> {
        self.bn.learnable_params()
    }
    fn kept_inputs(&self, inputs: usize, _trainable: &dyn Fn(ParamId) -> bool) -> Vec<bool> {
        vec![true; inputs]
    }
    fn saved_bytes(&self, training: bool, output: &[usize], n: usize, elem: usize) -> usize {
        self.bn.saved_bytes(training, output, n, elem)
    }
    fn grad_flow(&self, _inputs: usize) -> GradFlow {
        GradFlow::AllAtOnce
    }
    /// Every kernel of both layouts reads and writes activations in their stored format;
    /// evaluation, off the fused path, widens its inputs first.
    fn reads_stored(&self, _layout: Layout) -> bool {
        true
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        let g = self.bn.geom(ctx.inputs[0], ctx.n, ctx.layout)?;
        let residual = self.residual.then(|| xs[1]);
        if !ctx.training {
            // Evaluation is off the fused path (evaluation folds batch norms into convolutions
            // instead): the unfused ops in turn, in f32.
            let wide_x = ctx.backend.widened(xs[0])?;
            let wide_residual = residual.map(|r| ctx.backend.widened(r)).transpose()?.flatten();
            let residual = wide_residual.as_ref().or(residual);
            let (normalized, _) = self.bn.forward(ctx, &[wide_x.as_ref().unwrap_or(xs[0])])?;
            let sum = match residual {
                Some(r) => ctx.backend.add(&normalized, r)?,
                None => normalized,
            };
            return Ok((ctx.backend.activation_forward(self.activation, &sum)?, Saved::None));
        }
        let (y, stats) = self.bn.train_forward(ctx, |backend, gamma, beta, rm, rv| {
            backend.batch_norm_act_forward_train(xs[0], residual, gamma, beta, rm, rv, self.bn.momentum, self.activation, &g)
        })?;
        Ok((y, if ctx.record { Saved::BnStats(stats) } else { Saved::None }))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        let Saved::BnStats(stats) = ctx.saved else { unreachable!("a recorded BN keeps its statistics") };
        let g = self.bn.geom(ctx.inputs[0], ctx.n, ctx.layout)?;
        let p = self.bn.params;
        let (gamma, beta) = (ctx.params.value(p.gamma), ctx.params.value(p.beta));
        let residual = self.residual.then(|| ctx.kept_input(1));
        let grads = ctx.backend.batch_norm_act_backward(dy, ctx.kept_input(0), residual, gamma, beta, stats, self.activation, &g)?;
        ctx.grads.send_input(0, InputGrad::New(grads.dx))?;
        if let Some(dresidual) = grads.dresidual {
            ctx.grads.send_input(1, InputGrad::New(dresidual))?;
        }
        self.bn.send_param_grads(ctx, grads.dgamma, grads.dbeta)
    }
}
