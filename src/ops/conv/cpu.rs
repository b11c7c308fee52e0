//! CPU convolution. The general path is im2col + one batched GEMM (batch = groups) per chunk of
//! images, with the chunk sized so the column buffer stays within the backend's workspace limit.
//! Depthwise convolution has direct loops instead: its GEMMs would be a single row each. A
//! pointwise convolution (1x1, stride 1, no padding) multiplies the NCHW buffers in place, one
//! GEMM per image: its im2col matrix would be a copy of the input.
//!
//! The hot loops walk whole rows: for each kernel tap the range of output positions that reads
//! inside the input is computed once (`valid_outputs`), so no per-element padding test remains.

use super::{ConvGeom, ConvOps};
use crate::cpu::layout::{nchw_to_nhwc, nhwc_to_nchw};
use crate::cpu::{CpuBackend, CpuBuf};
use crate::shape::Layout;
use crate::element::Element;
use crate::cpu::par::{lane_sum, lane_sum2};
use crate::error::Result;
use crate::ops::check::expect_len;
use crate::ops::gemm::{GemmOps, GemmSpec};
use rayon::prelude::*;
use std::ops::Range;

/// The output positions `o` in 0..out whose input index `o * stride + offset` lies in 0..len,
/// as a half-open range (empty when the tap never touches the input).
fn valid_outputs(out: usize, stride: usize, offset: isize, len: usize) -> (usize, usize) {
    let lo = if offset >= 0 { 0 } else { offset.unsigned_abs().div_ceil(stride) };
    let hi = if offset >= len as isize { 0 } else { ((len as isize - offset) as usize).div_ceil(stride) };
    let hi = hi.min(out);
    (lo.min(hi), hi)
}

/// Input index of output position `o` (which `valid_outputs` has proven in range).
#[inline]
fn input_index(o: usize, stride: usize, offset: isize) -> usize {
    ((o * stride) as isize + offset) as usize
}

// The strided loops below take every `stride`-th element as the first of a chunk of `stride`:
// with the stride a constant (the arms for 2), the compiler vectorises them with shuffles, which it
// does not for `step_by`.

/// dst[i] += alpha * src[i * stride] for every i in dst.
#[inline]
fn gather_axpy<E: Element>(dst: &mut [E], src: &[E], stride: usize, alpha: E) {
    #[inline(always)]
    fn strided<E: Element>(dst: &mut [E], src: &[E], stride: usize, alpha: E) {
        for (d, s) in dst.iter_mut().zip(src.chunks(stride)) {
            *d += alpha * s[0];
        }
    }
    match stride {
        1 => dst.iter_mut().zip(src).for_each(|(d, &s)| *d += alpha * s),
        2 => strided(dst, src, 2, alpha),
        _ => strided(dst, src, stride, alpha),
    }
}

/// dst[i * stride] += alpha * src[i] for every i in src.
#[inline]
fn scatter_axpy<E: Element>(dst: &mut [E], src: &[E], stride: usize, alpha: E) {
    #[inline(always)]
    fn strided<E: Element>(dst: &mut [E], src: &[E], stride: usize, alpha: E) {
        for (d, &s) in dst.chunks_mut(stride).zip(src) {
            d[0] += alpha * s;
        }
    }
    match stride {
        1 => dst.iter_mut().zip(src).for_each(|(d, &s)| *d += alpha * s),
        2 => strided(dst, src, 2, alpha),
        _ => strided(dst, src, stride, alpha),
    }
}

/// sum over i of a[i] * b[i * stride] (in eight lanes when the stride is 1).
#[inline]
fn strided_dot<E: Element>(a: &[E], b: &[E], stride: usize) -> E {
    #[inline(always)]
    fn strided<E: Element>(a: &[E], b: &[E], stride: usize) -> E {
        a.iter().zip(b.chunks(stride)).fold(E::zero(), |acc, (&x, y)| acc + x * y[0])
    }
    match stride {
        1 => lane_sum2(a, &b[..a.len()], |x, y| x * y),
        2 => strided(a, b, 2),
        _ => strided(a, b, stride),
    }
}

/// One kernel tap (ki, kj) of a geometry: which output positions read inside the input, and where.
struct Tap {
    h_offset: isize,
    /// Valid output rows and columns, half-open; the tap reads nothing when either is empty.
    oh: (usize, usize),
    ow: (usize, usize),
    /// Input column read by output column `ow.0` (0 when the tap reads nothing).
    iw0: usize,
}

