//! The GPU conversions: kernels/layout.cu's batched transpose, each image's [rows, cols] matrix
//! through shared memory in 32x32 tiles so both the reads and the writes are coalesced.

use super::{check_images, LayoutOps};
use crate::device::driver::LaunchConfig;
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::gpu::grid::int;
use crate::gpu::{GpuBackend, GpuBuf};

/// The tile edge of kernels/layout.cu (TILE) and the rows its 32 x 8 threads step by.
const TILE: usize = 32;
const ROWS_PER_PASS: u32 = 8;

impl GpuBackend {
    /// Per image of `n`, x's [rows, cols] matrix transposed into a new [cols, rows] one, stored
    /// in x's format.
    fn transpose_images(&self, x: &GpuBuf<f32>, n: usize, rows: usize, cols: usize, op: &str) -> Result<GpuBuf<f32>> {
        int(x.len(), &format!("the element count of the {op} input"))?;
        let images = u32::try_from(n).ok().filter(|&n| n <= 65_535).ok_or_else(|| {
            Error::shape(format!("{op}: a batch of {n} images exceeds the 65535 a launch covers; use a smaller batch"))
        })?;
        let y = self.alloc_stored(x.len(), x.stored())?;
        let cfg = LaunchConfig {
            grid: (cols.div_ceil(TILE) as u32, rows.div_ceil(TILE) as u32, images),
            block: (TILE as u32, ROWS_PER_PASS, 1),
            shared_mem_bytes: 0,
        };
        let args = [
            x.stored_arg(),
            x.format_arg(),
            y.stored_arg(),
            y.format_arg(),
            int(rows, "transpose rows")?,
            int(cols, "transpose columns")?,
        ];
        self.launch("layout", "transpose_images", cfg, &args)?;
        Ok(y)
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
