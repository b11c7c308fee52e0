//! GPU full reductions: kernels/reduce.cu's reduce_sum, in one pass for small inputs, else a
//! fixed grid of partial sums then one block over the partials.

use super::ReduceOps;
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::device::driver::KernelArg;
use crate::gpu::grid::{int, reduction};
use crate::gpu::{GpuBackend, GpuBuf};

/// Values each thread of the first pass accumulates before the block reduction, at least.
const VALUES_PER_THREAD: usize = 8;
/// Upper bound on first-pass blocks (and so on the partials the second pass reads).
const MAX_PARTIALS: usize = 1024;
const BLOCK: usize = 256;

impl GpuBackend {
    /// scale * sum of x (of x^2 when `square`) into a buffer of length 1.
    pub(crate) fn reduce_to_scalar(&self, x: &GpuBuf<f32>, square: bool, scale: f32, op: &str) -> Result<GpuBuf<f32>> {
        let n = int(x.len(), &format!("the element count of the {op} input"))?;
        let out = self.alloc::<f32>(1)?;
        let blocks = x.len().div_ceil(BLOCK * VALUES_PER_THREAD).clamp(1, MAX_PARTIALS);
        let square = KernelArg::I32(square as i32);
        if blocks == 1 {
            let args = [x.arg(), out.arg(), n, square, KernelArg::F32(scale)];
            self.launch("reduce", "reduce_sum", reduction(1, x.len())?, &args)?;
        } else {
            let partials = self.alloc::<f32>(blocks)?;
            let args = [x.arg(), partials.arg(), n, square, KernelArg::F32(1.0)];
            self.launch("reduce", "reduce_sum", reduction(blocks, BLOCK)?, &args)?;
            let args =
                [partials.arg(), out.arg(), KernelArg::I32(blocks as i32), KernelArg::I32(0), KernelArg::F32(scale)];
            self.launch("reduce", "reduce_sum", reduction(1, blocks)?, &args)?;
        }
        Ok(out)
    }
}

impl ReduceOps<f32> for GpuBackend {
    fn sum(&self, x: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        self.reduce_to_scalar(x, false, 1.0, "sum")
    }

    fn mean(&self, x: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        if x.is_empty() {
            return Err(Error::shape("mean of an empty buffer is undefined"));
        }
        self.reduce_to_scalar(x, false, (1.0 / x.len() as f64) as f32, "mean")
    }

    fn sum_squares(&self, x: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        self.reduce_to_scalar(x, true, 1.0, "sum_squares")
    }
}