impl Tap {
    fn new(g: &ConvGeom, ki: usize, kj: usize) -> Self {
        let h_offset = (ki * g.dh) as isize - g.ph as isize;
        let w_offset = (kj * g.dw) as isize - g.pw as isize;
        let ow = valid_outputs(g.ow, g.sw, w_offset, g.w);
        let iw0 = if ow.0 < ow.1 { input_index(ow.0, g.sw, w_offset) } else { 0 };
        Tap { h_offset, oh: valid_outputs(g.oh, g.sh, h_offset, g.h), ow, iw0 }
    }
    fn is_empty(&self) -> bool {
        self.oh.0 >= self.oh.1 || self.ow.0 >= self.ow.1
    }
    fn ih(&self, g: &ConvGeom, oh: usize) -> usize {
        input_index(oh, g.sh, self.h_offset)
    }
    /// The input row output row `oh` reads through this tap, if it reads inside the input.
    fn input_row(&self, g: &ConvGeom, oh: usize) -> Option<usize> {
        (!self.is_empty() && (self.oh.0..self.oh.1).contains(&oh)).then(|| self.ih(g, oh))
    }
    /// The output row that reads input row `ih` through this tap, if one does.
    fn output_row(&self, g: &ConvGeom, ih: usize) -> Option<usize> {
        let from_top = ih as isize - self.h_offset;
        let oh = usize::try_from(from_top).ok().filter(|&d| d % g.sh == 0)? / g.sh;
        self.input_row(g, oh).map(|_| oh)
    }
    /// The output columns this tap reads inside the input.
    fn columns(&self) -> Range<usize> {
        self.ow.0..self.ow.1
    }
    /// Per output row the tap reaches: the flat index in the input plane of its first read
    /// (later reads follow every `sw` elements) and the flat output-plane range it covers.
    fn row_segments<'a>(&'a self, g: &'a ConvGeom) -> impl Iterator<Item = (usize, Range<usize>)> + 'a {
        (0..g.oh).filter_map(move |oh| {
            let ih = self.input_row(g, oh)?;
            Some((ih * g.w + self.iw0, oh * g.ow + self.ow.0..oh * g.ow + self.ow.1))
        })
    }
}

/// The taps of a kernel in row-major (ki, kj) order, the order of a weight's KH*KW block.
fn conv_taps(g: &ConvGeom) -> Vec<Tap> {
    (0..g.kh * g.kw).map(|t| Tap::new(g, t / g.kw, t % g.kw)).collect()
}

/// What the three depthwise passes share: plane sizes, taps and the channel multiplier, after
/// checking the geometry is depthwise.
struct Depthwise {
    plane_in: usize,
    plane_out: usize,
    taps: Vec<Tap>,
    multiplier: usize,
}

impl Depthwise {
    fn of(g: &ConvGeom) -> Result<Self> {
        g.check_depthwise()?;
        Ok(Depthwise { plane_in: g.h * g.w, plane_out: g.oh * g.ow, taps: conv_taps(g), multiplier: g.c_out / g.c_in })
    }
}

/// The grouped product of one chunk: for each group, out = op(a) * op(b) over `ncols` columns.
fn grouped_spec<E: Element>(g: &ConvGeom, ncols: usize, product: ConvProduct, accumulate: bool) -> GemmSpec<E> {
    let (cout, k) = (g.c_out_per_group(), g.c_in_per_group() * g.kh * g.kw);
    let weight = cout * k;
    let col = k * ncols;
    let out = cout * ncols;
    let (trans_a, trans_b, m, n, inner, stride_a, stride_b, stride_c) = match product {
        ConvProduct::Forward => (false, false, cout, ncols, k, weight, col, out),
        ConvProduct::Data => (true, false, k, ncols, cout, weight, out, col),
        ConvProduct::Filter => (false, true, cout, k, ncols, out, col, weight),
    };
    GemmSpec {
        trans_a,
        trans_b,
        m,
        n,
        k: inner,
        alpha: E::one(),
        beta: if accumulate { E::one() } else { E::zero() },
        batch: g.groups,
        stride_a,
        stride_b,
        stride_c,
        offset_a: 0,
        offset_b: 0,
        offset_c: 0,
    }
}

/// The products of a pointwise convolution on the NCHW buffers themselves: each image's input
/// planes are its im2col matrix, so image n's product is the chunk product of one image with the
/// operands read at the image's offsets. Forward and data products of one group are one GEMM
/// batched over the images (the weights shared), whose images run in parallel; the others are
/// one product per image, the filter gradient accumulating over them.
fn pointwise_specs<E: Element>(g: &ConvGeom, product: ConvProduct, accumulate: bool) -> Vec<GemmSpec<E>> {
    let plane = g.h * g.w;
    let (x_image, y_image) = (g.c_in * plane, g.c_out * plane);
    let image = |n: usize| {
        let (offset_a, offset_b, offset_c) = match product {
            ConvProduct::Forward => (0, n * x_image, n * y_image),
            ConvProduct::Data => (0, n * y_image, n * x_image),
            ConvProduct::Filter => (n * y_image, n * x_image, 0),
        };
        // The filter gradient adds every image after the first to the sum.
        let accumulate = accumulate || (matches!(product, ConvProduct::Filter) && n > 0);
        GemmSpec { offset_a, offset_b, offset_c, ..grouped_spec(g, plane, product, accumulate) }
    };
    match product {
        ConvProduct::Forward | ConvProduct::Data if g.groups == 1 => {
            let (stride_b, stride_c) =
                if matches!(product, ConvProduct::Forward) { (x_image, y_image) } else { (y_image, x_image) };
            vec![GemmSpec { batch: g.n, stride_a: 0, stride_b, stride_c, ..image(0) }]
        }
        _ => (0..g.n).map(image).collect(),
    }
}

#[derive(Clone, Copy)]
enum ConvProduct {
    /// y[C_out, cols] = W * col
    Forward,
    /// col = W^T * dy[C_out, cols]
    Data,
    /// dW += dy[C_out, cols] * col^T
    Filter,
}

