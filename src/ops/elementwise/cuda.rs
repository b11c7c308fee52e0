//! GPU elementwise ops: kernels/elementwise.cu. The broadcast backward reductions run one block
//! per element of the broadcast operand; channels last, one block per 32 channels and range of
//! pixels, threads along channels ([`RowSplits`]). Every kernel reads 4 values per access where
//! the buffers are 16-byte aligned and the shape keeps groups of 4 together (a plane's HW, or C
//! channels last, a multiple of 4). Activation-like buffers (operands, dy, outputs)
//! are read and written in their stored formats: outputs in the first operand's, each operand's
//! gradient in that operand's; parameter-like results (add_channel's bias gradient) and the
//! reductions' partial sums are f32, and `scale`/`fill` touch only f32 buffers (loss gradients,
//! parameter gradients, pooled zero buffers).

use super::{ChannelBroadcast, ElementwiseOps};
use crate::device::{Buffer, Device};
use crate::error::Result;
use crate::device::driver::{KernelArg, LaunchConfig};
use crate::error::Error;
use crate::gpu::grid::{int, per_element, wide_reduction};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::check::expect_len;
use crate::ops::PrecisionOps;
use crate::precision::StoredFormat;
use crate::shape::Layout;

/// Threads per block and channels per block of the reductions over channels-last rows
/// (CR_THREADS and CR_LANES in kernels/channel_rows.cuh).
const ROW_THREADS: u32 = 256;
const ROW_LANES: usize = 32;
/// Values per thread of the pointwise kernels (FERRO_GROUP in kernels/pointwise.cuh).
const POINTWISE_GROUP: usize = 4;

/// The launch of a kernels/pointwise.cuh kernel over `len` values (ceil(len / 4) threads) and its
/// `vec` argument: 1 when every one of `buffers` is 16-byte aligned, so whole groups of 4 values
/// move in single accesses.
pub(crate) fn pointwise(len: usize, what: &str, buffers: &[&GpuBuf<f32>]) -> Result<(LaunchConfig, KernelArg)> {
    int(len, &format!("the element count of {what}"))?;
    Ok((per_element(len.div_ceil(POINTWISE_GROUP), what)?, KernelArg::I32(all_aligned16(buffers) as i32)))
}

/// Whether every buffer starts on a 16-byte boundary (a group of 4 values is one access).
pub(crate) fn all_aligned16(buffers: &[&GpuBuf<f32>]) -> bool {
    buffers.iter().all(|b| matches!(b.stored_arg(), KernelArg::Ptr(p) if p.is_multiple_of(16)))
}

/// Each buffer's pointer and format arguments, in order.
fn stored_args(buffers: &[&GpuBuf<f32>]) -> Vec<KernelArg> {
    buffers.iter().flat_map(|b| [b.stored_arg(), b.format_arg()]).collect()
}

/// Enough blocks to fill any current GPU a few times over, and the fewest rows worth a block.
const ROW_TARGET_BLOCKS: usize = 512;
const MIN_SPLIT_ROWS: usize = 64;

/// How a per-channel reduction over channels-last rows (kernels/channel_rows.cuh) covers
/// `segments` segments of `rows` rows of C values: each segment's rows cut into `splits` ranges
/// of `rows_per_split` (the last shorter, never empty), its channels into `chunks` of 32, one
/// block per (segment, split, chunk), so a few segments of many rows still fill the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RowSplits {
    pub rows_per_split: usize,
    pub splits: usize,
    pub chunks: usize,
}

impl RowSplits {
    pub(crate) fn of(segments: usize, rows: usize, c: usize) -> Self {
        let chunks = c.div_ceil(ROW_LANES);
        let wanted = ROW_TARGET_BLOCKS.div_ceil(segments * chunks).min(rows / MIN_SPLIT_ROWS).max(1);
        let rows_per_split = rows.div_ceil(wanted);
        RowSplits { rows_per_split, splits: rows.div_ceil(rows_per_split), chunks }
    }

    pub(crate) fn blocks(&self, segments: usize) -> usize {
        segments * self.splits * self.chunks
    }

