//! GPU BatchNorm2d: kernels/norm.cu. Training statistics and gradients are reduced in fp32 with
//! warp shuffles and shared memory, one block per (channel, chunk of the channel's N*H*W values),
//! 4 consecutive values of a plane per load where hw allows (the `_vec4` kernels), then merged
//! per channel; normalisation and dx are one thread per element, as is eval. The
//! fused batch norm -> (add) -> activation shares the statistics kernels and applies in one pass.
//! With one value per image and channel (hw == 1, how channels-last activations are normalised)
//! the reductions and the pointwise passes run with threads along channels instead (the `_rows`
//! kernels, on the grid [`RowSplits`] plans), each thread keeping its channel's values over a
//! range of rows. The pointwise passes take 4 values per thread where the layout allows
//! (8 bytes of 16-bit values per load).
//!
//! Activations (x, the residual, dy) are read in their stored format and the outputs (y, dx,
//! dresidual) written in their input's (`NodeOp::reads_stored`); statistics and parameter
//! gradients are f32.

use super::{BatchNormActGrads, BatchNormGeom, BatchNormSaved, NormOps};
use crate::device::Buffer;
use crate::error::Result;
use crate::device::driver::KernelArg;
use crate::gpu::grid::{int, per_element, pointers_aligned16, reduction};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::activation::activation_kind_code;
use crate::ops::elementwise::RowSplits;
use crate::ops::{Activation, ChannelBroadcast, ElementwiseOps};
use crate::shape::Layout;

/// Values per block below which cutting a channel into more chunks does not pay.
const MIN_CHUNK: usize = 4096;
/// Enough blocks of the per-chunk reductions to fill any current GPU a few times over.
const TARGET_BLOCKS: usize = 512;

/// How each channel's N*H*W values are cut for the per-chunk reductions: `splits` chunks of
/// `chunk` values, the last shorter but never empty. With hw a multiple of 4 the chunk is too, so
/// every chunk starts a group of 4 values the `_vec4` reductions load at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Chunks {
    chunk: usize,
    splits: usize,
}

impl Chunks {
    /// Few channels over large images get several chunks each, many channels one each.
    fn of(g: &BatchNormGeom) -> Self {
        let count = g.count();
        let wanted = TARGET_BLOCKS.div_ceil(g.c).min(count / MIN_CHUNK).max(1);
        let chunk = count.div_ceil(wanted);
        let chunk = if g.hw.is_multiple_of(4) { chunk.next_multiple_of(4) } else { chunk };
        Chunks { chunk, splits: count.div_ceil(chunk) }
    }

    fn blocks(&self, g: &BatchNormGeom) -> usize {
        g.c * self.splits
    }
}

/// How the per-chunk reductions (statistics, backward sums) cover each channel's values: per
/// channel in chunks of its values, or, with one value per image (hw == 1), along channels in
/// ranges of images. Either way they write [C, splits] partials of the same meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reduction {
    PerChannel(Chunks),
    ChannelsInnermost(RowSplits),
}

impl Reduction {
    fn of(g: &BatchNormGeom) -> Self {
        if g.hw == 1 {
            Reduction::ChannelsInnermost(RowSplits::of(1, g.n, g.c))
        } else {
            Reduction::PerChannel(Chunks::of(g))
        }
    }

    /// Values per chunk (images per range), and chunks (ranges) per channel.
    fn chunk_and_splits(&self) -> (usize, usize) {
        match self {
            Reduction::PerChannel(c) => (c.chunk, c.splits),
            Reduction::ChannelsInnermost(r) => (r.rows_per_split, r.splits),
        }
    }

    fn partials(&self, g: &BatchNormGeom) -> usize {
        g.c * self.chunk_and_splits().1
    }