/// Copies images n0.. of dy [N, C_out, OH*OW] into `rows` as the matrix [C_out, nb*OH*OW].
fn gather_channel_major<E: Element>(dy: &[E], g: &ConvGeom, n0: usize, nb: usize, rows: &mut [E]) {
    let plane = g.oh * g.ow;
    let ncols = g.col_cols(nb);
    rows[..g.c_out * ncols].par_chunks_mut(ncols).enumerate().for_each(|(co, row)| {
        for (i, dst) in row.chunks_exact_mut(plane).enumerate() {
            dst.copy_from_slice(&dy[((n0 + i) * g.c_out + co) * plane..][..plane]);
        }
    });
}

/// The inverse of `gather_channel_major`, adding bias[co] on the way.
fn scatter_channel_major<E: Element>(rows: &[E], bias: Option<&[E]>, g: &ConvGeom, n0: usize, nb: usize, y: &mut [E]) {
    let plane = g.oh * g.ow;
    let ncols = g.col_cols(nb);
    y[n0 * g.c_out * plane..(n0 + nb) * g.c_out * plane].par_chunks_mut(plane).enumerate().for_each(|(p, dst)| {
        let (i, co) = (p / g.c_out, p % g.c_out);
        let src = &rows[co * ncols + i * plane..][..plane];
        match bias {
            Some(b) => dst.iter_mut().zip(src).for_each(|(d, &s)| *d = s + b[co]),
            None => dst.copy_from_slice(src),
        }
    });
}

impl CpuBackend {
    /// Runs `step(n0, nb, cols, rows)` over the batch in chunks of `nb` images, sized so the
    /// im2col columns (`cols`) stay within the workspace; `rows` holds the chunk's
    /// [C_out, nb * OH * OW] matrix.
    fn for_each_image_chunk<E: Element>(
        &self,
        g: &ConvGeom,
        mut step: impl FnMut(usize, usize, &mut CpuBuf<E>, &mut CpuBuf<E>) -> Result<()>,
    ) -> Result<()> {
        let chunk = g.images_per_chunk(self.workspace_bytes, std::mem::size_of::<E>());
        let mut cols = self.wrap(vec![E::zero(); g.col_rows() * g.col_cols(chunk)]);
        let mut rows = self.wrap(vec![E::zero(); g.c_out * g.col_cols(chunk)]);
        for n0 in (0..g.n).step_by(chunk) {
            step(n0, chunk.min(g.n - n0), &mut cols, &mut rows)?;
        }
        Ok(())
    }
}

/// The column buffers of the CPU's im2col convolution (the GPU gathers them on the fly instead).
impl CpuBackend {
    /// Writes the im2col matrix of images n0..n0+nb into `cols` (at least col_rows * col_cols(nb)).
    pub fn im2col<E: Element>(&self, x: &CpuBuf<E>, g: &ConvGeom, n0: usize, nb: usize, cols: &mut CpuBuf<E>) -> Result<()> {
        expect_len("im2col", "input", x.len(), g.x_len())?;
        g.check_image_chunk(n0, nb, cols.len())?;
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        let ncols = g.col_cols(nb);
        cols[..g.col_rows() * ncols].par_chunks_mut(ncols).enumerate().for_each(|(r, row)| {
            let (c, ki, kj) = (r / (g.kh * g.kw), (r / g.kw) % g.kh, r % g.kw);
            let tap = Tap::new(g, ki, kj);
            if tap.is_empty() {
                row.fill(E::zero());
                return;
            }
            let (ow_lo, ow_hi) = tap.ow;
            let iw0 = tap.iw0;
            for (i, image_row) in row.chunks_exact_mut(plane_out).enumerate() {
                let x_plane = &x[((n0 + i) * g.c_in + c) * plane_in..][..plane_in];
                for (oh, out) in image_row.chunks_exact_mut(g.ow).enumerate() {
                    if oh < tap.oh.0 || oh >= tap.oh.1 {
                        out.fill(E::zero());
                        continue;
                    }
                    let x_row = &x_plane[tap.ih(g, oh) * g.w..][..g.w];
                    out[..ow_lo].fill(E::zero());
                    out[ow_hi..].fill(E::zero());
                    let inside = &mut out[ow_lo..ow_hi];
                    if g.sw == 1 {
                        inside.copy_from_slice(&x_row[iw0..iw0 + inside.len()]);
                    } else {
                        inside.iter_mut().zip(x_row[iw0..].iter().step_by(g.sw)).for_each(|(d, &s)| *d = s);
                    }
                }
            }
        });
        Ok(())
    }

    /// The adjoint of im2col: overwrites images n0..n0+nb of `dx` with the sum of every column
    /// entry that was read from each input position.
    pub fn col2im<E: Element>(&self, cols: &CpuBuf<E>, g: &ConvGeom, n0: usize, nb: usize, dx: &mut CpuBuf<E>) -> Result<()> {
        expect_len("col2im", "output", dx.len(), g.x_len())?;
        g.check_image_chunk(n0, nb, cols.len())?;
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        let ncols = g.col_cols(nb);
        let taps = conv_taps(g);
        // One task per input plane: every column entry that reads from it is added in this task,
        // so no two tasks write the same element.
        dx[n0 * g.c_in * plane_in..(n0 + nb) * g.c_in * plane_in].par_chunks_mut(plane_in).enumerate().for_each(
            |(p, dx_plane)| {
                let (i, c) = (p / g.c_in, p % g.c_in);
                dx_plane.fill(E::zero());
                for (t, tap) in taps.iter().enumerate() {
                    let row = &cols[(c * g.kh * g.kw + t) * ncols + i * plane_out..][..plane_out];
                    for (x_at, out) in tap.row_segments(g) {
                        scatter_axpy(&mut dx_plane[x_at..], &row[out], g.sw, E::one());
                    }
                }
            },
        );
        Ok(())
    }

}

