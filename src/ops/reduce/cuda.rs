//! GPU full reductions: kernels/reduce.cu's reduce_sum, in one pass for small inputs, else a
//! fixed grid of partial sums then one block over the partials.

use super::ReduceOps;
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::device::driver::{KernelArg, LaunchConfig};
use crate::gpu::grid::{int, reduction};
use crate::gpu::{GpuBackend, GpuBuf};

/// Values each thread of the first pass accumulates before the block reduction, at least.
const VALUES_PER_THREAD: usize = 8;
/// Upper bound on first-pass blocks (and so on the partials the second pass reads).
const MAX_PARTIALS: usize = 1024;
const BLOCK: usize = 256;

/// The launches of a full reduction of `len` values: the first pass and, when that has more than
/// one block, the second pass over its partials. The optimiser's multi-tensor gradient norm
/// replays the same partition (ops::optim::cuda), so it matches `sum_squares` bit for bit.
pub(crate) struct ScalarReduction {
    pub first: LaunchConfig,
    pub second: Option<LaunchConfig>,
}

pub(crate) fn scalar_reduction(len: usize) -> Result<ScalarReduction> {
    let blocks = len.div_ceil(BLOCK * VALUES_PER_THREAD).clamp(1, MAX_PARTIALS);
    Ok(if blocks == 1 {
        ScalarReduction { first: reduction(1, len)?, second: None }
    } else {
        ScalarReduction { first: reduction(blocks, BLOCK)?, second: Some(reduction(1, blocks)?) }
    })
}

impl GpuBackend {
    /// scale * sum of x (of x^2 when `square`) into a buffer of length 1.
    pub(crate) fn reduce_to_scalar(&self, x: &GpuBuf<f32>, square: bool, scale: f32, op: &str) -> Result<GpuBuf<f32>> {
        let n = int(x.len(), &format!("the element count of the {op} input"))?;
        let out = self.alloc::<f32>(1)?;
        let plan = scalar_reduction(x.len())?;
        let square = KernelArg::I32(square as i32);
        // The first pass reads 4 values per load from an aligned x (the gradient norm's kernel
        // decides the same way); the second reads its partials one at a time.
        let vec = KernelArg::I32(x.ptr().is_multiple_of(16) as i32);
        match plan.second {
            None => {
                let args = [x.arg(), out.arg(), n, square, KernelArg::F32(scale), vec];
                self.launch("reduce", "reduce_sum", plan.first, &args)?;
            }
            Some(second) => {
                let blocks = plan.first.grid.0 as usize;
                let partials = self.alloc::<f32>(blocks)?;
                let args = [x.arg(), partials.arg(), n, square, KernelArg::F32(1.0), vec];
                self.launch("reduce", "reduce_sum", plan.first, &args)?;
                let (blocks, scalar) = (KernelArg::I32(blocks as i32), KernelArg::I32(0));
                let args = [partials.arg(), out.arg(), blocks, KernelArg::I32(0), KernelArg::F32(scale), scalar];
                self.launch("reduce", "reduce_sum", second, &args)?;
            }
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
