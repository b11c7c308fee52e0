//! The one place that chooses a convolution's path: the dedicated depthwise kernels when the
//! geometry is depthwise (groups == C_in > 1), else the general im2col-GEMM convolution. A layer
//! runs on `ConvPath::of(&g)`; the gradient checks name each path to test both.

use super::{ConvGeom, ConvOps};
use crate::element::Element;
use crate::error::Result;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPath {
    /// groups == C_in > 1: the dedicated depthwise kernels, no workspace.
    Depthwise,
    /// Any other grouping: im2col and one batched GEMM per chunk of images.
    Im2colGemm,
}

impl ConvPath {
    /// The path a layer of geometry `g` takes.
    pub fn of(g: &ConvGeom) -> ConvPath {
        if g.is_depthwise() {
            ConvPath::Depthwise
        } else {
            ConvPath::Im2colGemm
        }
    }
    /// y = conv(x, w) + bias.
    pub fn forward<E: Element, B: ConvOps<E>>(self, b: &B, x: &B::Buf, w: &B::Buf, bias: Option<&B::Buf>, g: &ConvGeom) -> Result<B::Buf> {
        match self {
            ConvPath::Depthwise => b.depthwise_conv2d_forward(x, w, bias, g),
            ConvPath::Im2colGemm => b.conv2d_forward(x, w, bias, g),
        }
    }
    /// dx from dy and the weight.
    pub fn backward_data<E: Element, B: ConvOps<E>>(self, b: &B, dy: &B::Buf, w: &B::Buf, g: &ConvGeom) -> Result<B::Buf> {
        match self {
            ConvPath::Depthwise => b.depthwise_conv2d_backward_data(dy, w, g),
            ConvPath::Im2colGemm => b.conv2d_backward_data(dy, w, g),
        }
    }
    /// dweight from x and dy.
    pub fn backward_filter<E: Element, B: ConvOps<E>>(self, b: &B, x: &B::Buf, dy: &B::Buf, g: &ConvGeom) -> Result<B::Buf> {
        match self {
            ConvPath::Depthwise => b.depthwise_conv2d_backward_filter(x, dy, g),
            ConvPath::Im2colGemm => b.conv2d_backward_filter(x, dy, g),
        }
    }
}