    /// Launches reduction `base` with `args` (its buffers, then [`Reduction::args`]): along
    /// channels `base`_rows; per channel its `_vec4` twin, 4 values per load, where every group of
    /// 4 lies in one plane (hw a multiple of 4, and so the chunk) and every buffer in `args` is
    /// 16-byte aligned, else `base`.
    fn launch(&self, gpu: &GpuBackend, base: &str, g: &BatchNormGeom, args: &[KernelArg]) -> Result<()> {
        let (kernel, config) = match self {
            Reduction::PerChannel(c) if g.hw.is_multiple_of(4) && pointers_aligned16(args) => {
                (format!("{base}_vec4"), reduction(c.blocks(g), c.chunk / 4)?)
            }
            Reduction::PerChannel(c) => (base.to_string(), reduction(c.blocks(g), c.chunk)?),
            Reduction::ChannelsInnermost(r) => (format!("{base}_rows"), r.config(1)?),
        };
        gpu.launch("norm", &kernel, config, args)
    }

    /// The kernels' trailing arguments: (n, c, hw, chunk, splits) per channel, (C, rows,
    /// rows_per_split, chunks, splits) along channels; `geometry_args` checked them.
    fn args(&self, g: &BatchNormGeom) -> Result<Vec<KernelArg>> {
        let [n, c, hw] = geometry_args(g)?;
        let (chunk, splits) = self.chunk_and_splits();
        let (chunk, splits) = (KernelArg::I32(chunk as i32), KernelArg::I32(splits as i32));
        Ok(match self {
            Reduction::PerChannel(_) => vec![n, c, hw, chunk, splits],
            Reduction::ChannelsInnermost(r) => vec![c, n, chunk, KernelArg::I32(r.chunks as i32), splits],
        })
    }
}

/// The (n, c, hw) kernel arguments, after checking the flat indices fit in 32 bits (n, c and hw,
/// and so chunk and splits, are at most that).
fn geometry_args(g: &BatchNormGeom) -> Result<[KernelArg; 3]> {
    int(g.len(), "the element count of the batch_norm2d input")?;
    Ok([KernelArg::I32(g.n as i32), KernelArg::I32(g.c as i32), KernelArg::I32(g.hw as i32)])
}

/// A buffer's pointer and stored-format code, the two kernel arguments of an activation.
fn stored(buf: &GpuBuf<f32>) -> [KernelArg; 2] {
    [buf.stored_arg(), buf.format_arg()]
}

/// 1 / (values per channel), the backward passes' mean factor.
fn inv_count(g: &BatchNormGeom) -> KernelArg {
    KernelArg::F32((1.0 / g.count() as f64) as f32)
}