/// Channels-last calls of the general path: the activations reordered to NCHW around the NCHW
/// reference (which stays the one reference), the result reordered back.
impl CpuBackend {
    /// `g`'s NCHW twin when `g` is channels-last.
    fn nchw_twin(g: &ConvGeom) -> Option<ConvGeom> {
        (g.layout == Layout::Nhwc).then(|| g.with_layout(Layout::Nchw))
    }
    /// An NHWC activation of `channels` channels and `plane` pixels as NCHW.
    fn to_nchw<E: Element>(&self, buf: &CpuBuf<E>, channels: usize, plane: usize) -> CpuBuf<E> {
        self.wrap(nhwc_to_nchw(buf, channels, plane))
    }
    /// An NCHW result of `channels` channels and `plane` pixels as NHWC.
    fn to_nhwc<E: Element>(&self, buf: &CpuBuf<E>, channels: usize, plane: usize) -> CpuBuf<E> {
        self.wrap(nchw_to_nhwc(buf, channels, plane))
    }
}

impl<E: Element> ConvOps<E> for CpuBackend {
    fn conv2d_forward(
        &self,
        x: &CpuBuf<E>,
        w: &CpuBuf<E>,
        bias: Option<&CpuBuf<E>>,
        g: &ConvGeom,
    ) -> Result<CpuBuf<E>> {
        g.check_forward_operands("conv2d", x.len(), w.len(), bias.map(|b| b.len()))?;
        if let Some(nchw) = Self::nchw_twin(g) {
            let y = self.conv2d_forward(&self.to_nchw(x, g.c_in, g.h * g.w), w, bias, &nchw)?;
            return Ok(self.to_nhwc(&y, g.c_out, g.oh * g.ow));
        }
        let mut y = self.wrap(vec![E::zero(); g.y_len()]);
        if g.is_pointwise() {
            // Each output plane starts as its bias and the GEMM adds the product to it.
            if let Some(b) = bias {
                y.par_chunks_mut(g.oh * g.ow).enumerate().for_each(|(p, plane)| plane.fill(b[p % g.c_out]));
            }
            for spec in pointwise_specs(g, ConvProduct::Forward, bias.is_some()) {
                self.gemm(&spec, w, x, &mut y)?;
            }
            return Ok(y);
        }
        self.for_each_image_chunk(g, |n0, nb, cols, rows| {
            self.im2col(x, g, n0, nb, cols)?;
            self.gemm(&grouped_spec(g, g.col_cols(nb), ConvProduct::Forward, false), w, cols, rows)?;
            scatter_channel_major(rows, bias.map(|b| &b[..]), g, n0, nb, &mut y);
            Ok(())
        })?;
        Ok(y)
    }

    fn conv2d_backward_data(&self, dy: &CpuBuf<E>, w: &CpuBuf<E>, g: &ConvGeom) -> Result<CpuBuf<E>> {
        g.check_backward_data_operands("conv2d", dy.len(), w.len())?;
        if let Some(nchw) = Self::nchw_twin(g) {
            let dx = self.conv2d_backward_data(&self.to_nchw(dy, g.c_out, g.oh * g.ow), w, &nchw)?;
            return Ok(self.to_nhwc(&dx, g.c_in, g.h * g.w));
        }
        let mut dx = self.wrap(vec![E::zero(); g.x_len()]);
        if g.is_pointwise() {
            for spec in pointwise_specs(g, ConvProduct::Data, false) {
                self.gemm(&spec, w, dy, &mut dx)?;
            }
            return Ok(dx);
        }
        self.for_each_image_chunk(g, |n0, nb, cols, rows| {
            gather_channel_major(dy, g, n0, nb, rows);
            self.gemm(&grouped_spec(g, g.col_cols(nb), ConvProduct::Data, false), w, rows, cols)?;
            self.col2im(cols, g, n0, nb, &mut dx)
        })?;
        Ok(dx)
    }

    fn conv2d_backward_filter(&self, x: &CpuBuf<E>, dy: &CpuBuf<E>, g: &ConvGeom) -> Result<CpuBuf<E>> {
        g.check_backward_filter_operands("conv2d", x.len(), dy.len())?;
        if let Some(nchw) = Self::nchw_twin(g) {
            return self.conv2d_backward_filter(&self.to_nchw(x, g.c_in, g.h * g.w), &self.to_nchw(dy, g.c_out, g.oh * g.ow), &nchw);
        }
        let mut dw = self.wrap(vec![E::zero(); g.weight_len()]);
        if g.is_pointwise() {
            for spec in pointwise_specs(g, ConvProduct::Filter, false) {
                self.gemm(&spec, dy, x, &mut dw)?;
            }
            return Ok(dw);
        }
        self.for_each_image_chunk(g, |n0, nb, cols, rows| {
            self.im2col(x, g, n0, nb, cols)?;
            gather_channel_major(dy, g, n0, nb, rows);
            let spec = grouped_spec(g, g.col_cols(nb), ConvProduct::Filter, n0 > 0);
            self.gemm(&spec, rows, cols, &mut dw)
        })?;
        Ok(dw)
    }