    pub(crate) fn config(&self, segments: usize) -> Result<LaunchConfig> {
        let blocks = self.blocks(segments);
        let grid = u32::try_from(blocks)
            .map_err(|_| Error::shape(format!("{blocks} channel reduction blocks exceed the GPU grid limit")))?;
        Ok(LaunchConfig { grid: (grid, 1, 1), block: (ROW_THREADS, 1, 1), shared_mem_bytes: 0 })
    }

    /// The kernel arguments rows, splits, rows_per_split, chunks (all at most the checked
    /// element count).
    pub(crate) fn args(&self, rows: usize) -> [KernelArg; 4] {
        [rows, self.splits, self.rows_per_split, self.chunks].map(|v| KernelArg::I32(v as i32))
    }
}

impl GpuBackend {
    /// y = op(a, b) in a's format for the same-length binary kernels `add` and `mul` (also the op
    /// names).
    fn binary(&self, kernel: &str, a: &GpuBuf<f32>, b: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        expect_len(kernel, "b", b.len(), a.len())?;
        let n = int(a.len(), &format!("the length of the {kernel} input"))?;
        let y = self.alloc_stored(a.len(), a.stored())?;
        let (config, vec) = pointwise(a.len(), kernel, &[a, b, &y])?;
        let args = [a.stored_arg(), a.format_arg(), b.stored_arg(), b.format_arg(), y.stored_arg(), y.format_arg(), n, vec];
        self.launch("elementwise", kernel, config, &args)?;
        Ok(y)
    }

    /// y = x op operand[channel], stored in `format`, with the broadcast kernel `add_channel` or
    /// `mul_channel` (their _nhwc twins channels last); `x` and `operand` were checked against `g`.
    fn broadcast(
        &self,
        kernel: &str,
        x: &GpuBuf<f32>,
        operand: &GpuBuf<f32>,
        g: &ChannelBroadcast,
        format: StoredFormat,
    ) -> Result<GpuBuf<f32>> {
        // c and hw are at most x_len, checked here to fit an int.
        let total = int(g.x_len(), &format!("the element count of the {kernel} input"))?;
        let y = self.alloc_stored(g.x_len(), format)?;
        let kernel = match g.layout {
            Layout::Nchw => kernel.to_string(),
            Layout::Nhwc => format!("{kernel}_nhwc"),
        };
        // A group of 4 values takes one operand value (a plane's) or 4 consecutive ones.
        let groups_share_operand = match g.layout {
            Layout::Nchw => g.hw.is_multiple_of(4),
            Layout::Nhwc => g.c.is_multiple_of(4),
        };
        let config = per_element(g.x_len().div_ceil(POINTWISE_GROUP), &kernel)?;
        let vec = KernelArg::I32((groups_share_operand && all_aligned16(&[x, operand, &y])) as i32);
        let args = [
            x.stored_arg(),
            x.format_arg(),
            operand.stored_arg(),
            operand.format_arg(),
            y.stored_arg(),
            y.format_arg(),
            KernelArg::I32(g.c as i32),
            KernelArg::I32(g.hw as i32),
            KernelArg::I32(g.per_sample as i32),
            total,
            vec,
        ];
        self.launch("elementwise", &kernel, config, &args)?;
        Ok(y)
    }

    /// The broadcast operand's gradient, stored in `format`: `channel_sum` (of dy) or
    /// `channel_dot` (of dy * x), one block per operand element; `dy` and `x` were checked
    /// against `g`.
    fn channel_reduce(
        &self,
        kernel: &str,
        dy: &GpuBuf<f32>,
        x: Option<&GpuBuf<f32>>,
        g: &ChannelBroadcast,
        format: StoredFormat,
    ) -> Result<GpuBuf<f32>> {
        // The kernel's flat indices reach x_len; n, c and hw are at most that.
        int(g.x_len(), &format!("the element count of the {kernel} input"))?;
        let inputs: Vec<&GpuBuf<f32>> = std::iter::once(dy).chain(x).collect();
        if g.layout == Layout::Nhwc {
            return self.channel_reduce_nhwc(kernel, &inputs, g, format);
        }
        let mut args = stored_args(&inputs);
        let out = self.alloc_stored(g.operand_len(), format)?;
        let per_output = if g.per_sample { g.hw } else { g.n * g.hw };
        // A group of 4 values lies in one plane.
        let per_thread = if g.hw.is_multiple_of(4) && all_aligned16(&inputs) { POINTWISE_GROUP } else { 1 };
        args.extend([
            out.stored_arg(),
            out.format_arg(),
            KernelArg::I32(g.n as i32),
            KernelArg::I32(g.c as i32),
            KernelArg::I32(g.hw as i32),
            KernelArg::I32(g.per_sample as i32),
            KernelArg::I32((per_thread > 1) as i32),
        ]);
        self.launch("elementwise", kernel, wide_reduction(g.operand_len(), per_output / per_thread)?, &args)?;
        Ok(out)
    }

