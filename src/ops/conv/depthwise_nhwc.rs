//! GPU depthwise convolution on channels-last tensors (kernels/conv_depthwise_nhwc.cu): x, y, dx
//! and dy [N, H, W, C], the weight [C_out, 1, KH, KW]. Threads run along the channels; a square
//! 3x3 or 5x5 window at stride 1 or 2 without dilation or multiplier runs kernels specialised for
//! it (4 channels per thread with one access each, 16 bytes of f32 or 8 of 16-bit values, when
//! C % 4 == 0 and the tensors are 16-byte aligned), every other geometry the generic ones. x and
//! dy are read in their stored formats, y written in x's and dx in dy's (the callers allocate
//! them so); the weight, bias and filter gradient stay f32. The forward and data-gradient kernels read
//! the weight packed tap-major ([KH * KW, C_out]) so that its loads run along the channels too.
//! The filter gradient sums over the batch in chunks of pixels, one block per chunk (and channel
//! block and filter row or tap), the chunks' partial sums added by `splitk_reduce`.

use super::ConvGeom;
use crate::device::driver::{KernelArg, LaunchConfig};
use crate::error::{Error, Result};
use crate::gpu::grid::{int, per_element};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::gemm::cuda::GemmTarget;
use crate::ops::gemm::{GemmSpec, MAX_GRID_YZ};

const MODULE: &str = "conv_depthwise_nhwc";

/// Columns one thread of the specialised kernels computes (DWN_COLS).
const COLS: usize = 4;

/// Threads of a filter-gradient block (DWN_FILTER_THREADS).
const FILTER_THREADS: usize = 256;

/// Items (pixels or runs of columns) a filter-gradient block sums at least, so that its final
/// reduction stays a small part of its work.
const MIN_ITEMS_PER_CHUNK: usize = 64;

/// A filter-gradient block for `lanes` channel lanes (channels, or groups of 4): one lane per
/// channel lane up to all its threads (no idle lanes when the lanes are few, as MobileNet's 144
/// channels in 36 groups of 4 would leave in blocks of 32), the rest along the pixels.
fn filter_block(lanes: usize) -> (usize, usize) {
    let x = lanes.clamp(1, FILTER_THREADS);
    (x, FILTER_THREADS / x)
}

/// The specialised kernels' window and stride ("3x3_s1"), for a square 3x3 or 5x5 window at the
/// same stride 1 or 2 both ways, no dilation and multiplier 1; None for the generic kernels.
fn specialised(g: &ConvGeom) -> Option<String> {
    let square = g.kh == g.kw && matches!(g.kh, 3 | 5) && g.sh == g.sw && matches!(g.sh, 1 | 2);
    (square && g.dh == 1 && g.dw == 1 && g.c_out == g.c_in).then(|| format!("{0}x{0}_s{1}", g.kh, g.sh))
}

/// Channels per thread of the specialised kernels: 4 (one access of 4 values) when C % 4 == 0 and
/// every tensor at `ptrs` is 16-byte aligned (each pixel's channels then start aligned to 4 values
/// too, in any stored format).
fn channels_per_thread(g: &ConvGeom, ptrs: &[u64]) -> usize {
    if g.c_in.is_multiple_of(4) && ptrs.iter().all(|p| p.is_multiple_of(16)) {
        4
    } else {
        1
    }
}

/// The arguments the specialised kernels share after their pointers: N, C, H, W, ph, pw, OH, OW.
fn specialised_args(g: &ConvGeom) -> Result<Vec<KernelArg>> {
    Ok(vec![
        int(g.n, "batch")?,
        int(g.c_in, "channels")?,
        int(g.h, "conv input height")?,
        int(g.w, "conv input width")?,
        int(g.ph, "conv padding")?,
        int(g.pw, "conv padding")?,
        int(g.oh, "conv output height")?,
        int(g.ow, "conv output width")?,
    ])
}

/// One thread per `channels_per_thread` channels of `COLS` columns of every row of `rows` x `cols`
/// planes.
fn runs_launch(g: &ConvGeom, rows: usize, cols: usize, vec: usize, what: &str) -> Result<LaunchConfig> {
    per_element(g.n * rows * cols.div_ceil(COLS) * (g.c_in / vec), what)
}

/// The weight packed tap-major, wt[tap * C_out + co] = w[co * taps + tap], as the forward and
/// data-gradient kernels read it.
fn packed_weight(gpu: &GpuBackend, w: &GpuBuf<f32>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
    let wt = gpu.alloc::<f32>(g.weight_len())?;
    let args = [w.arg(), wt.arg(), int(g.c_out, "channels")?, int(g.kh * g.kw, "conv taps")?];
    gpu.launch(MODULE, "depthwise_nhwc_pack_weights", per_element(g.weight_len(), "the depthwise weight")?, &args)?;
    Ok(wt)
}

/// y = depthwise conv(x, w) + bias into `y`; `geometry` is the generic kernels' window arguments
/// (N, C, H, W, multiplier, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW).
pub(super) fn forward(gpu: &GpuBackend, x: &GpuBuf<f32>, w: &GpuBuf<f32>, bias: Option<&GpuBuf<f32>>, g: &ConvGeom, y: &GpuBuf<f32>, geometry: Vec<KernelArg>) -> Result<()> {
    let wt = packed_weight(gpu, w, g)?;
    let mut args = vec![x.stored_arg(), x.format_arg(), wt.arg(), KernelArg::Ptr(bias.map_or(0, |b| b.ptr())), y.stored_arg(), y.format_arg()];
    let has_bias = KernelArg::I32(bias.is_some() as i32);
    match specialised(g) {
        Some(shape) => {
            let vec = channels_per_thread(g, &[x.ptr(), wt.ptr(), y.ptr()]);
            args.extend(specialised_args(g)?);
            args.push(has_bias);
            let cfg = runs_launch(g, g.oh, g.ow, vec, "the depthwise output")?;
            gpu.launch(MODULE, &format!("depthwise_nhwc_forward_{shape}_v{vec}"), cfg, &args)
        }
        None => {
            args.extend(geometry);
            args.push(has_bias);
            gpu.launch(MODULE, "depthwise_nhwc_forward", per_element(g.y_len(), "the depthwise output")?, &args)
        }
    }
}