    fn conv2d_backward_bias(&self, dy: &CpuBuf<E>, g: &ConvGeom) -> Result<CpuBuf<E>> {
        expect_len("conv2d", "output gradient", dy.len(), g.y_len())?;
        if let Some(nchw) = Self::nchw_twin(g) {
            return self.conv2d_backward_bias(&self.to_nchw(dy, g.c_out, g.oh * g.ow), &nchw);
        }
        let plane = g.oh * g.ow;
        let db = (0..g.c_out)
            .into_par_iter()
            .map(|co| (0..g.n).map(|n| lane_sum(&dy[(n * g.c_out + co) * plane..][..plane], |v| v)).sum())
            .collect();
        Ok(self.wrap(db))
    }

    fn depthwise_conv2d_forward(
        &self,
        x: &CpuBuf<E>,
        w: &CpuBuf<E>,
        bias: Option<&CpuBuf<E>>,
        g: &ConvGeom,
    ) -> Result<CpuBuf<E>> {
        g.check_forward_operands("depthwise conv2d", x.len(), w.len(), bias.map(|b| b.len()))?;
        if g.layout == Layout::Nhwc {
            let x = self.wrap(nhwc_to_nchw(x, g.c_in, g.h * g.w));
            let y = self.depthwise_conv2d_forward(&x, w, bias, &g.with_layout(Layout::Nchw))?;
            return Ok(self.wrap(nchw_to_nhwc(&y, g.c_out, g.oh * g.ow)));
        }
        let Depthwise { plane_in, plane_out, taps, multiplier } = Depthwise::of(g)?;
        let mut y = self.wrap(vec![E::zero(); g.y_len()]);
        y.par_chunks_mut(plane_out).enumerate().for_each(|(p, y_plane)| {
            let (n, co) = (p / g.c_out, p % g.c_out);
            let x_plane = &x[(n * g.c_in + co / multiplier) * plane_in..][..plane_in];
            let weights = &w[co * taps.len()..(co + 1) * taps.len()];
            // Row by row, every tap adding into the row while it is in L1.
            for (oh, y_row) in y_plane.chunks_exact_mut(g.ow).enumerate() {
                y_row.fill(bias.map_or(E::zero(), |b| b[co]));
                for (tap, &weight) in taps.iter().zip(weights) {
                    if let Some(ih) = tap.input_row(g, oh) {
                        gather_axpy(&mut y_row[tap.columns()], &x_plane[ih * g.w + tap.iw0..], g.sw, weight);
                    }
                }
            }
        });
        Ok(y)
    }

    fn depthwise_conv2d_backward_data(&self, dy: &CpuBuf<E>, w: &CpuBuf<E>, g: &ConvGeom) -> Result<CpuBuf<E>> {
        g.check_backward_data_operands("depthwise conv2d", dy.len(), w.len())?;
        if g.layout == Layout::Nhwc {
            let dy = self.wrap(nhwc_to_nchw(dy, g.c_out, g.oh * g.ow));
            let dx = self.depthwise_conv2d_backward_data(&dy, w, &g.with_layout(Layout::Nchw))?;
            return Ok(self.wrap(nchw_to_nhwc(&dx, g.c_in, g.h * g.w)));
        }
        let Depthwise { plane_in, plane_out, taps, multiplier } = Depthwise::of(g)?;
        let mut dx = self.wrap(vec![E::zero(); g.x_len()]);
        // One task per input plane, which gathers from the `multiplier` output channels it feeds,
        // row by row so that every tap adds into the row while it is in L1.
        dx.par_chunks_mut(plane_in).enumerate().for_each(|(p, dx_plane)| {
            let (n, ci) = (p / g.c_in, p % g.c_in);
            for (ih, dx_row) in dx_plane.chunks_exact_mut(g.w).enumerate() {
                for co in ci * multiplier..(ci + 1) * multiplier {
                    let dy_plane = &dy[(n * g.c_out + co) * plane_out..][..plane_out];
                    for (tap, &weight) in taps.iter().zip(&w[co * taps.len()..(co + 1) * taps.len()]) {
                        if let Some(oh) = tap.output_row(g, ih) {
                            let dy_row = &dy_plane[oh * g.ow..][..g.ow];
                            scatter_axpy(&mut dx_row[tap.iw0..], &dy_row[tap.columns()], g.sw, weight);
                        }
                    }
                }
            }
        });
        Ok(dx)
    }

