//! Optimiser updates, each one fused step per parameter tensor, with PyTorch's exact semantics.
//!
//! SGD: g = grad + wd * p; if momentum != 0 { buf = first ? g : momentum * buf + (1 - dampening) * g;
//! g = nesterov ? g + momentum * buf : buf }; p -= lr * g.
//! Adam: g = grad + wd * p (Adam, L2) or p *= 1 - lr * wd (AdamW, decoupled); m = b1 m + (1-b1) g;
//! v = b2 v + (1-b2) g^2; p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), t from 1.
//!
//! Multi-tensor steps update many tensors in a constant number of launches: the tensors are
//! described once by a [`OptimOps::TensorTable`] (on a GPU a device table of their addresses,
//! lengths and weight decays, uploaded only when they change), every tensor of one launch shares
//! its step count (a `group`, counted on the device by `advance_steps`: Adam's bias corrections
//! and SGD's first momentum step follow the steps taken), and the learning rate is an argument. Their per-element updates
//! are the per-tensor steps', so both give bit-identical results. Clipping by global norm
//! (`clip_grad_norm`) leaves {norm, scale, non-finite steps} in a small device buffer that the
//! updates read: the scale multiplies each gradient, and a non-finite norm skips the update.

pub mod cases;
mod cpu;
mod cuda;

use crate::device::{Buffer, Device};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::check::expect_len;

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdParams {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    pub weight_decay: f64,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamParams {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW: weight decay applied to the parameter directly, not through the gradient.
    pub decoupled: bool,
}

/// One tensor of a multi-tensor step: its parameter, gradient and state, its weight decay (so
/// exclusions stay per tensor) and the group (step count) of the launch that updates it.
pub struct TensorSlot<'a, B> {
    pub param: &'a mut B,
    pub grad: &'a B,
    /// SGD's momentum buffer (None without momentum) or Adam's first moment.
    pub first: Option<&'a mut B>,
    /// Adam's second moment (None for SGD).
    pub second: Option<&'a mut B>,
    pub weight_decay: f64,
    pub group: usize,
}

/// Length of the clip state buffer: {global norm, gradient scale, steps with a non-finite norm}.
pub const CLIP_STATE_LEN: usize = 3;

pub trait OptimOps<E: Element>: Device<E> {
    /// The device form of a list of tensors for multi-tensor steps.
    type TensorTable: Send + Sync;
    /// One SGD step in place. `momentum_buf` is ignored when momentum == 0; `first_step` makes
    /// the buffer start as the gradient, as PyTorch does.
    fn sgd_step(
        &self,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        momentum_buf: &mut Self::Buf,
        h: &SgdParams,
        first_step: bool,
    ) -> Result<()>;
    /// One Adam/AdamW step in place; `step` counts from 1.
    fn adam_step(
        &self,
        param: &mut Self::Buf,
        grad: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        h: &AdamParams,
        step: u64,
    ) -> Result<()>;

