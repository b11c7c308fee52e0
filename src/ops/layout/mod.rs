//! Moving image batches between channels-first (NCHW) and channels-last (NHWC) order. A run in
//! NHWC (`graph::layout`) converts once where data enters (the input batch) and once where it
//! leaves the image part of the model (before a flatten or a linear layer, whose weights are in
//! PyTorch's NCHW feature order); every op between works on channels-last tensors in place.

pub mod cases;
mod cpu;
mod cuda;
mod node;

pub use node::Relayout;

use crate::device::Device;
use crate::element::Element;
use crate::error::Result;
use crate::ops::check::expect_len;

pub trait LayoutOps<E: Element>: Device<E> {
    /// [N, C, HW] -> [N, HW, C].
    fn to_channels_last(&self, x: &Self::Buf, n: usize, c: usize, hw: usize) -> Result<Self::Buf>;
    /// [N, HW, C] -> [N, C, HW].
    fn to_channels_first(&self, x: &Self::Buf, n: usize, c: usize, hw: usize) -> Result<Self::Buf>;
}

/// Both conversions' check, shared by every device: x holds N * C * HW values.
pub(crate) fn check_images(op: &str, len: usize, n: usize, c: usize, hw: usize) -> Result<()> {
    expect_len(op, "the input", len, n * c * hw)
}