    fn depthwise_conv2d_backward_filter(&self, x: &CpuBuf<E>, dy: &CpuBuf<E>, g: &ConvGeom) -> Result<CpuBuf<E>> {
        g.check_backward_filter_operands("depthwise conv2d", x.len(), dy.len())?;
        if g.layout == Layout::Nhwc {
            let (x, dy) = (self.wrap(nhwc_to_nchw(x, g.c_in, g.h * g.w)), self.wrap(nhwc_to_nchw(dy, g.c_out, g.oh * g.ow)));
            return self.depthwise_conv2d_backward_filter(&x, &dy, &g.with_layout(Layout::Nchw));
        }
        let Depthwise { plane_in, plane_out, taps, multiplier } = Depthwise::of(g)?;
        let mut dw = self.wrap(vec![E::zero(); g.weight_len()]);
        // One task per output channel; it sums its taps' gradients over the whole batch, output
        // row by output row so that the rows every tap reads stay in L1.
        dw.par_chunks_mut(taps.len()).enumerate().for_each(|(co, dw_taps)| {
            for n in 0..g.n {
                let x_plane = &x[(n * g.c_in + co / multiplier) * plane_in..][..plane_in];
                let dy_plane = &dy[(n * g.c_out + co) * plane_out..][..plane_out];
                for (oh, dy_row) in dy_plane.chunks_exact(g.ow).enumerate() {
                    for (tap, dw_tap) in taps.iter().zip(dw_taps.iter_mut()) {
                        if let Some(ih) = tap.input_row(g, oh) {
                            *dw_tap += strided_dot(&dy_row[tap.columns()], &x_plane[ih * g.w + tap.iw0..], g.sw);
                        }
                    }
                }
            }
        });
        Ok(dw)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testutil::{assert_close, dot, error_text, finite_diff, narrow, random, widen};
    use crate::device::Device;

    /// (N, C_in, (H, W), C_out, (KH, KW), stride, padding, dilation, groups)
    type Case =
        (usize, usize, (usize, usize), usize, (usize, usize), (usize, usize), (usize, usize), (usize, usize), usize);

    /// Kernels 1/3/5/7/11, strides 1/2/4, paddings 0/1/2, dilations 1/2, groups 1/2/C (depthwise
    /// with multipliers 1 and 2), odd and rectangular sizes, batches 1 to 3; the first and the
    /// last two are pointwise (grouped and not), which multiply the NCHW buffers in place.
    const CASES: &[Case] = &[
        (1, 3, (11, 11), 4, (1, 1), (1, 1), (0, 0), (1, 1), 1),
        (3, 4, (9, 7), 6, (3, 3), (1, 1), (1, 1), (1, 1), 2),
        (2, 3, (13, 13), 5, (5, 5), (2, 2), (2, 2), (1, 1), 1),
        (1, 2, (15, 15), 3, (7, 7), (2, 2), (1, 1), (1, 1), 1),
        (1, 3, (23, 23), 4, (11, 11), (4, 4), (2, 2), (1, 1), 1),
        (3, 4, (9, 9), 4, (3, 3), (1, 1), (2, 2), (2, 2), 1),
        (1, 1, (9, 9), 2, (3, 3), (4, 4), (0, 0), (1, 1), 1),
        (2, 2, (6, 10), 4, (3, 1), (2, 1), (1, 0), (1, 2), 2),
        (3, 4, (7, 9), 4, (3, 3), (1, 1), (1, 1), (1, 1), 4),
        (2, 3, (8, 7), 6, (3, 3), (2, 2), (1, 1), (1, 1), 3),
        (1, 2, (11, 11), 2, (5, 5), (1, 1), (2, 2), (2, 2), 2),
        (3, 5, (9, 9), 10, (3, 3), (2, 2), (0, 0), (1, 1), 5),
        (3, 4, (5, 7), 6, (1, 1), (1, 1), (0, 0), (1, 1), 2),
        (2, 6, (4, 3), 5, (1, 1), (1, 1), (0, 0), (2, 2), 1),
    ];

    fn geom(&(n, c_in, hw, c_out, k, s, p, d, groups): &Case) -> ConvGeom {
        ConvGeom::new(n, c_in, hw, c_out, k, s, p, d, groups).unwrap()
    }

    /// A backend whose workspace holds the columns of two images, so a batch of 3 takes two chunks.
    fn chunked_backend(g: &ConvGeom) -> CpuBackend {
        let mut cpu = CpuBackend::new();
        cpu.workspace_bytes = 2 * g.col_rows() * g.oh * g.ow * std::mem::size_of::<f64>();
        cpu
    }

    /// The direct 7-loop convolution of the definition.
    fn naive_forward(x: &[f64], w: &[f64], bias: Option<&[f64]>, g: &ConvGeom) -> Vec<f64> {
        let (cin_pg, cout_pg) = (g.c_in_per_group(), g.c_out_per_group());
        let mut y = vec![0.0; g.y_len()];
        for n in 0..g.n {
            for co in 0..g.c_out {
                for oh in 0..g.oh {
                    for ow in 0..g.ow {
                        let mut acc = bias.map_or(0.0, |b| b[co]);
                        for cig in 0..cin_pg {
                            let ci = co / cout_pg * cin_pg + cig;
                            for ki in 0..g.kh {
                                for kj in 0..g.kw {
                                    let ih = (oh * g.sh + ki * g.dh) as isize - g.ph as isize;
                                    let iw = (ow * g.sw + kj * g.dw) as isize - g.pw as isize;
                                    if ih < 0 || iw < 0 || ih >= g.h as isize || iw >= g.w as isize {
                                        continue;
                                    }
                                    let xv = x[((n * g.c_in + ci) * g.h + ih as usize) * g.w + iw as usize];
                                    acc += xv * w[((co * cin_pg + cig) * g.kh + ki) * g.kw + kj];
                                }
                            }
                        }
                        y[((n * g.c_out + co) * g.oh + oh) * g.ow + ow] = acc;
                    }
                }
            }
        }
        y
    }

    /// Operands of a case: (x, w, bias, dy).
    fn operands(g: &ConvGeom, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        (
            random(g.x_len(), seed),
            random(g.weight_len(), seed + 1),
            random(g.c_out, seed + 2),
            random(g.y_len(), seed + 3),
        )
    }

    #[test]
    fn forward_matches_direct_convolution() {
        for (i, case) in CASES.iter().enumerate() {
            let g = geom(case);
            let (x, w, b, _) = operands(&g, 10 * i as u64);
            let want = naive_forward(&x, &w, Some(&b), &g);
            let want_no_bias = naive_forward(&x, &w, None, &g);
            for cpu in [CpuBackend::new(), chunked_backend(&g)] {
                let (xb, wb, bb) = (cpu.wrap(x.clone()), cpu.wrap(w.clone()), cpu.wrap(b.clone()));
                let y = cpu.conv2d_forward(&xb, &wb, Some(&bb), &g).unwrap();
                assert_close(&format!("case {i} forward"), &y, &want, 1e-12);
                let y = cpu.conv2d_forward(&xb, &wb, None, &g).unwrap();
                assert_close(&format!("case {i} forward without bias"), &y, &want_no_bias, 1e-12);
                if g.is_depthwise() {
                    let y = cpu.depthwise_conv2d_forward(&xb, &wb, Some(&bb), &g).unwrap();
                    assert_close(&format!("case {i} depthwise forward"), &y, &want, 1e-12);
                }
            }
        }
    }

    /// <conv(x, w), dy> = <x, backward_data(dy)> = <w, backward_filter(x, dy)>, on both the
    /// im2col path (one chunk and several) and the depthwise path, which must also agree.
    #[test]
    fn backward_passes_are_adjoint_to_forward() {
        for (i, case) in CASES.iter().enumerate() {
            let g = geom(case);
            let (x, w, _, dy) = operands(&g, 10 * i as u64);
            let forward_dot = dot(&naive_forward(&x, &w, None, &g), &dy);
            let mut reference: Option<(Vec<f64>, Vec<f64>)> = None;
            for cpu in [CpuBackend::new(), chunked_backend(&g)] {
                let (xb, wb, dyb) = (cpu.wrap(x.clone()), cpu.wrap(w.clone()), cpu.wrap(dy.clone()));
                let mut grads = vec![(
                    "im2col",
                    cpu.conv2d_backward_data(&dyb, &wb, &g).unwrap().to_vec(),
                    cpu.conv2d_backward_filter(&xb, &dyb, &g).unwrap().to_vec(),
                )];
                if g.is_depthwise() {
                    grads.push((
                        "depthwise",
                        cpu.depthwise_conv2d_backward_data(&dyb, &wb, &g).unwrap().to_vec(),
                        cpu.depthwise_conv2d_backward_filter(&xb, &dyb, &g).unwrap().to_vec(),
                    ));
                }
                for (path, dx, dw) in grads {
                    let what = format!("case {i} {path}");
                    assert_close(&format!("{what} <x, dx>"), &[dot(&x, &dx)], &[forward_dot], 1e-10);
                    assert_close(&format!("{what} <w, dw>"), &[dot(&w, &dw)], &[forward_dot], 1e-10);
                    match &reference {
                        None => reference = Some((dx, dw)),
                        Some((rdx, rdw)) => {
                            assert_close(&format!("{what} dx"), &dx, rdx, 1e-12);
                            assert_close(&format!("{what} dw"), &dw, rdw, 1e-12);
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn backward_bias_sums_the_output_gradient() {
        let g = geom(&CASES[1]);
        let dy = random(g.y_len(), 7);
        let plane = g.oh * g.ow;
        let want: Vec<f64> = (0..g.c_out)
            .map(|co| (0..g.n).map(|n| dy[(n * g.c_out + co) * plane..][..plane].iter().sum::<f64>()).sum())
            .collect();
        let cpu = CpuBackend::new();
        let db = cpu.conv2d_backward_bias(&cpu.wrap(dy), &g).unwrap();
        assert_close("conv bias gradient", &db, &want, 1e-12);
    }

    /// Central differences of L = <conv(x, w) + b, dy> against every gradient entry.
    #[test]
    fn gradients_match_finite_differences() {
        let cpu = CpuBackend::new();
        for case in [&CASES[7], &CASES[9]] {
            let g = geom(case);
            let (x, w, b, dy) = operands(&g, 99);
            let loss = |x: &[f64], w: &[f64], b: &[f64]| {
                let y =
                    cpu.conv2d_forward(&cpu.wrap(x.to_vec()), &cpu.wrap(w.to_vec()), Some(&cpu.wrap(b.to_vec())), &g);
                dot(&y.unwrap(), &dy)
            };
            let h = 1e-5;
            let dyb = cpu.wrap(dy.clone());
            let dx = cpu.conv2d_backward_data(&dyb, &cpu.wrap(w.clone()), &g).unwrap();
            let dw = cpu.conv2d_backward_filter(&cpu.wrap(x.clone()), &dyb, &g).unwrap();
            let db = cpu.conv2d_backward_bias(&dyb, &g).unwrap();
            assert_close("dx vs finite differences", &dx, &finite_diff(&x, h, |v| loss(v, &w, &b)), 1e-7);
            assert_close("dw vs finite differences", &dw, &finite_diff(&w, h, |v| loss(&x, v, &b)), 1e-7);
            assert_close("db vs finite differences", &db, &finite_diff(&b, h, |v| loss(&x, &w, v)), 1e-7);
        }
    }

    #[test]
    fn im2col_follows_the_documented_layout_and_col2im_is_its_adjoint() {
        let cpu = CpuBackend::new();
        let g = geom(&CASES[7]);
        let (n0, nb) = (1, 1);
        let x = random(g.x_len(), 3);
        let mut cols: CpuBuf<f64> = cpu.zeros(g.col_rows() * g.col_cols(nb)).unwrap();
        cpu.im2col(&cpu.wrap(x.clone()), &g, n0, nb, &mut cols).unwrap();
        let ncols = g.col_cols(nb);
        for c in 0..g.c_in {
            for (ki, kj) in (0..g.kh).flat_map(|ki| (0..g.kw).map(move |kj| (ki, kj))) {
                for (oh, ow) in (0..g.oh).flat_map(|oh| (0..g.ow).map(move |ow| (oh, ow))) {
                    let ih = (oh * g.sh + ki * g.dh) as isize - g.ph as isize;
                    let iw = (ow * g.sw + kj * g.dw) as isize - g.pw as isize;
                    let inside = ih >= 0 && iw >= 0 && ih < g.h as isize && iw < g.w as isize;
                    let want =
                        if inside { x[((n0 * g.c_in + c) * g.h + ih as usize) * g.w + iw as usize] } else { 0.0 };
                    let row = (c * g.kh + ki) * g.kw + kj;
                    assert_eq!(cols[row * ncols + oh * g.ow + ow], want, "row {row} at ({oh}, {ow})");
                }
            }
        }
        // col2im overwrites only its images (image 0 keeps its marker) and is im2col's adjoint.
        let c = random(cols.len(), 4);
        let mut dx = cpu.wrap(vec![7.0; g.x_len()]);
        cpu.col2im(&cpu.wrap(c.clone()), &g, n0, nb, &mut dx).unwrap();
        let image = g.c_in * g.h * g.w;
        assert!(dx[..image].iter().all(|&v| v == 7.0));
        let x_image = &x[image..2 * image];
        assert_close(
            "<im2col(x), c> = <x, col2im(c)>",
            &[dot(x_image, &dx[image..2 * image])],
            &[dot(&cols, &c)],
            1e-12,
        );
    }

    #[test]
    fn f32_agrees_with_f64() {
        let g = geom(&CASES[2]);
        let (x, w, b, dy) = operands(&g, 5);
        let cpu = CpuBackend::new();
        let y64 =
            cpu.conv2d_forward(&cpu.wrap(x.clone()), &cpu.wrap(w.clone()), Some(&cpu.wrap(b.clone())), &g).unwrap();
        let dx64 = cpu.conv2d_backward_data(&cpu.wrap(dy.clone()), &cpu.wrap(w.clone()), &g).unwrap();
        let dw64 = cpu.conv2d_backward_filter(&cpu.wrap(x.clone()), &cpu.wrap(dy.clone()), &g).unwrap();
        let (x32, w32, b32, dy32) =
            (cpu.wrap(narrow(&x)), cpu.wrap(narrow(&w)), cpu.wrap(narrow(&b)), cpu.wrap(narrow(&dy)));
        let y32 = cpu.conv2d_forward(&x32, &w32, Some(&b32), &g).unwrap();
        assert_close("f32 forward", &widen(&y32), &y64, 1e-5);
        assert_close("f32 backward data", &widen(&cpu.conv2d_backward_data(&dy32, &w32, &g).unwrap()), &dx64, 1e-5);
        assert_close("f32 backward filter", &widen(&cpu.conv2d_backward_filter(&x32, &dy32, &g).unwrap()), &dw64, 1e-5);
    }

    #[test]
    fn mismatched_buffers_are_shape_errors() {
        let cpu = CpuBackend::new();
        let g = geom(&CASES[1]);
        let (x, w, b) = (
            cpu.wrap(vec![0.0f64; g.x_len()]),
            cpu.wrap(vec![0.0f64; g.weight_len()]),
            cpu.wrap(vec![0.0f64; g.c_out]),
        );
        let short = cpu.wrap(vec![0.0f64; g.x_len() - 1]);
        let err = error_text(cpu.conv2d_forward(&short, &w, Some(&b), &g));
        assert!(err.contains(&format!("input has {} elements but {} are needed", g.x_len() - 1, g.x_len())), "{err}");
        assert!(cpu.conv2d_forward(&x, &x, None, &g).is_err());
        assert!(cpu.conv2d_forward(&x, &w, Some(&w), &g).is_err());
        assert!(cpu.conv2d_backward_data(&x, &w, &g).is_err());
        assert!(cpu.conv2d_backward_filter(&x, &x, &g).is_err());
        let err = error_text(cpu.depthwise_conv2d_forward(&x, &w, None, &g));
        assert!(err.contains("groups == in channels"), "{err}");
        let mut cols: CpuBuf<f64> = cpu.zeros(g.col_rows() * g.col_cols(1)).unwrap();
        assert!(cpu.im2col(&x, &g, g.n - 1, 2, &mut cols).is_err());
        assert!(cpu.im2col(&x, &g, 0, 2, &mut cols).is_err());
        assert!(cpu.im2col(&x, &g, 0, 1, &mut cols).is_ok());
        let zero_groups = ConvGeom::new(g.n, g.c_in, (g.h, g.w), g.c_out, (g.kh, g.kw), (g.sh, g.sw), (g.ph, g.pw), (g.dh, g.dw), 0);
        assert!(zero_groups.is_err(), "the only constructor rejects zero groups");
    }
}
