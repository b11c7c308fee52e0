//! The one place that chooses a convolution's path: the dedicated depthwise kernels when the
//! geometry is depthwise (groups == C_in > 1), else the general im2col-GEMM convolution. Callers
//! that run a convolution layer go through these; the gradient checks call each path directly
//! to test both.

use super::{ConvGeom, ConvOps};
use crate::element::Element;
use crate::error::Result;

/// y = conv(x, w) + bias on the path `g` takes.
pub fn forward<E: Element, B: ConvOps<E>>(b: &B, x: &B::Buf, w: &B::Buf, bias: Option<&B::Buf>, g: &ConvGeom) -> Result<B::Buf> {
    if g.is_depthwise() {
        b.depthwise_conv2d_forward(x, w, bias, g)
    } else {
        b.conv2d_forward(x, w, bias, g)
    }
}

/// dx from dy and the weight on the path `g` takes.
pub fn backward_data<E: Element, B: ConvOps<E>>(b: &B, dy: &B::Buf, w: &B::Buf, g: &ConvGeom) -> Result<B::Buf> {
    if g.is_depthwise() {
        b.depthwise_conv2d_backward_data(dy, w, g)
    } else {
        b.conv2d_backward_data(dy, w, g)
    }
}

/// dweight from x and dy on the path `g` takes.
pub fn backward_filter<E: Element, B: ConvOps<E>>(b: &B, x: &B::Buf, dy: &B::Buf, g: &ConvGeom) -> Result<B::Buf> {
    if g.is_depthwise() {
        b.depthwise_conv2d_backward_filter(x, dy, g)
    } else {
        b.conv2d_backward_filter(x, dy, g)
    }
}
