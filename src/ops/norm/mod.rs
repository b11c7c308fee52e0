//! Batch normalisation over N, H, W per channel (BatchNorm2d), with PyTorch's conventions:
//! training uses the biased batch variance to normalise, and updates
//! running = (1 - momentum) * running + momentum * batch_stat, with the *unbiased* variance
//! (times m/(m-1), m = N*H*W) going into running_var. Statistics are kept in fp32 or better.
//! `BatchNormAct` is batch norm -> (residual add) -> activation as one node (`graph::fuse` makes
//! it for training): statistics in one pass, then normalisation, the add and the activation in one
//! pass over memory; its backward folds the activation's into batch norm's.

pub mod cases;
mod cpu;
mod node;
mod sync;

pub use node::{BatchNorm2d, BatchNormAct, BatchNormParams};
mod cuda;

use crate::device::Device;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::check::expect_len;
use crate::ops::Activation;

/// The sizes of a [`BatchNormGeom`], read through it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNormDims {
    pub n: usize,
    pub c: usize,
    /// H * W
    pub hw: usize,
    pub eps: f64,
}

checked_geometry!(
    /// A batch norm checked by `BatchNormGeom::new`.
    #[derive(Clone, Copy, Debug, PartialEq)]
    BatchNormGeom => BatchNormDims
);

impl BatchNormGeom {
    pub fn new(n: usize, c: usize, hw: usize, eps: f64) -> Result<Self> {
        if n == 0 || c == 0 || hw == 0 {
            return Err(Error::shape(format!("batch_norm2d needs a non-empty input, got N={n} C={c} HW={hw}")));
        }
        if !(eps > 0.0) {
            return Err(Error::config(format!("batch_norm2d eps must be positive, got {eps}")));
        }
        Ok(BatchNormGeom { dims: BatchNormDims { n, c, hw, eps } })
    }
    pub fn len(&self) -> usize {
        self.n * self.c * self.hw
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Elements per channel statistic: N * H * W.
    pub fn count(&self) -> usize {
        self.n * self.hw
    }
    /// Length checks shared by every device: each of `inputs` holds the whole tensor and each of
    /// `per_channel` (name, length) one value per channel.
    pub(crate) fn check_lengths(&self, op: &str, inputs: &[usize], per_channel: &[(&str, usize)]) -> Result<()> {
        for &len in inputs {
            expect_len(op, "the input", len, self.len())?;
        }
        for &(name, len) in per_channel {
            expect_len(op, name, len, self.c)?;
        }
        Ok(())
    }
    /// Training needs two or more values per channel: the unbiased variance divides by m - 1.
    pub(crate) fn check_trainable(&self, op: &str) -> Result<()> {
        if self.count() > 1 {
            return Ok(());
        }
        Err(Error::shape(format!(
            "{op} needs more than one value per channel, got N*H*W = {} (N={}, HW={}); \
             train with a batch of at least 2 or use eval mode",
            self.count(),
            self.n,
            self.hw
        )))
    }
}

/// What a training forward keeps for its backward: per-channel batch mean and 1/sqrt(var + eps).
pub struct BatchNormSaved<B> {
    pub mean: B,
    pub invstd: B,
}

/// The gradients of `batch_norm_act_backward`: of x, of the residual (when there is one), of
/// gamma and of beta.
pub struct BatchNormActGrads<B> {
    pub dx: B,
    pub dresidual: Option<B>,
    pub dgamma: B,
    pub dbeta: B,
}

pub trait NormOps<E: Element>: Device<E> {
    /// Training forward: normalises with batch statistics, updates running_mean/running_var in
    /// place with `momentum` (PyTorch's convention; a batch of one value per channel leaves
    /// running_var's update using m/(m-1) undefined, so it is an error), returns y and saved stats.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm2d_forward_train(
        &self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        running_mean: &mut Self::Buf,
        running_var: &mut Self::Buf,
        momentum: f64,
        g: &BatchNormGeom,
    ) -> Result<(Self::Buf, BatchNormSaved<Self::Buf>)>;
    /// Eval forward with the running statistics.
    fn batch_norm2d_forward_eval(
        &self,
        x: &Self::Buf,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        running_mean: &Self::Buf,
        running_var: &Self::Buf,
        g: &BatchNormGeom,
    ) -> Result<Self::Buf>;
    /// Training backward: (dx, dgamma, dbeta).
    fn batch_norm2d_backward(
        &self,
        dy: &Self::Buf,
        x: &Self::Buf,
        gamma: &Self::Buf,
        saved: &BatchNormSaved<Self::Buf>,
        g: &BatchNormGeom,
    ) -> Result<(Self::Buf, Self::Buf, Self::Buf)>;
    /// Training forward of batch norm -> (residual add) -> activation: y = act(bn(x) + residual),
    /// the running statistics updated as `batch_norm2d_forward_train` does; saves what
    /// `batch_norm_act_backward` needs besides x and the residual.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_act_forward_train(
        &self,
        x: &Self::Buf,
        residual: Option<&Self::Buf>,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        running_mean: &mut Self::Buf,
        running_var: &mut Self::Buf,
        momentum: f64,
        activation: Activation,
        g: &BatchNormGeom,
    ) -> Result<(Self::Buf, BatchNormSaved<Self::Buf>)>;
    /// Its backward: the activation's derivative at the recomputed pre-activation, then batch
    /// norm's backward, in one reduction pass and one pass writing dx (and dresidual).
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_act_backward(
        &self,
        dy: &Self::Buf,
        x: &Self::Buf,
        residual: Option<&Self::Buf>,
        gamma: &Self::Buf,
        beta: &Self::Buf,
        saved: &BatchNormSaved<Self::Buf>,
        activation: Activation,
        g: &BatchNormGeom,
    ) -> Result<BatchNormActGrads<Self::Buf>>;
}