/// The per-channel operands of both forwards, named for the length check.
fn forward_per_channel<'a>(
    gamma: &GpuBuf<f32>,
    beta: &GpuBuf<f32>,
    running_mean: &GpuBuf<f32>,
    running_var: &GpuBuf<f32>,
) -> [(&'a str, usize); 4] {
    [
        ("gamma", gamma.len()),
        ("beta", beta.len()),
        ("running_mean", running_mean.len()),
        ("running_var", running_var.len()),
    ]
}

impl GpuBackend {
    /// Launches pointwise pass `kernel` (bn_apply, bn_backward_apply and their fused
    /// counterparts) with its leading arguments `args`, then its geometry, then `tail`: one
    /// thread per 4 elements with (c, hw, total), or with channels innermost its `_rows` version
    /// on the reductions' grid with (C, rows, rows_per_split, chunks).
    fn normalise_pointwise(&self, kernel: &str, mut args: Vec<KernelArg>, g: &BatchNormGeom, tail: &[KernelArg]) -> Result<()> {
        let [n, c, hw] = geometry_args(g)?;
        let (name, config) = match Reduction::of(g) {
            Reduction::ChannelsInnermost(r) => {
                args.extend([c, n, KernelArg::I32(r.rows_per_split as i32), KernelArg::I32(r.chunks as i32)]);
                (format!("{kernel}_rows"), r.config(1)?)
            }
            Reduction::PerChannel(_) => {
                args.extend([c, hw, KernelArg::I32(g.len() as i32)]);
                (kernel.to_string(), per_element(g.len().div_ceil(4), kernel)?)
            }
        };
        args.extend_from_slice(tail);
        self.launch("norm", &name, config, &args)
    }

    /// The batch statistics (bn_partial_stats, one pass per chunk, then bn_finalize_stats, which
    /// also moves the running statistics) of a training forward.
    fn train_statistics(
        &self,
        x: &GpuBuf<f32>,
        running_mean: &mut GpuBuf<f32>,
        running_var: &mut GpuBuf<f32>,
        momentum: f64,
        g: &BatchNormGeom,
    ) -> Result<BatchNormSaved<GpuBuf<f32>>> {
        let plan = Reduction::of(g);
        let (chunk, splits) = plan.chunk_and_splits();
        let (chunk, splits) = (KernelArg::I32(chunk as i32), KernelArg::I32(splits as i32));

        let part_mean = self.alloc::<f32>(plan.partials(g))?;
        let part_m2 = self.alloc::<f32>(plan.partials(g))?;
        let mut args = [stored(x).to_vec(), vec![part_mean.arg(), part_m2.arg()]].concat();
        args.extend(plan.args(g)?);
        plan.launch(self, "bn_partial_stats", g, &args)?;

        let saved = BatchNormSaved { mean: self.alloc::<f32>(g.c)?, invstd: self.alloc::<f32>(g.c)? };
        let args = [
            part_mean.arg(),
            part_m2.arg(),
            saved.mean.arg(),
            saved.invstd.arg(),
            running_mean.arg(),
            running_var.arg(),
            KernelArg::I32(g.count() as i32),
            chunk,
            splits,
            KernelArg::F32(g.eps as f32),
            KernelArg::F32(momentum as f32),
        ];
        self.launch("norm", "bn_finalize_stats", reduction(g.c, plan.chunk_and_splits().1)?, &args)?;

        Ok(saved)
    }

    /// Sums the per-(channel, chunk) partials of a backward over each channel's chunks.
    fn channel_totals(&self, partials: &GpuBuf<f32>, g: &BatchNormGeom, plan: Reduction) -> Result<GpuBuf<f32>> {
        // The partials are [C, splits]: summing each channel's row is add_channel's backward with
        // one "image" of C planes of `splits` values.
        let rows = ChannelBroadcast { n: 1, c: g.c, hw: plan.chunk_and_splits().1, per_sample: true, layout: Layout::Nchw };
        self.add_channel_backward(partials, &rows)
    }
}

impl NormOps<f32> for GpuBackend {
    fn batch_norm2d_forward_train(
        &self,
        x: &GpuBuf<f32>,
        gamma: &GpuBuf<f32>,
        beta: &GpuBuf<f32>,
        running_mean: &mut GpuBuf<f32>,
        running_var: &mut GpuBuf<f32>,
        momentum: f64,
        g: &BatchNormGeom,
    ) -> Result<(GpuBuf<f32>, BatchNormSaved<GpuBuf<f32>>)> {
        const OP: &str = "batch_norm2d (training)";
        g.check_lengths(OP, &[x.len()], &forward_per_channel(gamma, beta, running_mean, running_var))?;
        g.check_trainable(OP)?;
        let saved = self.train_statistics(x, running_mean, running_var, momentum, g)?;
        let y = self.alloc_stored(g.len(), x.stored())?;
        let args = [
            &stored(x)[..],
            &[saved.mean.arg(), saved.invstd.arg(), gamma.arg(), beta.arg()],
            &stored(&y),
        ]
        .concat();
        self.normalise_pointwise("bn_apply", args, g, &[])?;
        Ok((y, saved))
    }

    fn batch_norm2d_forward_eval(
        &self,
        x: &GpuBuf<f32>,
        gamma: &GpuBuf<f32>,
        beta: &GpuBuf<f32>,
        running_mean: &GpuBuf<f32>,
        running_var: &GpuBuf<f32>,
        g: &BatchNormGeom,
    ) -> Result<GpuBuf<f32>> {
        const OP: &str = "batch_norm2d (eval)";
        g.check_lengths(OP, &[x.len()], &forward_per_channel(gamma, beta, running_mean, running_var))?;
        let [_, c, hw] = geometry_args(g)?;
        let y = self.alloc_stored(g.len(), x.stored())?;
        let [x_ptr, x_format] = stored(x);
        let [y_ptr, y_format] = stored(&y);
        let args = [
            x_ptr,
            x_format,
            gamma.arg(),
            beta.arg(),
            running_mean.arg(),
            running_var.arg(),
            y_ptr,
            y_format,
            c,
            hw,
            KernelArg::I32(g.len() as i32),
            KernelArg::F32(g.eps as f32),
        ];
        self.launch("norm", "bn_forward_eval", per_element(g.len().div_ceil(4), "bn_forward_eval")?, &args)?;
        Ok(y)
    }

    fn batch_norm2d_backward(
        &self,
        dy: &GpuBuf<f32>,
        x: &GpuBuf<f32>,
        gamma: &GpuBuf<f32>,
        saved: &BatchNormSaved<GpuBuf<f32>>,
        g: &BatchNormGeom,
    ) -> Result<(GpuBuf<f32>, GpuBuf<f32>, GpuBuf<f32>)> {
        const OP: &str = "batch_norm2d backward";
        let per_channel =
            [("gamma", gamma.len()), ("saved mean", saved.mean.len()), ("saved invstd", saved.invstd.len())];
        g.check_lengths(OP, &[x.len(), dy.len()], &per_channel)?;
        let plan = Reduction::of(g);

        let part_dy = self.alloc::<f32>(plan.partials(g))?;
        let part_dy_xhat = self.alloc::<f32>(plan.partials(g))?;
        let mut args = [
            &stored(dy)[..],
            &stored(x),
            &[saved.mean.arg(), saved.invstd.arg(), part_dy.arg(), part_dy_xhat.arg()],
        ]
        .concat();
        args.extend(plan.args(g)?);
        plan.launch(self, "bn_partial_grads", g, &args)?;

        let dbeta = self.channel_totals(&part_dy, g, plan)?;
        let dgamma = self.channel_totals(&part_dy_xhat, g, plan)?;

        let dx = self.alloc_stored(g.len(), x.stored())?;
        let args = [
            &stored(dy)[..],
            &stored(x),
            &[gamma.arg(), saved.mean.arg(), saved.invstd.arg(), dgamma.arg(), dbeta.arg()],
            &stored(&dx),
        ]
        .concat();
        self.normalise_pointwise("bn_backward_apply", args, g, &[inv_count(g)])?;
        Ok((dx, dgamma, dbeta))
    }

    fn batch_norm_act_forward_train(
        &self,
        x: &GpuBuf<f32>,
        residual: Option<&GpuBuf<f32>>,
        gamma: &GpuBuf<f32>,
        beta: &GpuBuf<f32>,
        running_mean: &mut GpuBuf<f32>,
        running_var: &mut GpuBuf<f32>,
        momentum: f64,
        activation: Activation,
        g: &BatchNormGeom,
    ) -> Result<(GpuBuf<f32>, BatchNormSaved<GpuBuf<f32>>)> {
        const OP: &str = "batch_norm_act (training)";
        let residual_len = residual.map_or(x.len(), |r| r.len());
        g.check_lengths(OP, &[x.len(), residual_len], &forward_per_channel(gamma, beta, running_mean, running_var))?;
        g.check_trainable(OP)?;
        let saved = self.train_statistics(x, running_mean, running_var, momentum, g)?;
        let y = self.alloc_stored(g.len(), x.stored())?;
        let args = [
            &stored(x)[..],
            &stored(residual.unwrap_or(x)),
            &[saved.mean.arg(), saved.invstd.arg(), gamma.arg(), beta.arg()],
            &stored(&y),
            &[KernelArg::I32(residual.is_some() as i32), KernelArg::I32(activation_kind_code(activation))],
        ]
        .concat();
        self.normalise_pointwise("bn_act_apply", args, g, &[])?;
        Ok((y, saved))
    }

    fn batch_norm_act_backward(
        &self,
        dy: &GpuBuf<f32>,
        x: &GpuBuf<f32>,
        residual: Option<&GpuBuf<f32>>,
        gamma: &GpuBuf<f32>,
        beta: &GpuBuf<f32>,
        saved: &BatchNormSaved<GpuBuf<f32>>,
        activation: Activation,
        g: &BatchNormGeom,
    ) -> Result<BatchNormActGrads<GpuBuf<f32>>> {
        const OP: &str = "batch_norm_act backward";
        let per_channel = [
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("saved mean", saved.mean.len()),
            ("saved invstd", saved.invstd.len()),
        ];
        g.check_lengths(OP, &[x.len(), dy.len(), residual.map_or(x.len(), |r| r.len())], &per_channel)?;
        let plan = Reduction::of(g);
        let has_residual = KernelArg::I32(residual.is_some() as i32);
        let kind = KernelArg::I32(activation_kind_code(activation));
        let residual_args = stored(residual.unwrap_or(x));

        let part_dz = self.alloc::<f32>(plan.partials(g))?;
        let part_dz_xhat = self.alloc::<f32>(plan.partials(g))?;
        let mut args = [
            &stored(dy)[..],
            &stored(x),
            &residual_args,
            &[saved.mean.arg(), saved.invstd.arg(), gamma.arg(), beta.arg(), part_dz.arg(), part_dz_xhat.arg()],
            &[has_residual, kind],
        ]
        .concat();
        args.extend(plan.args(g)?);
        plan.launch(self, "bn_act_partial_grads", g, &args)?;
        let dbeta = self.channel_totals(&part_dz, g, plan)?;
        let dgamma = self.channel_totals(&part_dz_xhat, g, plan)?;

        let dx = self.alloc_stored(g.len(), x.stored())?;
        let dresidual = residual.map(|r| self.alloc_stored(g.len(), r.stored())).transpose()?;
        let args = [
            &stored(dy)[..],
            &stored(x),
            &residual_args,
            &[gamma.arg(), beta.arg(), saved.mean.arg(), saved.invstd.arg(), dgamma.arg(), dbeta.arg()],
            &stored(&dx),
            &stored(dresidual.as_ref().unwrap_or(&dx)),
            &[has_residual, kind],
        ]
        .concat();
        self.normalise_pointwise("bn_act_backward_apply", args, g, &[inv_count(g)])?;
        Ok(BatchNormActGrads { dx, dresidual, dgamma, dbeta })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_each_channel_with_no_empty_chunk() {
        for (n, c, hw) in [(1, 3, 35), (64, 3, 224 * 224), (128, 512, 49), (2, 1, 1), (5, 2, 4097), (7, 1, 1171), (1, 1, 12296)] {
            let g = BatchNormGeom::new(n, c, hw, 1e-5).unwrap();
            let Chunks { chunk, splits } = Chunks::of(&g);
            assert!(!hw.is_multiple_of(4) || chunk.is_multiple_of(4), "{n}x{c}x{hw}: chunk {chunk} splits a group of 4");
            assert!(
                splits * chunk >= g.count() && (splits - 1) * chunk < g.count(),
                "{n}x{c}x{hw}: {chunk} x {splits}"
            );
            assert!(splits == 1 || chunk >= MIN_CHUNK, "{n}x{c}x{hw}: chunk {chunk} below the minimum");
            assert!(splits == 1 || g.c * splits <= 2 * TARGET_BLOCKS, "{n}x{c}x{hw}: {splits} splits");
        }
        let few_large = BatchNormGeom::new(64, 3, 224 * 224, 1e-5).unwrap();
        assert!(Chunks::of(&few_large).splits > 100, "three channels over 3.2M values each need many blocks");
        assert_eq!(Chunks::of(&BatchNormGeom::new(128, 512, 49, 1e-5).unwrap()).splits, 1);
    }
}