    /// Channels last: `channel_sum_nhwc` or `channel_dot_nhwc` of `inputs` (dy, and x for the
    /// dot) over each image's pixels (per_sample) or the whole batch's, threads along channels
    /// (4 per thread in one access where C is a multiple of 4 and the buffers 16-byte aligned),
    /// stored in `format`; f32 partial sums of several row ranges are summed by a second
    /// channel_sum_nhwc.
    fn channel_reduce_nhwc(
        &self,
        kernel: &str,
        inputs: &[&GpuBuf<f32>],
        g: &ChannelBroadcast,
        format: StoredFormat,
    ) -> Result<GpuBuf<f32>> {
        let (segments, rows) = if g.per_sample { (g.n, g.hw) } else { (1, g.n * g.hw) };
        if rows == 0 || g.c == 0 {
            let zeros = self.zeros(g.operand_len())?;
            return if format == StoredFormat::F32 { Ok(zeros) } else { self.convert_stored(&zeros, format) };
        }
        let plan = RowSplits::of(segments, rows, g.c);
        // One range per segment writes the result itself.
        let partial_format = if plan.splits == 1 { format } else { StoredFormat::F32 };
        let partial = self.alloc_stored(segments * plan.splits * g.c, partial_format)?;
        let vec = |buffers: &[&GpuBuf<f32>]| KernelArg::I32((g.c.is_multiple_of(4) && all_aligned16(buffers)) as i32);
        let mut args = stored_args(inputs);
        args.extend([partial.stored_arg(), partial.format_arg(), KernelArg::I32(g.c as i32)]);
        args.extend(plan.args(rows));
        args.push(vec(&[inputs, &[&partial]].concat()));
        self.launch("elementwise", &format!("{kernel}_nhwc"), plan.config(segments)?, &args)?;
        if plan.splits == 1 {
            return Ok(partial);
        }
        let totals = RowSplits { rows_per_split: plan.splits, splits: 1, chunks: plan.chunks };
        let out = self.alloc_stored(g.operand_len(), format)?;
        let mut args = stored_args(&[&partial, &out]);
        args.push(KernelArg::I32(g.c as i32));
        args.extend(totals.args(plan.splits));
        args.push(vec(&[&partial, &out]));
        self.launch("elementwise", "channel_sum_nhwc", totals.config(segments)?, &args)?;
        Ok(out)
    }

    /// In-place `x = f(x)` kernels (`scale`, `fill`) taking (value, x, n, vec).
    fn update(&self, kernel: &str, value: f32, x: &mut GpuBuf<f32>) -> Result<()> {
        let n = int(x.len(), &format!("the length of the {kernel} input"))?;
        let (config, vec) = pointwise(x.len(), kernel, &[x])?;
        self.launch("elementwise", kernel, config, &[KernelArg::F32(value), x.arg(), n, vec])
    }
}

impl ElementwiseOps<f32> for GpuBackend {
    fn add(&self, a: &GpuBuf<f32>, b: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        self.binary("add", a, b)
    }

    fn mul(&self, a: &GpuBuf<f32>, b: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        self.binary("mul", a, b)
    }

    fn mul_backward(&self, a: &GpuBuf<f32>, b: &GpuBuf<f32>, dy: &GpuBuf<f32>) -> Result<(GpuBuf<f32>, GpuBuf<f32>)> {
        expect_len("mul backward", "b", b.len(), a.len())?;
        expect_len("mul backward", "dy", dy.len(), a.len())?;
        let n = int(a.len(), "the length of the mul backward input")?;
        let da = self.alloc_stored(a.len(), a.stored())?;
        let db = self.alloc_stored(a.len(), b.stored())?;
        let (config, vec) = pointwise(a.len(), "mul_backward", &[a, b, dy, &da, &db])?;
        let args = [
            a.stored_arg(),
            a.format_arg(),
            b.stored_arg(),
            b.format_arg(),
            dy.stored_arg(),
            dy.format_arg(),
            da.stored_arg(),
            da.format_arg(),
            db.stored_arg(),
            db.format_arg(),
            n,
            vec,
        ];
        self.launch("elementwise", "mul_backward", config, &args)?;
        Ok((da, db))
    }

