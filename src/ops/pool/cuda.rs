//! GPU pooling launchers (`kernels/pool.cu`): one thread per output forwards, one per input
//! backwards, or per 4 of them where the layout allows (the `_vec4` kernels): channels first, 4
//! consecutive values of a row; channels last, 4 channels of a pixel. Global average pooling of
//! channels-last tensors runs one block per image and 32 or 128 channels, of channels-first ones
//! up to a warp per plane. Every kernel reads x
//! and dy in their stored formats and writes y in x's format and dx in dy's (the input is not at
//! hand backwards); max-pool indices are u32.

use super::{AdaptivePoolGeom, PoolGeom, PoolOps};
use crate::device::Buffer;
use crate::error::Result;
use crate::device::driver::{KernelArg, LaunchConfig};
use crate::error::Error;
use crate::gpu::grid::{int, per_element, pointers_aligned16};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::check::expect_len;
use crate::shape::Layout;

/// Threads per block of global_avg_pool_nhwc: GAP_ROWS warps (kernels/pool.cu).
const GLOBAL_POOL_THREADS: u32 = 8 * 32;

/// Kernel arguments planes, H, W, KH, KW, sh, sw, ph, pw, OH, OW.
fn window_args(g: &PoolGeom) -> Result<Vec<KernelArg>> {
    int(g.x_len(), "the pooling input")?;
    int(g.y_len(), "the pooling output")?;
    Ok([g.n * g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.oh, g.ow]
        .into_iter()
        .map(|v| KernelArg::I32(v as i32))
        .collect())
}

/// Channels-last kernel arguments N, C, H, W, KH, KW, sh, sw, ph, pw, OH, OW.
fn nhwc_window_args(g: &PoolGeom) -> Result<Vec<KernelArg>> {
    window_args(g)?;
    Ok([g.n, g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.oh, g.ow]
        .into_iter()
        .map(|v| KernelArg::I32(v as i32))
        .collect())
}

/// Kernel arguments planes, H, W, OH, OW.
fn adaptive_args(g: &AdaptivePoolGeom) -> Result<Vec<KernelArg>> {
    int(g.x_len(), "the pooling input")?;
    int(g.y_len(), "the pooling output")?;
    // The range arithmetic multiplies an index by the other axis' length.
    int(((g.h + 1) * g.oh + g.h).max((g.w + 1) * g.ow + g.w), "the adaptive pooling range arithmetic")?;
    Ok([g.n * g.c, g.h, g.w, g.oh, g.ow].into_iter().map(|v| KernelArg::I32(v as i32)).collect())
}

/// Channels-last kernel arguments N, C, H, W, OH, OW.
fn nhwc_adaptive_args(g: &AdaptivePoolGeom) -> Result<Vec<KernelArg>> {
    adaptive_args(g)?;
    Ok([g.n, g.c, g.h, g.w, g.oh, g.ow].into_iter().map(|v| KernelArg::I32(v as i32)).collect())
}

/// Values per thread: 4 (one 16-byte f32 or 8-byte 16-bit access) when the run of consecutive
/// values a thread's group lies in (the channels of a pixel channels last, the row it writes
/// channels first) is a multiple of 4 long and every buffer in `args` is 16-byte aligned, else 1.
fn vector_lanes(run: usize, args: &[KernelArg]) -> usize {
    if run.is_multiple_of(4) && pointers_aligned16(args) {
        4
    } else {
        1
    }
}

/// Pieces of its plane each lane of global_avg_pool reads, when the plane is large enough: a
/// warp's index arithmetic and shuffle tree then serve several loads instead of one.
const GLOBAL_POOL_PIECES_PER_LANE: usize = 4;

/// The lanes that sum one plane of `pieces` pieces of `piece_bytes` each in global_avg_pool: a
/// power of two (a run is then an aligned part of one warp) of at most a warp (the reach of its
/// shuffle tree), about a lane per GLOBAL_POOL_PIECES_PER_LANE pieces, but at least enough that
/// a run's load covers a 32-byte sector, and no more than the plane has pieces.
fn global_pool_run(pieces: usize, piece_bytes: usize) -> usize {
    let sector = 32usize.div_ceil(piece_bytes);
    pieces.div_ceil(GLOBAL_POOL_PIECES_PER_LANE).max(sector).min(pieces).next_power_of_two().min(32)
}