/// dx from dy and the weight into `dx` (every element written).
pub(super) fn backward_data(gpu: &GpuBackend, dy: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom, dx: &GpuBuf<f32>, geometry: Vec<KernelArg>) -> Result<()> {
    let wt = packed_weight(gpu, w, g)?;
    let mut args = vec![dy.stored_arg(), dy.format_arg(), wt.arg(), dx.stored_arg(), dx.format_arg()];
    match specialised(g) {
        Some(shape) => {
            let vec = channels_per_thread(g, &[dy.ptr(), wt.ptr(), dx.ptr()]);
            args.extend(specialised_args(g)?);
            let cfg = runs_launch(g, g.h, g.w, vec, "the depthwise input")?;
            gpu.launch(MODULE, &format!("depthwise_nhwc_backward_data_{shape}_v{vec}"), cfg, &args)
        }
        None => {
            args.extend(geometry);
            gpu.launch(MODULE, "depthwise_nhwc_backward_data", per_element(g.x_len(), "the depthwise input")?, &args)
        }
    }
}

/// How the filter gradient's blocks split the work: items (specialised: runs of COLS output
/// columns of a row; generic: output pixels) and the blocks' z extent (specialised: filter rows;
/// generic: taps). The same for both channel widths, so the workspace needs no pointers.
fn filter_items(g: &ConvGeom) -> (usize, usize) {
    match specialised(g) {
        Some(_) => (g.n * g.oh * g.ow.div_ceil(COLS), g.kh),
        None => (g.n * g.oh * g.ow, g.kh * g.kw),
    }
}

/// Chunks of items the filter gradient splits the batch's pixels into on a device of `sms` SMs:
/// enough blocks for about four per SM, each summing at least MIN_ITEMS_PER_CHUNK items (at most
/// 4 * sms chunks, within the grid's y limit).
fn filter_chunks(g: &ConvGeom, sms: usize) -> usize {
    let (items, z) = filter_items(g);
    let blocks = g.c_out.div_ceil(FILTER_THREADS) * z;
    (4 * sms).div_ceil(blocks.max(1)).min(items.div_ceil(MIN_ITEMS_PER_CHUNK)).clamp(1, MAX_GRID_YZ)
}

/// Bytes the NHWC depthwise convolution holds on a GPU of `sms` SMs while its largest pass runs:
/// the packed weight (forward and data gradient) or the filter gradient's partial sums per chunk
/// when there are several.
pub(super) fn workspace_bytes(g: &ConvGeom, sms: usize) -> usize {
    let weight = g.weight_len() * std::mem::size_of::<f32>();
    match filter_chunks(g, sms) {
        1 => weight,
        chunks => chunks * weight,
    }
}

/// dweight from x and dy into `dw`, summed over the batch.
pub(super) fn backward_filter(gpu: &GpuBackend, x: &GpuBuf<f32>, dy: &GpuBuf<f32>, g: &ConvGeom, dw: &GpuBuf<f32>, geometry: Vec<KernelArg>) -> Result<()> {
    let chunks = filter_chunks(g, gpu.driver().multiprocessor_count());
    let partial = if chunks > 1 { Some(gpu.alloc::<f32>(chunks * g.weight_len())?) } else { None };
    let out = partial.as_ref().map_or(dw.arg(), |p| p.arg());
    let mut args = vec![x.stored_arg(), x.format_arg(), dy.stored_arg(), dy.format_arg(), out];
    let (_, z) = filter_items(g);
    // Each thread's sums: a filter row of its channels (specialised) or one tap.
    let (kernel, lanes, sums) = match specialised(g) {
        Some(shape) => {
            let vec = channels_per_thread(g, &[x.ptr(), dy.ptr()]);
            args.extend(specialised_args(g)?);
            (format!("depthwise_nhwc_backward_filter_{shape}_v{vec}"), g.c_in / vec, g.kw * vec)
        }
        None => {
            args.extend(geometry);
            ("depthwise_nhwc_backward_filter".to_string(), g.c_out, 1)
        }
    };
    args.push(int(chunks, "depthwise pixel chunks")?);
    if z > MAX_GRID_YZ {
        return Err(Error::shape(format!("depthwise conv2d: a {}x{} window has more taps than one launch takes ({MAX_GRID_YZ})", g.kh, g.kw)));
    }
    let block = filter_block(lanes);
    let grid_x = u32::try_from(lanes.div_ceil(block.0)).map_err(|_| Error::shape(format!("depthwise conv2d: {} channels are too many for one launch", g.c_out)))?;
    let cfg = LaunchConfig {
        grid: (grid_x, chunks as u32, z as u32),
        block: (block.0 as u32, block.1 as u32, 1),
        shared_mem_bytes: (block.0 * block.1 * sums * std::mem::size_of::<f32>()) as u32,
    };
    gpu.launch(MODULE, &kernel, cfg, &args)?;
    if let Some(p) = partial {
        let sums = GemmSpec::new(false, false, g.c_out, g.kh * g.kw, 0);
        gpu.reduce_splits(&p, &sums, chunks, &GemmTarget::row_major(dw.ptr(), &sums))?;
    }
    Ok(())
}
