//! Elementwise arithmetic: same-shape add and mul (residual connections), per-channel broadcast
//! add and mul (bias-like terms, squeeze-excitation gates), and the in-place helpers that
//! gradient accumulation and optimisers need.

pub mod cases;
mod cpu;
mod node;

pub use node::{Add, Mul, MulChannel};
mod cuda;
pub(crate) use cuda::{all_aligned16, pointwise, RowSplits};

use crate::device::Device;
use crate::element::Element;
use crate::error::Result;
use crate::ops::check::expect_len;
use crate::shape::Layout;

/// x is [N, C, HW] (in `layout`); the broadcast operand is [N, C] when `per_sample`, else [C].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChannelBroadcast {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
    pub per_sample: bool,
    pub layout: Layout,
}

impl ChannelBroadcast {
    pub fn x_len(&self) -> usize {
        self.n * self.c * self.hw
    }
    pub fn operand_len(&self) -> usize {
        if self.per_sample {
            self.n * self.c
        } else {
            self.c
        }
    }
    /// The checks of a broadcast op, shared by every device: x is [N, C, HW] and the operand has
    /// operand_len values.
    pub(crate) fn check(&self, op: &str, x_len: usize, operand_len: usize) -> Result<()> {
        expect_len(op, "x", x_len, self.x_len())?;
        expect_len(op, "the per-channel operand", operand_len, self.operand_len())
    }
}

pub trait ElementwiseOps<E: Element>: Device<E> {
    /// a + b (same length)
    fn add(&self, a: &Self::Buf, b: &Self::Buf) -> Result<Self::Buf>;
    /// a * b (same length)
    fn mul(&self, a: &Self::Buf, b: &Self::Buf) -> Result<Self::Buf>;
    /// (da, db) = (dy * b, dy * a)
    fn mul_backward(&self, a: &Self::Buf, b: &Self::Buf, dy: &Self::Buf) -> Result<(Self::Buf, Self::Buf)>;
    /// y = x + b broadcast over HW (and N unless per_sample)
    fn add_channel(&self, x: &Self::Buf, b: &Self::Buf, g: &ChannelBroadcast) -> Result<Self::Buf>;
    /// db = dy summed over HW (and N unless per_sample); dx is dy itself.
    fn add_channel_backward(&self, dy: &Self::Buf, g: &ChannelBroadcast) -> Result<Self::Buf>;
    /// y = x * s broadcast over HW (and N unless per_sample)
    fn mul_channel(&self, x: &Self::Buf, s: &Self::Buf, g: &ChannelBroadcast) -> Result<Self::Buf>;
    /// (dx, ds) = (dy * s, sum over HW (and N unless per_sample) of dy * x)
    fn mul_channel_backward(
        &self,
        x: &Self::Buf,
        s: &Self::Buf,
        dy: &Self::Buf,
        g: &ChannelBroadcast,
    ) -> Result<(Self::Buf, Self::Buf)>;
    /// y += alpha * x
    fn axpy(&self, alpha: E, x: &Self::Buf, y: &mut Self::Buf) -> Result<()>;
    /// x *= alpha
    fn scale(&self, alpha: E, x: &mut Self::Buf) -> Result<()>;
    /// x[..] = value
    fn fill(&self, value: E, x: &mut Self::Buf) -> Result<()>;
}
