//! Pointwise activations. Backward takes the forward *input* x (not the output), so every
//! activation is differentiated the same way. At a kink the derivative follows PyTorch:
//! relu'(0) = 0; relu6'(x) = 1 only for 0 < x < 6; hardswish'(x) = (2x + 3)/6 for -3 <= x <= 3
//! (so -0.5 at -3 and 1.5 at 3, as torch's hardswish_backward), 0 below -3, 1 above 3.

pub mod cases;
pub(crate) mod cpu;
pub(crate) use cpu::with_activation;
mod cuda;
pub(crate) use cuda::kind_code as activation_kind_code;
mod node;

use crate::device::Device;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::check::expect_len;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    Relu,
    Relu6,
    Sigmoid,
    /// x * sigmoid(x) (swish)
    Silu,
    /// x * relu6(x + 3) / 6
    Hardswish,
}

impl Activation {
    pub const ALL: [Activation; 5] =
        [Activation::Relu, Activation::Relu6, Activation::Sigmoid, Activation::Silu, Activation::Hardswish];
    /// The op name used by gradcheck and the CLI.
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Relu6 => "relu6",
            Activation::Sigmoid => "sigmoid",
            Activation::Silu => "silu",
            Activation::Hardswish => "hardswish",
        }
    }
}

pub trait ActivationOps<E: Element>: Device<E> {
    fn activation_forward(&self, kind: Activation, x: &Self::Buf) -> Result<Self::Buf>;
    /// dx = dy * f'(x)
    fn activation_backward(&self, kind: Activation, x: &Self::Buf, dy: &Self::Buf) -> Result<Self::Buf>;
    /// y = f(y + bias[c]) in place, y being [N, channels, plane]: the epilogue of a convolution
    /// with its batch norm and activation folded in (evaluation only, so no backward).
    fn channel_bias_activation(&self, kind: Activation, y: &mut Self::Buf, bias: &Self::Buf, channels: usize, plane: usize) -> Result<()>;
}

/// The geometry checks of `channel_bias_activation`: one bias per channel, whole [channels, plane]
/// samples.
fn check_channel_bias(kind: Activation, y_len: usize, bias_len: usize, channels: usize, plane: usize) -> Result<()> {
    expect_len(kind.name(), "bias", bias_len, channels)?;
    let sample = channels * plane;
    if sample == 0 || y_len % sample != 0 {
        return Err(Error::shape(format!(
            "{} with a channel bias: {y_len} values are not whole samples of {channels} channels x {plane} pixels",
            kind.name()
        )));
    }
    Ok(())
}
