//! GPU activations: kernels/activation.cu, one thread per element.

use super::{Activation, ActivationOps};
use crate::device::Buffer;
use crate::error::Result;
use crate::gpu::driver::KernelArg;
use crate::ops::check::expect_len;
use crate::gpu::launch::{i32_arg, pointwise};
use crate::gpu::{GpuBackend, GpuBuf};

/// The `kind` code the kernels switch on (kernels/activation.cu).
fn kind_code(kind: Activation) -> i32 {
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
        let n = i32_arg(x.len(), kind.name())?;
        let y = self.alloc::<f32>(x.len())?;
        let args = [x.arg(), y.arg(), KernelArg::I32(kind_code(kind)), KernelArg::I32(n)];
        self.launch("activation", "activation_forward", pointwise(x.len()), &args)?;
        Ok(y)
    }

    fn activation_backward(&self, kind: Activation, x: &GpuBuf<f32>, dy: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        let op = format!("{} backward", kind.name());
        expect_len(&op, "dy", dy.len(), x.len())?;
        let n = i32_arg(x.len(), &op)?;
        let dx = self.alloc::<f32>(x.len())?;
        let args = [x.arg(), dy.arg(), dx.arg(), KernelArg::I32(kind_code(kind)), KernelArg::I32(n)];
        self.launch("activation", "activation_backward", pointwise(x.len()), &args)?;
        Ok(dx)
    }
}