impl GpuBackend {
    /// Launches kernel `name` (or its `_vec4` twin, 4 values per thread where [`vector_lanes`]
    /// allows for runs of `run` values) with one thread per lane group of each of `total`
    /// elements; `args` are its buffers, then its geometry.
    fn launch_pool(&self, name: &str, total: usize, run: usize, args: &[KernelArg]) -> Result<()> {
        let lanes = vector_lanes(run, args);
        let kernel = if lanes == 4 { format!("{name}_vec4") } else { name.to_string() };
        self.launch("pool", &kernel, per_element(total / lanes, &kernel)?, args)
    }

    /// Adaptive average pooling to 1x1 of a channels-last x: one block per image and 32 lane
    /// groups of channels, reading each pixel's channel row contiguously.
    fn global_avg_pool_nhwc(&self, x: &GpuBuf<f32>, y: &GpuBuf<f32>, g: &AdaptivePoolGeom) -> Result<()> {
        let buffers = [x.stored_arg(), x.format_arg(), y.stored_arg(), y.format_arg()];
        let lanes = vector_lanes(g.c, &buffers);
        let chunks = g.c.div_ceil(32 * lanes);
        let blocks = u32::try_from(g.n * chunks)
            .map_err(|_| Error::shape(format!("global average pooling of {} images needs too many blocks", g.n)))?;
        let config = LaunchConfig { grid: (blocks, 1, 1), block: (GLOBAL_POOL_THREADS, 1, 1), shared_mem_bytes: 0 };
        let kernel = if lanes == 4 { "global_avg_pool_nhwc_vec4" } else { "global_avg_pool_nhwc" };
        let mut args = buffers.to_vec();
        args.extend([KernelArg::I32(g.c as i32), KernelArg::I32((g.h * g.w) as i32), KernelArg::I32(chunks as i32)]);
        self.launch("pool", kernel, config, &args)
    }

    /// Adaptive average pooling to 1x1 of a channels-first x: a run of lanes per contiguous H*W
    /// plane, 4 values per access where [`vector_lanes`] allows for runs of H*W values.
    fn global_avg_pool(&self, x: &GpuBuf<f32>, y: &GpuBuf<f32>, g: &AdaptivePoolGeom) -> Result<()> {
        adaptive_args(g)?;
        let (planes, hw) = (g.n * g.c, g.h * g.w);
        let mut args = vec![x.stored_arg(), x.format_arg(), y.stored_arg(), y.format_arg()];
        let lanes = vector_lanes(hw, &args);
        let group = global_pool_run(hw / lanes, lanes * x.stored().bytes());
        let kernel = if lanes == 4 { "global_avg_pool_vec4" } else { "global_avg_pool" };
        args.extend([int(planes, "the pooled planes")?, int(hw, "the plane size")?, KernelArg::I32(group as i32)]);
        self.launch("pool", kernel, per_element(planes * group, kernel)?, &args)
    }
}

impl PoolOps<f32> for GpuBackend {
    fn max_pool2d_forward(&self, x: &GpuBuf<f32>, g: &PoolGeom) -> Result<(GpuBuf<f32>, GpuBuf<u32>)> {
        expect_len("max_pool2d", "input", x.len(), g.x_len())?;
        let y = self.alloc_stored(g.y_len(), x.stored())?;
        let indices = self.alloc::<u32>(g.y_len())?;
        let mut args = vec![x.stored_arg(), x.format_arg(), y.stored_arg(), y.format_arg(), indices.arg()];
        if g.layout == Layout::Nhwc {
            args.extend(nhwc_window_args(g)?);
            self.launch_pool("max_pool_forward_nhwc", g.y_len(), g.c, &args)?;
            return Ok((y, indices));
        }
        args.extend(window_args(g)?);
        self.launch_pool("max_pool_forward", g.y_len(), g.ow, &args)?;
        Ok((y, indices))
    }

    fn max_pool2d_backward(&self, dy: &GpuBuf<f32>, indices: &GpuBuf<u32>, g: &PoolGeom) -> Result<GpuBuf<f32>> {
        expect_len("max_pool2d", "output gradient", dy.len(), g.y_len())?;
        expect_len("max_pool2d", "indices", indices.len(), g.y_len())?;
        let dx = self.alloc_stored(g.x_len(), dy.stored())?;
        let mut args = vec![dy.stored_arg(), dy.format_arg(), indices.arg(), dx.stored_arg(), dx.format_arg()];
        if g.layout == Layout::Nhwc {
            args.extend(nhwc_window_args(g)?);
            self.launch_pool("max_pool_backward_nhwc", g.x_len(), g.c, &args)?;
            return Ok(dx);
        }
        args.extend(window_args(g)?);
        self.launch_pool("max_pool_backward", g.x_len(), g.w, &args)?;
        Ok(dx)
    }

