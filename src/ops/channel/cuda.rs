//! GPU channel concat/split/shuffle: kernels/channel.cu. Concat and split launch one slab copy
//! per part; the shuffle's inverse is the shuffle with C/groups groups.

use super::ChannelOps;
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::gpu::driver::KernelArg;
use crate::ops::check::expect_len;
use crate::gpu::grid::{int, per_element};
use crate::gpu::{GpuBackend, GpuBuf};

/// Where one part's channels sit inside the joined tensor.
struct Slab {
    /// Channels in the part.
    count: usize,
    /// The part's first channel in the joined tensor.
    first: usize,
}

fn slabs(op: &str, channels: &[usize]) -> Result<(Vec<Slab>, usize)> {
    if channels.is_empty() {
        return Err(Error::shape(format!("{op} needs at least one part")));
    }
    let mut first = 0;
    let parts = channels
        .iter()
        .map(|&count| {
            let slab = Slab { count, first };
            first += count;
            slab
        })
        .collect();
    Ok((parts, first))
}

impl GpuBackend {
    /// Copies `count` channels from channel `src_first` of src [n, src_c, hw] to channel
    /// `dst_first` of dst [n, dst_c, hw].
    #[allow(clippy::too_many_arguments)]
    fn copy_channels(
        &self,
        src: &GpuBuf<f32>,
        src_c: usize,
        src_first: usize,
        dst: &GpuBuf<f32>,
        dst_c: usize,
        dst_first: usize,
        count: usize,
        n: usize,
        hw: usize,
    ) -> Result<()> {
        let elems = n * count * hw;
        // Every size below is at most the larger tensor's element count, checked to fit an int.
        int(n * src_c.max(dst_c) * hw, "the element count of a concatenated tensor")?;
        let arg = |v: usize| KernelArg::I32(v as i32);
        let args = [src.arg(), dst.arg(), arg(n), arg(hw), arg(count), arg(src_c), arg(src_first), arg(dst_c), arg(dst_first)];
        self.launch("channel", "copy_channels", per_element(elems, "copy_channels")?, &args)
    }

    fn shuffle(&self, x: &GpuBuf<f32>, n: usize, c: usize, hw: usize, groups: usize, op: &str) -> Result<GpuBuf<f32>> {
        if groups == 0 || c % groups != 0 {
            return Err(Error::shape(format!("{op}: groups={groups} must divide the {c} channels")));
        }
        expect_len(op, "x", x.len(), n * c * hw)?;
        // c, hw and groups are at most the element count, checked to fit an int.
        let total = int(x.len(), &format!("the element count of the {op} input"))?;
        let y = self.alloc::<f32>(x.len())?;
        let arg = |v: usize| KernelArg::I32(v as i32);
        let args = [x.arg(), y.arg(), arg(c), arg(hw), arg(groups), total];
        self.launch("channel", "channel_shuffle", per_element(x.len(), "channel_shuffle")?, &args)?;
        Ok(y)
    }
}

impl ChannelOps<f32> for GpuBackend {
    fn concat_channels(&self, xs: &[&GpuBuf<f32>], channels: &[usize], n: usize, hw: usize) -> Result<GpuBuf<f32>> {
        if xs.len() != channels.len() {
            return Err(Error::shape(format!("concat: {} inputs but {} channel counts", xs.len(), channels.len())));
        }
        let (parts, total_c) = slabs("concat", channels)?;
        for (i, (x, part)) in xs.iter().zip(&parts).enumerate() {
            expect_len("concat", &format!("input {i}"), x.len(), n * part.count * hw)?;
        }
        let y = self.alloc::<f32>(n * total_c * hw)?;
        for (x, part) in xs.iter().zip(&parts) {
            self.copy_channels(x, part.count, 0, &y, total_c, part.first, part.count, n, hw)?;
        }
        Ok(y)
    }

    fn split_channels(&self, x: &GpuBuf<f32>, channels: &[usize], n: usize, hw: usize) -> Result<Vec<GpuBuf<f32>>> {
        let (parts, total_c) = slabs("split", channels)?;
        expect_len("split", "x", x.len(), n * total_c * hw)?;
        parts
            .iter()
            .map(|part| {
                let y = self.alloc::<f32>(n * part.count * hw)?;
                self.copy_channels(x, total_c, part.first, &y, part.count, 0, part.count, n, hw)?;
                Ok(y)
            })
            .collect()
    }

    fn channel_shuffle(&self, x: &GpuBuf<f32>, n: usize, c: usize, hw: usize, groups: usize) -> Result<GpuBuf<f32>> {
        self.shuffle(x, n, c, hw, groups, "channel_shuffle")
    }

    fn channel_shuffle_backward(&self, dy: &GpuBuf<f32>, n: usize, c: usize, hw: usize, groups: usize) -> Result<GpuBuf<f32>> {
        if groups == 0 || c % groups != 0 {
            return Err(Error::shape(format!("channel_shuffle backward: groups={groups} must divide the {c} channels")));
        }
        self.shuffle(dy, n, c, hw, c / groups, "channel_shuffle backward")
    }
}