    fn add_channel(&self, x: &GpuBuf<f32>, b: &GpuBuf<f32>, g: &ChannelBroadcast) -> Result<GpuBuf<f32>> {
        g.check("add_channel", x.len(), b.len())?;
        self.broadcast("add_channel", x, b, g, x.stored())
    }

    fn add_channel_backward(&self, dy: &GpuBuf<f32>, g: &ChannelBroadcast) -> Result<GpuBuf<f32>> {
        expect_len("add_channel backward", "dy", dy.len(), g.x_len())?;
        // The operand is a bias-like term: its gradient is f32.
        self.channel_reduce("channel_sum", dy, None, g, StoredFormat::F32)
    }

    fn mul_channel(&self, x: &GpuBuf<f32>, s: &GpuBuf<f32>, g: &ChannelBroadcast) -> Result<GpuBuf<f32>> {
        g.check("mul_channel", x.len(), s.len())?;
        self.broadcast("mul_channel", x, s, g, x.stored())
    }

    fn mul_channel_backward(
        &self,
        x: &GpuBuf<f32>,
        s: &GpuBuf<f32>,
        dy: &GpuBuf<f32>,
        g: &ChannelBroadcast,
    ) -> Result<(GpuBuf<f32>, GpuBuf<f32>)> {
        g.check("mul_channel backward", x.len(), s.len())?;
        expect_len("mul_channel backward", "dy", dy.len(), g.x_len())?;
        // dx = dy * s is the forward broadcast applied to dy.
        let dx = self.broadcast("mul_channel", dy, s, g, x.stored())?;
        let ds = self.channel_reduce("channel_dot", dy, Some(x), g, s.stored())?;
        Ok((dx, ds))
    }

    fn axpy(&self, alpha: f32, x: &GpuBuf<f32>, y: &mut GpuBuf<f32>) -> Result<()> {
        expect_len("axpy", "x", x.len(), y.len())?;
        let n = int(y.len(), "the length of the axpy input")?;
        let (config, vec) = pointwise(y.len(), "axpy", &[x, y])?;
        let args = [KernelArg::F32(alpha), x.stored_arg(), x.format_arg(), y.stored_arg(), y.format_arg(), n, vec];
        self.launch("elementwise", "axpy", config, &args)
    }

    fn scale(&self, alpha: f32, x: &mut GpuBuf<f32>) -> Result<()> {
        self.update("scale", alpha, x)
    }

    fn fill(&self, value: f32, x: &mut GpuBuf<f32>) -> Result<()> {
        self.update("fill", value, x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_splits_cover_every_row_with_no_empty_range() {
        for (segments, rows, c) in [(1, 1, 3), (1, 162, 24), (64, 49, 512), (1, 64 * 56 * 56, 64), (2, 130, 7), (8, 63, 1)] {
            let RowSplits { rows_per_split, splits, chunks } = RowSplits::of(segments, rows, c);
            let what = format!("{segments} x {rows} rows of {c}: {rows_per_split} x {splits}");
            assert!(splits * rows_per_split >= rows && (splits - 1) * rows_per_split < rows, "{what}");
            assert!(splits == 1 || rows_per_split >= MIN_SPLIT_ROWS, "{what}: a range below the minimum");
            assert!(splits == 1 || segments * splits * chunks <= 2 * ROW_TARGET_BLOCKS, "{what}: too many blocks");
            assert_eq!(chunks, c.div_ceil(ROW_LANES), "{what}");
        }
        // One batch-wide segment of a ResNet stage's pixels is cut into enough ranges to fill a GPU.
        let stage = RowSplits::of(1, 64 * 56 * 56, 64);
        assert!(stage.blocks(1) >= ROW_TARGET_BLOCKS, "{stage:?}");
    }
}
