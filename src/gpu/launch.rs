//! Argument checks and launch shapes shared by the op families' GPU launchers.

use super::driver::LaunchConfig;
use crate::error::{Error, Result};

/// Threads per block of the one-thread-per-element kernels.
pub const POINTWISE_BLOCK: u32 = 256;

/// The largest block a reduction kernel uses (a multiple of 32, as the block reductions in
/// kernels/common.cuh require).
const MAX_REDUCTION_BLOCK: u32 = 256;

/// Kernels index with 32-bit ints: a length past i32::MAX is an error naming the op.
pub fn i32_arg(value: usize, op: &str) -> Result<i32> {
    i32::try_from(value).map_err(|_| {
        Error::shape(format!("{op}: size {value} exceeds the GPU kernels' 32-bit index range; use smaller batches"))
    })
}

/// One thread per element for `n` elements.
pub fn pointwise(n: usize) -> LaunchConfig {
    LaunchConfig::linear(n, POINTWISE_BLOCK)
}

/// `blocks` blocks that each reduce `per_block` values with ferro_block_sum/max: the block is
/// the smallest multiple of 32 covering `per_block`, capped at 256, so tiny reductions do not
/// run idle warps.
pub fn reduction(blocks: usize, per_block: usize) -> Result<LaunchConfig> {
    let grid = u32::try_from(blocks.max(1))
        .map_err(|_| Error::shape(format!("{blocks} reduction blocks exceed the GPU grid limit")))?;
    let threads = (per_block.div_ceil(32) * 32).clamp(32, MAX_REDUCTION_BLOCK as usize) as u32;
    Ok(LaunchConfig { grid: (grid, 1, 1), block: (threads, 1, 1), shared_mem_bytes: 0 })
}