    /// Makes `table` describe `slots` (in their order): builds it when there is none or when the
    /// tensors, their order, weight decays or groups changed; re-uploads only the gradient
    /// addresses when only those changed; does nothing in the steady state.
    fn sync_table(&self, table: &mut Option<Self::TensorTable>, slots: &[TensorSlot<'_, Self::Buf>]) -> Result<()>;

    /// Clipping by global norm without a read-back: the L2 norm of all gradients (each tensor's
    /// sum of squares as `sum_squares` computes it, summed in f64 in slot order) and the scale
    /// min(1, max_norm / (norm + 1e-6)) into `clip` ([`CLIP_STATE_LEN`] values, zeros at
    /// first), whose third value counts the calls that found a non-finite norm.
    fn clip_grad_norm(
        &self,
        table: &Self::TensorTable,
        slots: &[TensorSlot<'_, Self::Buf>],
        max_norm: f64,
        clip: &mut Self::Buf,
    ) -> Result<()>;

    /// One SGD step of every slot of `group` (`h.weight_decay` is unused: each slot has its
    /// own), with gradients scaled by `clip`'s scale, or left alone when its norm is not finite.
    /// The momentum buffers start as the gradient when `steps[group]` is 1 (the group's first
    /// step taken; the count `advance_steps` left, read when the work runs, as Adam's).
    fn sgd_multi_step(
        &self,
        table: &Self::TensorTable,
        slots: &mut [TensorSlot<'_, Self::Buf>],
        group: usize,
        h: &SgdParams,
        steps: &Self::IdxBuf,
        clip: Option<&Self::Buf>,
    ) -> Result<()>;

    /// One Adam/AdamW step of every slot of `group`, as `sgd_multi_step`. Its step number
    /// (counting from 1; the bias corrections' exponent) is `steps[group]`, read when the work
    /// runs, so a replayed CUDA graph takes the count `advance_steps` left.
    fn adam_multi_step(
        &self,
        table: &Self::TensorTable,
        slots: &mut [TensorSlot<'_, Self::Buf>],
        group: usize,
        h: &AdamParams,
        steps: &Self::IdxBuf,
        clip: Option<&Self::Buf>,
    ) -> Result<()>;

    /// Adds one to every step count in `steps`, on the device, unless `clip` (the step's clip
    /// state) holds a non-finite norm: the update is skipped then, and so is its count.
    fn advance_steps(&self, steps: &mut Self::IdxBuf, clip: Option<&Self::Buf>) -> Result<()>;
}

fn check_non_negative(what: &str, value: f64) -> Result<()> {
    if value >= 0.0 {
        Ok(())
    } else {
        Err(Error::config(format!("{what} must be non-negative, got {value}")))
    }
}

impl SgdParams {
    /// The hyperparameter checks torch.optim.SGD makes; every device runs them before a step.
    pub fn validate(&self) -> Result<()> {
        check_non_negative("SGD learning rate", self.lr)?;
        check_non_negative("SGD momentum", self.momentum)?;
        check_non_negative("SGD weight decay", self.weight_decay)?;
        if self.nesterov && (self.momentum <= 0.0 || self.dampening != 0.0) {
            return Err(Error::config(format!(
                "Nesterov SGD needs momentum > 0 and dampening 0, got momentum {} and dampening {}",
                self.momentum, self.dampening
            )));
        }
        Ok(())
    }
}

impl AdamParams {
    /// The hyperparameter checks torch.optim.Adam makes, and `step` counting from 1; every device
    /// runs them before a step.
    pub fn validate(&self, step: u64) -> Result<()> {
        self.validate_settings()?;
        if step == 0 {
            return Err(Error::config("Adam steps count from 1, got step 0"));
        }
        Ok(())
    }

    /// The hyperparameter checks alone, for steps whose number is read on the device.
    pub fn validate_settings(&self) -> Result<()> {
        check_non_negative("Adam learning rate", self.lr)?;
        check_non_negative("Adam eps", self.eps)?;
        check_non_negative("Adam weight decay", self.weight_decay)?;
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::config(format!("Adam {name} must be in [0, 1), got {beta}")));
            }
        }
        Ok(())
    }
}

impl SgdParams {
    /// The settings and one step's buffer lengths, checked the same way on every device.
    pub fn check_step(&self, param: usize, grad: usize, momentum_buf: usize) -> Result<()> {
        self.validate()?;
        expect_len("sgd_step", "grad", grad, param)?;
        if self.momentum != 0.0 {
            expect_len("sgd_step", "momentum buffer", momentum_buf, param)?;
        }
        Ok(())
    }
}

impl AdamParams {
    /// The settings, the step number and one step's buffer lengths, checked the same way on
    /// every device.
    pub fn check_step(&self, step: u64, param: usize, grad: usize, m: usize, v: usize) -> Result<()> {
        self.validate(step)?;
        expect_len("adam_step", "grad", grad, param)?;
        expect_len("adam_step", "first moment", m, param)?;
        expect_len("adam_step", "second moment", v, param)
    }
}

/// That `steps` (of `len` words) holds a count for `group`.
pub(crate) fn check_group_steps(len: usize, group: usize) -> Result<()> {
    if group < len {
        Ok(())
    } else {
        Err(Error::shape(format!("the optimiser's step counts cover {len} groups; group {group} has none")))
    }
}

/// The checks of a multi-tensor step, the same on every device: the settings with each slot's
/// weight decay, and each slot's buffer lengths (`states` state buffers needed per slot).
pub(crate) fn check_slots<B: Buffer>(
    slots: &[TensorSlot<'_, B>],
    states: usize,
    clip: Option<&B>,
    mut settings: impl FnMut(f64) -> Result<()>,
) -> Result<()> {
    if let Some(clip) = clip {
        expect_len("multi-tensor step", "clip state", clip.len(), CLIP_STATE_LEN)?;
    }
    for slot in slots {
        settings(slot.weight_decay)?;
        let len = slot.param.len();
        expect_len("multi-tensor step", "grad", slot.grad.len(), len)?;
        let named = [("first state buffer", &slot.first), ("second state buffer", &slot.second)];
        for (what, state) in named.into_iter().take(states) {
            let state = state.as_ref().ok_or_else(|| Error::shape(format!("multi-tensor step: a tensor has no {what}")))?;
            expect_len("multi-tensor step", what, state.len(), len)?;
        }
    }
    Ok(())
}
