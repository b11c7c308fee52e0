//! GPU activations: kernels/activation.cu, 4 values per thread, each buffer in its stored format
//! (y and dx in x's). The convolution epilogue takes 4 values per thread in one access where they
//! share a bias value or read 4 consecutive ones, else 1.

use super::{check_channel_bias, Activation, ActivationOps};
use crate::device::Buffer;
use crate::error::Result;
use crate::device::driver::KernelArg;
use crate::gpu::grid::{int, per_element};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::check::expect_len;
use crate::ops::elementwise::{all_aligned16, pointwise};

/// The `kind` code the kernels switch on (kernels/activation.cuh).
pub(crate) fn kind_code(kind: Activation) -> i32 {
    match kind {
        Activation::Relu => 0,
        Activation::Relu6 => 1,
        Activation::Sigmoid => 2,
        Activation::Silu => 3,
        Activation::Hardswish => 4,
    }
}

impl ActivationOps<f32> for GpuBackend {
    fn activation_forward(&self, kind: Activation, x: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        let n = int(x.len(), &format!("the length of the {} input", kind.name()))?;
        let y = self.alloc_stored(x.len(), x.stored())?;
        let (config, vec) = pointwise(x.len(), "activation_forward", &[x, &y])?;
        let args = [x.stored_arg(), x.format_arg(), y.stored_arg(), y.format_arg(), KernelArg::I32(kind_code(kind)), n, vec];
        self.launch("activation", "activation_forward", config, &args)?;
        Ok(y)
    }

    fn activation_backward(&self, kind: Activation, x: &GpuBuf<f32>, dy: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        expect_len(kind.name(), "dy", dy.len(), x.len())?;
        let n = int(x.len(), &format!("the length of the {} backward input", kind.name()))?;
        let dx = self.alloc_stored(x.len(), x.stored())?;
        let (config, vec) = pointwise(x.len(), "activation_backward", &[x, dy, &dx])?;
        let args = [
            x.stored_arg(),
            x.format_arg(),
            dy.stored_arg(),
            dy.format_arg(),
            dx.stored_arg(),
            dx.format_arg(),
            KernelArg::I32(kind_code(kind)),
            n,
            vec,
        ];
        self.launch("activation", "activation_backward", config, &args)?;
        Ok(dx)
    }

    fn channel_bias_activation(&self, kind: Activation, y: &mut GpuBuf<f32>, bias: &GpuBuf<f32>, channels: usize, plane: usize) -> Result<()> {
        check_channel_bias(kind, y.len(), bias.len(), channels, plane)?;
        let what = |part: &str| format!("the {part} of the {} convolution epilogue", kind.name());
        // 4 values of a plane share a channel; a plane of 1 (channels last) reads 4 consecutive.
        let groups_fit = plane.is_multiple_of(4) || (plane == 1 && channels.is_multiple_of(4));
        let per_thread = if groups_fit && all_aligned16(&[y, bias]) { 4 } else { 1 };
        let args = [
            y.stored_arg(),
            y.format_arg(),
            bias.arg(),
            KernelArg::I32(kind_code(kind)),
            int(channels, &what("channels"))?,
            int(plane, &what("plane"))?,
            int(y.len(), &what("length"))?,
            KernelArg::I32((per_thread == 4) as i32),
        ];
        self.launch("activation", "bias_activation", per_element(y.len() / per_thread, "bias_activation")?, &args)
    }
}
