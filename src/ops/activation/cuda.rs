//! GPU activations: kernels/activation.cu, one thread per element.

use super::{check_channel_bias, Activation, ActivationOps};
use crate::device::Buffer;
use crate::error::Result;
use crate::device::driver::KernelArg;
use crate::gpu::grid::{int, per_element};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::check::expect_len;

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
        let y = self.alloc::<f32>(x.len())?;
        let args = [x.arg(), y.arg(), KernelArg::I32(kind_code(kind)), n];
        self.launch("activation", "activation_forward", per_element(x.len(), "activation_forward")?, &args)?;
        Ok(y)
    }

    fn activation_backward(&self, kind: Activation, x: &GpuBuf<f32>, dy: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        expect_len(kind.name(), "dy", dy.len(), x.len())?;
        let n = int(x.len(), &format!("the length of the {} backward input", kind.name()))?;
        let dx = self.alloc::<f32>(x.len())?;
        let args = [x.arg(), dy.arg(), dx.arg(), KernelArg::I32(kind_code(kind)), n];
        self.launch("activation", "activation_backward", per_element(x.len(), "activation_backward")?, &args)?;
        Ok(dx)
    }

    fn channel_bias_activation(&self, kind: Activation, y: &mut GpuBuf<f32>, bias: &GpuBuf<f32>, channels: usize, plane: usize) -> Result<()> {
        check_channel_bias(kind, y.len(), bias.len(), channels, plane)?;
        let what = |part: &str| format!("the {part} of the {} convolution epilogue", kind.name());
        let args = [
            y.arg(),
            bias.arg(),
            KernelArg::I32(kind_code(kind)),
            int(channels, &what("channels"))?,
            int(plane, &what("plane"))?,
            int(y.len(), &what("length"))?,
        ];
        self.launch("activation", "bias_activation", per_element(y.len(), "bias_activation")?, &args)
    }
}