    fn avg_pool2d_forward(&self, x: &GpuBuf<f32>, g: &PoolGeom) -> Result<GpuBuf<f32>> {
        expect_len("avg_pool2d", "input", x.len(), g.x_len())?;
        let y = self.alloc_stored(g.y_len(), x.stored())?;
        let mut args = vec![x.stored_arg(), x.format_arg(), y.stored_arg(), y.format_arg()];
        if g.layout == Layout::Nhwc {
            args.extend(nhwc_window_args(g)?);
            args.push(KernelArg::I32(g.count_include_pad as i32));
            self.launch_pool("avg_pool_forward_nhwc", g.y_len(), g.c, &args)?;
            return Ok(y);
        }
        args.extend(window_args(g)?);
        args.push(KernelArg::I32(g.count_include_pad as i32));
        self.launch_pool("avg_pool_forward", g.y_len(), g.ow, &args)?;
        Ok(y)
    }

    fn avg_pool2d_backward(&self, dy: &GpuBuf<f32>, g: &PoolGeom) -> Result<GpuBuf<f32>> {
        expect_len("avg_pool2d", "output gradient", dy.len(), g.y_len())?;
        let dx = self.alloc_stored(g.x_len(), dy.stored())?;
        let mut args = vec![dy.stored_arg(), dy.format_arg(), dx.stored_arg(), dx.format_arg()];
        if g.layout == Layout::Nhwc {
            args.extend(nhwc_window_args(g)?);
            args.push(KernelArg::I32(g.count_include_pad as i32));
            self.launch_pool("avg_pool_backward_nhwc", g.x_len(), g.c, &args)?;
            return Ok(dx);
        }
        args.extend(window_args(g)?);
        args.push(KernelArg::I32(g.count_include_pad as i32));
        self.launch_pool("avg_pool_backward", g.x_len(), g.w, &args)?;
        Ok(dx)
    }

    fn adaptive_avg_pool2d_forward(&self, x: &GpuBuf<f32>, g: &AdaptivePoolGeom) -> Result<GpuBuf<f32>> {
        expect_len("adaptive_avg_pool2d", "input", x.len(), g.x_len())?;
        let y = self.alloc_stored(g.y_len(), x.stored())?;
        let mut args = vec![x.stored_arg(), x.format_arg(), y.stored_arg(), y.format_arg()];
        if g.layout == Layout::Nhwc {
            if (g.oh, g.ow) == (1, 1) {
                adaptive_args(g)?;
                self.global_avg_pool_nhwc(x, &y, g)?;
            } else {
                args.extend(nhwc_adaptive_args(g)?);
                self.launch_pool("adaptive_avg_pool_forward_nhwc", g.y_len(), g.c, &args)?;
            }
            return Ok(y);
        }
        if (g.oh, g.ow) == (1, 1) {
            self.global_avg_pool(x, &y, g)?;
            return Ok(y);
        }
        args.extend(adaptive_args(g)?);
        self.launch_pool("adaptive_avg_pool_forward", g.y_len(), g.ow, &args)?;
        Ok(y)
    }

    fn adaptive_avg_pool2d_backward(&self, dy: &GpuBuf<f32>, g: &AdaptivePoolGeom) -> Result<GpuBuf<f32>> {
        expect_len("adaptive_avg_pool2d", "output gradient", dy.len(), g.y_len())?;
        let dx = self.alloc_stored(g.x_len(), dy.stored())?;
        let mut args = vec![dy.stored_arg(), dy.format_arg(), dx.stored_arg(), dx.format_arg()];
        if g.layout == Layout::Nhwc {
            args.extend(nhwc_adaptive_args(g)?);
            self.launch_pool("adaptive_avg_pool_backward_nhwc", g.x_len(), g.c, &args)?;
            return Ok(dx);
        }
        // Global pooling's gradient spreads each dy over its contiguous plane evenly, so the
        // plane may pass as one row of H*W values: 4 inputs per thread whenever H*W (not only W)
        // is a multiple of 4, as at 14x14 or 6x6.
        let g = if (g.oh, g.ow) == (1, 1) { AdaptivePoolGeom::new(g.n, g.c, (1, g.h * g.w), (1, 1))? } else { *g };
        args.extend(adaptive_args(&g)?);
        self.launch_pool("adaptive_avg_pool_backward", g.x_len(), g.w, &args)?;
        Ok(dx)
    }
}
