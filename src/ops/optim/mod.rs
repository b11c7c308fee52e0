//! Optimiser updates, each one fused step per parameter tensor, with PyTorch's exact semantics.
//!
//! SGD: g = grad + wd * p; if momentum != 0 { buf = first ? g : momentum * buf + (1 - dampening) * g;
//! g = nesterov ? g + momentum * buf : buf }; p -= lr * g.
//! Adam: g = grad + wd * p (Adam, L2) or p *= 1 - lr * wd (AdamW, decoupled); m = b1 m + (1-b1) g;
//! v = b2 v + (1-b2) g^2; p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), t from 1.

mod cpu;

use crate::device::Device;
use crate::element::Element;
use crate::error::Result;

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

pub trait OptimOps<E: Element>: Device<E> {
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
}
mod cuda;
