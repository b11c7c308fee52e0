//! GPU channel concat/split/shuffle: kernels/channel.cu. Concat and split launch one slab copy
//! per part; the shuffle's inverse is the shuffle with C/groups groups. Results are stored in
//! their source's format (concat: the first input's), each copy reading its source's format.
//! A thread moves 4 values in one access each way where the runs moved together are whole groups
//! of 4 and the buffers 16-byte aligned, else one value.

use super::{channel_offsets, check_concat_inputs, check_shuffle, ChannelOps};
use crate::device::Buffer;
use crate::error::Result;
use crate::device::driver::KernelArg;
use crate::gpu::grid::{int, per_element};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::check::expect_len;
use crate::ops::elementwise::all_aligned16;

/// Values a thread of kernels/channel.cu moves: 4 when `runs` (every length and start of a run
/// moved together) are multiples of 4 and `buffers` are 16-byte aligned, else 1.
fn values_per_thread(runs: &[usize], buffers: &[&GpuBuf<f32>]) -> usize {
    if runs.iter().all(|r| r.is_multiple_of(4)) && all_aligned16(buffers) {
        4
    } else {
        1
    }
}

/// A run of channels inside a [N, channels, HW] tensor.
#[derive(Clone, Copy)]
struct Channels<'a> {
    buf: &'a GpuBuf<f32>,
    /// The tensor's channel count.
    total: usize,
    /// The run's first channel.
    first: usize,
}

impl GpuBackend {
    /// Copies `count` channels of every image from `src` to `dst`.
    fn copy_channels(&self, src: Channels, dst: Channels, count: usize, n: usize, hw: usize) -> Result<()> {
        // Every size below is at most the larger tensor's element count, checked to fit an int.
        int(n * src.total.max(dst.total) * hw, "the element count of a concatenated tensor")?;
        let arg = |v: usize| KernelArg::I32(v as i32);
        let runs = [count, src.total, src.first, dst.total, dst.first].map(|channels| channels * hw);
        let per_thread = values_per_thread(&runs, &[src.buf, dst.buf]);
        let args = [
            src.buf.stored_arg(),
            src.buf.format_arg(),
            dst.buf.stored_arg(),
            dst.buf.format_arg(),
            arg(n),
            arg(hw),
            arg(count),
            arg(src.total),
            arg(src.first),
            arg(dst.total),
            arg(dst.first),
            arg((per_thread == 4) as usize),
        ];
        self.launch("channel", "copy_channels", per_element(n * count * hw / per_thread, "copy_channels")?, &args)
    }

    /// The shuffle of x [N, c, hw] (length already checked) with `groups` groups.
    fn shuffle(&self, x: &GpuBuf<f32>, c: usize, hw: usize, groups: usize, op: &str) -> Result<GpuBuf<f32>> {
        // c, hw and groups are at most the element count, checked to fit an int.
        let total = int(x.len(), &format!("the element count of the {op} input"))?;
        let y = self.alloc_stored(x.len(), x.stored())?;
        let arg = |v: usize| KernelArg::I32(v as i32);
        // A group of 4 values lies in one plane.
        let per_thread = values_per_thread(&[hw], &[x, &y]);
        let vec = arg((per_thread == 4) as usize);
        let args = [x.stored_arg(), x.format_arg(), y.stored_arg(), y.format_arg(), arg(c), arg(hw), arg(groups), total, vec];
        self.launch("channel", "channel_shuffle", per_element(x.len() / per_thread, "channel_shuffle")?, &args)?;
        Ok(y)
    }
}

impl ChannelOps<f32> for GpuBackend {
    fn concat_channels(&self, xs: &[&GpuBuf<f32>], channels: &[usize], n: usize, hw: usize) -> Result<GpuBuf<f32>> {
        check_concat_inputs(&xs.iter().map(|x| x.len()).collect::<Vec<_>>(), channels, n, hw)?;
        let (offsets, total) = channel_offsets(channels);
        let format = xs.first().map_or(crate::precision::StoredFormat::F32, |x| x.stored());
        let y = self.alloc_stored(n * total * hw, format)?;
        for ((x, &count), &first) in xs.iter().zip(channels).zip(&offsets) {
            let src = Channels { buf: x, total: count, first: 0 };
            self.copy_channels(src, Channels { buf: &y, total, first }, count, n, hw)?;
        }
        Ok(y)
    }

    fn split_channels(&self, x: &GpuBuf<f32>, channels: &[usize], n: usize, hw: usize) -> Result<Vec<GpuBuf<f32>>> {
        let (offsets, total) = channel_offsets(channels);
        expect_len("split_channels", "x", x.len(), n * total * hw)?;
        channels
            .iter()
            .zip(&offsets)
            .map(|(&count, &first)| {
                let part = self.alloc_stored(n * count * hw, x.stored())?;
                let dst = Channels { buf: &part, total: count, first: 0 };
                self.copy_channels(Channels { buf: x, total, first }, dst, count, n, hw)?;
                Ok(part)
            })
            .collect()
    }

    fn channel_shuffle(&self, x: &GpuBuf<f32>, n: usize, c: usize, hw: usize, groups: usize) -> Result<GpuBuf<f32>> {
        check_shuffle("channel_shuffle", "x", x.len(), (n, c, hw), groups)?;
        self.shuffle(x, c, hw, groups, "channel_shuffle")
    }

    fn channel_shuffle_backward(
        &self,
        dy: &GpuBuf<f32>,
        n: usize,
        c: usize,
        hw: usize,
        groups: usize,
    ) -> Result<GpuBuf<f32>> {
        let per_group = check_shuffle("channel_shuffle backward", "dy", dy.len(), (n, c, hw), groups)?;
        self.shuffle(dy, c, hw, per_group, "channel_shuffle backward")
    }
}
