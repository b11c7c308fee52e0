//! GPU elementwise ops: kernels/elementwise.cu. The broadcast backward reductions run one block
//! per element of the broadcast operand; channels last, one block per 32 channels and range of
//! pixels, threads along channels ([`RowSplits`]).

use super::{ChannelBroadcast, ElementwiseOps};
use crate::device::{Buffer, Device};
use crate::error::Result;
use crate::device::driver::{KernelArg, LaunchConfig};
use crate::error::Error;
use crate::gpu::grid::{int, per_element, wide_reduction};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::check::expect_len;
use crate::shape::Layout;

/// Threads per block and channels per block of the reductions over channels-last rows
/// (CR_THREADS and CR_LANES in kernels/channel_rows.cuh).
const ROW_THREADS: u32 = 256;
const ROW_LANES: usize = 32;
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
    /// y = op(a, b) for the same-length binary kernels `add` and `mul` (also the op names).
    fn binary(&self, kernel: &str, a: &GpuBuf<f32>, b: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        expect_len(kernel, "b", b.len(), a.len())?;
        let n = int(a.len(), &format!("the length of the {kernel} input"))?;
        let y = self.alloc::<f32>(a.len())?;
        self.launch("elementwise", kernel, per_element(a.len(), kernel)?, &[a.arg(), b.arg(), y.arg(), n])?;
        Ok(y)
    }

    /// y = x op operand[channel] with the broadcast kernel `add_channel` or `mul_channel` (their
    /// _nhwc twins channels last); `x` and `operand` were checked against `g`.
    fn broadcast(
        &self,
        kernel: &str,
        x: &GpuBuf<f32>,
        operand: &GpuBuf<f32>,
        g: &ChannelBroadcast,
    ) -> Result<GpuBuf<f32>> {
        // c and hw are at most x_len, checked here to fit an int.
        let total = int(g.x_len(), &format!("the element count of the {kernel} input"))?;
        let y = self.alloc::<f32>(g.x_len())?;
        let kernel = match g.layout {
            Layout::Nchw => kernel.to_string(),
            Layout::Nhwc => format!("{kernel}_nhwc"),
        };
        let args = [
            x.arg(),
            operand.arg(),
            y.arg(),
            KernelArg::I32(g.c as i32),
            KernelArg::I32(g.hw as i32),
            KernelArg::I32(g.per_sample as i32),
            total,
        ];
        self.launch("elementwise", &kernel, per_element(g.x_len(), &kernel)?, &args)?;
        Ok(y)
    }

    /// The broadcast operand's gradient: `channel_sum` (of dy) or `channel_dot` (of dy * x), one
    /// block per operand element; `dy` and `x` were checked against `g`.
    fn channel_reduce(
        &self,
        kernel: &str,
        dy: &GpuBuf<f32>,
        x: Option<&GpuBuf<f32>>,
        g: &ChannelBroadcast,
    ) -> Result<GpuBuf<f32>> {
        // The kernel's flat indices reach x_len; n, c and hw are at most that.
        int(g.x_len(), &format!("the element count of the {kernel} input"))?;
        let mut args = vec![dy.arg()];
        args.extend(x.map(|x| x.arg()));
        if g.layout == Layout::Nhwc {
            return self.channel_reduce_nhwc(kernel, args, g);
        }
        let out = self.alloc::<f32>(g.operand_len())?;
        let per_output = if g.per_sample { g.hw } else { g.n * g.hw };
        args.extend([
            out.arg(),
            KernelArg::I32(g.n as i32),
            KernelArg::I32(g.c as i32),
            KernelArg::I32(g.hw as i32),
            KernelArg::I32(g.per_sample as i32),
        ]);
        self.launch("elementwise", kernel, wide_reduction(g.operand_len(), per_output)?, &args)?;
        Ok(out)
    }

    /// Channels last: `channel_sum_nhwc` or `channel_dot_nhwc` of the input buffers `args` (dy,
    /// and x for the dot) over each image's pixels (per_sample) or the whole batch's, threads
    /// along channels; partial sums of several row ranges are summed by a second channel_sum_nhwc.
    fn channel_reduce_nhwc(&self, kernel: &str, mut args: Vec<KernelArg>, g: &ChannelBroadcast) -> Result<GpuBuf<f32>> {
        let (segments, rows) = if g.per_sample { (g.n, g.hw) } else { (1, g.n * g.hw) };
        if rows == 0 || g.c == 0 {
            return self.zeros(g.operand_len());
        }
        let plan = RowSplits::of(segments, rows, g.c);
        let partial = self.alloc::<f32>(segments * plan.splits * g.c)?;
        args.extend([partial.arg(), KernelArg::I32(g.c as i32)]);
        args.extend(plan.args(rows));
        self.launch("elementwise", &format!("{kernel}_nhwc"), plan.config(segments)?, &args)?;
        if plan.splits == 1 {
            return Ok(partial);
        }
        let totals = RowSplits { rows_per_split: plan.splits, splits: 1, chunks: plan.chunks };
        let out = self.alloc::<f32>(g.operand_len())?;
        let mut args = vec![partial.arg(), out.arg(), KernelArg::I32(g.c as i32)];
        args.extend(totals.args(plan.splits));
        self.launch("elementwise", "channel_sum_nhwc", totals.config(segments)?, &args)?;
        Ok(out)
    }

    /// In-place `x = f(x)` kernels (`scale`, `fill`) taking (value, x, n).
    fn update(&self, kernel: &str, value: f32, x: &mut GpuBuf<f32>) -> Result<()> {
        let n = int(x.len(), &format!("the length of the {kernel} input"))?;
        self.launch("elementwise", kernel, per_element(x.len(), kernel)?, &[KernelArg::F32(value), x.arg(), n])
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
        let da = self.alloc::<f32>(a.len())?;
        let db = self.alloc::<f32>(a.len())?;
        let args = [a.arg(), b.arg(), dy.arg(), da.arg(), db.arg(), n];
        self.launch("elementwise", "mul_backward", per_element(a.len(), "mul_backward")?, &args)?;
        Ok((da, db))
    }

    fn add_channel(&self, x: &GpuBuf<f32>, b: &GpuBuf<f32>, g: &ChannelBroadcast) -> Result<GpuBuf<f32>> {
        g.check("add_channel", x.len(), b.len())?;
        self.broadcast("add_channel", x, b, g)
    }

    fn add_channel_backward(&self, dy: &GpuBuf<f32>, g: &ChannelBroadcast) -> Result<GpuBuf<f32>> {
        expect_len("add_channel backward", "dy", dy.len(), g.x_len())?;
        self.channel_reduce("channel_sum", dy, None, g)
    }

    fn mul_channel(&self, x: &GpuBuf<f32>, s: &GpuBuf<f32>, g: &ChannelBroadcast) -> Result<GpuBuf<f32>> {
        g.check("mul_channel", x.len(), s.len())?;
        self.broadcast("mul_channel", x, s, g)
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
        let dx = self.broadcast("mul_channel", dy, s, g)?;
        let ds = self.channel_reduce("channel_dot", dy, Some(x), g)?;
        Ok((dx, ds))
    }

    fn axpy(&self, alpha: f32, x: &GpuBuf<f32>, y: &mut GpuBuf<f32>) -> Result<()> {
        expect_len("axpy", "x", x.len(), y.len())?;
        let n = int(y.len(), "the length of the axpy input")?;
        let args = [KernelArg::F32(alpha), x.stored_arg(), x.format_arg(), y.stored_arg(), y.format_arg(), n];
        self.launch("elementwise", "axpy", per_element(y.len(), "axpy")?, &args)
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
