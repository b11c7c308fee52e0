//! Launch-geometry and argument checks shared by the op launchers in `ops::*::cuda`: the
//! kernels index with 32-bit ints, so every size that reaches them is checked to fit first.

use crate::device::driver::{KernelArg, LaunchConfig};
use crate::error::{Error, Result};

/// Whether every pointer among a launch's `args` starts on a 16-byte boundary: the condition,
/// with the shape's, for kernels that move 4 values per access (`_vec4` twins).
pub fn pointers_aligned16(args: &[KernelArg]) -> bool {
    args.iter().all(|a| !matches!(a, KernelArg::Ptr(p) if !p.is_multiple_of(16)))
}

/// Threads per block of the one-thread-per-element kernels.
pub const ELEMENT_BLOCK: u32 = 256;

/// A 1-D launch with one thread per element of a `total`-element tensor (`what` names it in the
/// error when it is too large for 32-bit indexing).
pub fn per_element(total: usize, what: &str) -> Result<LaunchConfig> {
    int(total, &format!("the element count of {what}"))?;
    Ok(LaunchConfig::linear(total, ELEMENT_BLOCK))
}

/// `v` as a kernel's `int` argument.
pub fn int(v: usize, what: &str) -> Result<KernelArg> {
    i32::try_from(v).map(KernelArg::I32).map_err(|_| {
        Error::shape(format!("{what} is {v}, more than the GPU kernels' 32-bit indexing allows"))
    })
}

/// Block sizes of the reduction kernels: multiples of 32, as the block reductions in
/// kernels/common.cuh require, and at most 1024 threads (the hardware limit, and the 32 warps their
/// scratch holds).
const REDUCTION_BLOCK: usize = 256;
const WIDE_REDUCTION_BLOCK: usize = 1024;

/// `blocks` blocks that each reduce `per_block` values with ferro_block_sum/max: the block is
/// the smallest multiple of 32 covering `per_block`, capped at 256, so tiny reductions do not
/// run idle warps.
pub fn reduction(blocks: usize, per_block: usize) -> Result<LaunchConfig> {
    reduction_capped(blocks, per_block, REDUCTION_BLOCK)
}

/// Like [`reduction`] but with blocks of up to 1024 threads, for launches with few blocks that
/// each stream a lot of data (one block per BatchNorm channel over N*H*W values): more warps per
/// block keep more loads in flight on each multiprocessor.
pub fn wide_reduction(blocks: usize, per_block: usize) -> Result<LaunchConfig> {
    reduction_capped(blocks, per_block, WIDE_REDUCTION_BLOCK)
}

fn reduction_capped(blocks: usize, per_block: usize, cap: usize) -> Result<LaunchConfig> {
    let grid = u32::try_from(blocks.max(1))
        .map_err(|_| Error::shape(format!("{blocks} reduction blocks exceed the GPU grid limit")))?;
    let threads = (per_block.div_ceil(32) * 32).clamp(32, cap) as u32;
    Ok(LaunchConfig { grid: (grid, 1, 1), block: (threads, 1, 1), shared_mem_bytes: 0 })
}
