//! Optimiser updates, each one fused step per parameter tensor, with PyTorch's exact semantics.
//!
//! SGD: g = grad + wd * p; if momentum != 0 { buf = first ? g : momentum * buf + (1 - dampening) * g;
//! g = nesterov ? g + momentum * buf : buf }; p -= lr * g.
//! Adam: g = grad + wd * p (Adam, L2) or p *= 1 - lr * wd (AdamW, decoupled); m = b1 m + (1-b1) g;
//! v = b2 v + (1-b2) g^2; p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps), t from 1.

pub mod cases;
mod cpu;
mod cuda;

use crate::device::Device;
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
        check_non_negative("Adam learning rate", self.lr)?;
        check_non_negative("Adam eps", self.eps)?;
        check_non_negative("Adam weight decay", self.weight_decay)?;
        for (name, beta) in [("beta1", self.beta1), ("beta2", self.beta2)] {
            if !(0.0..1.0).contains(&beta) {
                return Err(Error::config(format!("Adam {name} must be in [0, 1), got {beta}")));
            }
        }
        if step == 0 {
            return Err(Error::config("Adam steps count from 1, got step 0"));
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
