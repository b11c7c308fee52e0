//! GPU dropout: kernels/dropout.cu hashes each element index exactly as `dropout_uniform`, with
//! the mask seed derived on the device from the step seed it reads. y is stored in x's format,
//! the mask in f32.

use super::{check_probability, keep_threshold, DropoutOps};
use crate::device::Buffer;
use crate::error::Result;
use crate::device::driver::KernelArg;
use crate::gpu::grid::int;
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::check::expect_len;
use crate::ops::elementwise::pointwise;
use crate::ops::ElementwiseOps;

impl DropoutOps<f32> for GpuBackend {
    fn dropout_forward(&self, x: &GpuBuf<f32>, p: f64, step_seed: &GpuBuf<u32>, node: u64) -> Result<(GpuBuf<f32>, GpuBuf<f32>)> {
        check_probability(p)?;
        expect_len("dropout", "step seed", step_seed.len(), 2)?;
        let n = int(x.len(), "the element count of the dropout input")?;
        let y = self.alloc_stored(x.len(), x.stored())?;
        let mask = self.alloc::<f32>(x.len())?;
        let (config, vec) = pointwise(x.len(), "dropout_forward", &[x, &y, &mask])?;
        let args = [
            x.stored_arg(),
            x.format_arg(),
            y.stored_arg(),
            y.format_arg(),
            mask.arg(),
            step_seed.arg(),
            KernelArg::U64(node),
            KernelArg::U32(keep_threshold(p)),
            KernelArg::F32((1.0 / (1.0 - p)) as f32),
            n,
            vec,
        ];
        self.launch("dropout", "dropout_forward", config, &args)?;
        Ok((y, mask))
    }

    fn dropout_backward(&self, dy: &GpuBuf<f32>, mask: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        expect_len("dropout backward", "mask", mask.len(), dy.len())?;
        self.mul(dy, mask)
    }
}
