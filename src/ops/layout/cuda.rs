//! The GPU conversions: kernels/layout.cu's batched transpose, each image's [rows, cols] matrix
//! through shared memory in 64x64 tiles so both the reads and the writes are coalesced, 4 values
//! per access where the rows and the buffer allow.

use super::{check_images, LayoutOps};
use crate::device::driver::LaunchConfig;
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::gpu::grid::int;
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::gemm::cuda::vectorizable;

/// The tile edge of kernels/layout.cu (TILE) and its threads per block.
const TILE: usize = 64;
const THREADS: u32 = 256;

impl GpuBackend {
    /// Per image of `n`, x's [rows, cols] matrix transposed into a new [cols, rows] one, stored
    /// in x's format.
    fn transpose_images(&self, x: &GpuBuf<f32>, n: usize, rows: usize, cols: usize, op: &str) -> Result<GpuBuf<f32>> {
        let mut y = self.alloc_stored(x.len(), x.stored())?;
        self.transpose_images_into(x, &mut y, n, rows, cols, op)?;
        Ok(y)
    }

    /// Per image of `n`, x's [rows, cols] matrix transposed into y's [cols, rows] one (y as long
    /// as x, in any stored format: the values move unrounded when it is x's). `op` names the
    /// caller in errors.
    pub(crate) fn transpose_images_into(&self, x: &GpuBuf<f32>, y: &mut GpuBuf<f32>, n: usize, rows: usize, cols: usize, op: &str) -> Result<()> {
        int(x.len(), &format!("the element count of the {op} input"))?;
        if y.len() != x.len() || x.len() != n * rows * cols {
            return Err(Error::shape(format!("{op}: {} values into {} do not make {n} images of {rows} x {cols}", x.len(), y.len())));
        }
        let images = u32::try_from(n).ok().filter(|&n| n <= 65_535).ok_or_else(|| {
            Error::shape(format!("{op}: a batch of {n} images exceeds the 65535 a launch covers; use a smaller batch"))
        })?;
        let cfg = LaunchConfig {
            grid: (cols.div_ceil(TILE) as u32, rows.div_ceil(TILE) as u32, images),
            block: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let args = [
            x.stored_arg(),
            x.format_arg(),
            y.stored_arg(),
            y.format_arg(),
            int(rows, "transpose rows")?,
            int(cols, "transpose columns")?,
            // 4 values per access where every row of the matrices starts 16-byte aligned.
            vectorizable(x, 0, cols, rows * cols, n),
            vectorizable(y, 0, rows, rows * cols, n),
        ];
        self.launch("layout", "transpose_images", cfg, &args)
    }
}

impl LayoutOps<f32> for GpuBackend {
    fn to_channels_last(&self, x: &GpuBuf<f32>, n: usize, c: usize, hw: usize) -> Result<GpuBuf<f32>> {
        check_images("to_channels_last", x.len(), n, c, hw)?;
        self.transpose_images(x, n, c, hw, "to_channels_last")
    }
    fn to_channels_first(&self, x: &GpuBuf<f32>, n: usize, c: usize, hw: usize) -> Result<GpuBuf<f32>> {
        check_images("to_channels_first", x.len(), n, c, hw)?;
        self.transpose_images(x, n, hw, c, "to_channels_first")
    }
}
