//! The output-size rule of convolution and pooling windows, shared by every geometry, and the
//! memory layout of image tensors.

use crate::error::{Error, Result};

/// How a batch of [C, H, W] images lies in memory. Shapes stay [C, H, W] per sample whatever the
/// layout: only the order of the elements differs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Layout {
    /// Channels first, [N, C, H, W]: element (n, c, h, w) at ((n * C + c) * H + h) * W + w.
    #[default]
    Nchw,
    /// Channels last, [N, H, W, C]: element (n, c, h, w) at ((n * H + h) * W + w) * C + c, so the
    /// channels of one pixel are contiguous (the channels-last convolutions' GEMM K runs along
    /// them).
    Nhwc,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Nchw => "nchw",
            Layout::Nhwc => "nhwc",
        }
    }
}

/// Output length of a convolution or pooling window along one axis, as PyTorch computes it:
/// floor((len + 2*pad - dilation*(kernel-1) - 1) / stride) + 1, or with ceil instead of floor in
/// ceil mode, where the last window must still start inside the input or its left padding.
pub fn window_output_len(
    len: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Result<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return Err(Error::shape(format!(
            "kernel ({kernel}), stride ({stride}) and dilation ({dilation}) must all be at least 1"
        )));
    }
    let span = dilation * (kernel - 1) + 1;
    let padded = len + 2 * pad;
    if padded < span {
        return Err(Error::shape(format!(
            "input length {len} with padding {pad} is smaller than the kernel's extent {span}"
        )));
    }
    let room = padded - span;
    let mut out = if ceil_mode { room.div_ceil(stride) + 1 } else { room / stride + 1 };
    if ceil_mode && (out - 1) * stride >= len + pad {
        out -= 1;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_len_follows_pytorch() {
        assert_eq!(window_output_len(227, 11, 4, 0, 1, false).unwrap(), 55);
        assert_eq!(window_output_len(112, 3, 2, 1, 1, false).unwrap(), 56);
        assert_eq!(window_output_len(5, 3, 1, 2, 2, false).unwrap(), 5);
        // ceil mode: 6 with k=3 s=2 gives 3 windows instead of 2 (the last one clipped)
        assert_eq!(window_output_len(6, 3, 2, 0, 1, true).unwrap(), 3);
        assert_eq!(window_output_len(6, 3, 2, 0, 1, false).unwrap(), 2);
        // ceil mode never starts a window entirely in the right padding
        assert_eq!(window_output_len(5, 2, 2, 1, 1, true).unwrap(), 3);
        assert!(window_output_len(2, 5, 1, 0, 1, false).is_err());
    }
}
