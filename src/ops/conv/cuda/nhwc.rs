//! The channels-last GPU convolution (`g.layout == Layout::Nhwc`): x, y, dx and dy are
//! [N, H, W, C] and read or written in place by implicit GEMMs whose K runs over (ki, kj, c), the
//! channels innermost, so a tap's gather reads one pixel's consecutive channels
//! (kernels/conv_gemm.cuh, `conv_nhwc_*`, on the fp32 or the tensor-core tiles as the NCHW GEMMs),
//! each in its stored format (a bf16/fp16 run's 16-bit activations read and written in place; y
//! takes x's format, dx dy's; the packed weights, dW and the split-K partials are f32):
//! - forward: y_g [pixels, C_out/g] = im2col(x)_g [pixels, K] x the weight packed as
//!   [C_out, KH, KW, C_in/g] (each output channel's [C_in/g, KH * KW] matrix transposed by the
//!   layout conversion's kernel, `transpose_images_into`), transposed;
//! - stride-1 data gradient: the same GEMM on dy with the reversed window and the flipped weight
//!   packed as [C_in/g, KH, KW, C_out/g] (pack_flipped_weights, channels last);
//! - strided data gradient: by stride phase as the NCHW one (pack_phase_weights, channels last),
//!   each phase's GEMM rows its pixels (conv_nhwc_data_phase_gemm);
//! - weight gradient: dW_g [C_out/g, K] = dy_g^T x im2col(x)_g over the batch's pixels (split-K
//!   as planned), then put into PyTorch's [C_out, C_in/g, KH, KW] (the inverse transpose);
//! - a 1x1 stride-1 unpadded convolution of one group: plain GEMMs on the [pixels, channels]
//!   matrices the tensors are (on the tensor-core tiles when the run's operands take them);
//! - bias and its gradient: the [pixels, C_out] matrix's columns, the bias added as the forward
//!   GEMM (or its split-K reduction) stores y.

use super::{group_gemm_dims, group_spec, phase_geometry_args};
use crate::device::driver::KernelArg;
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::gpu::grid::int;
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::conv::ConvGeom;
use crate::ops::gemm::cuda::{stride_arg, tile_grid, vectorizable, GemmTarget};
use crate::ops::gemm::{GemmSpec, GemmTile, SplitK, MAX_GRID_YZ};

/// The plain GEMMs of a pointwise channels-last convolution (1x1, stride 1, no padding, one
/// group), whose tensors are [pixels, channels] matrices and whose weight [C_out, C_in] is one
/// too: forward y = x W^T, data gradient dx = dy W, weight gradient dW = dy^T x.
pub(super) fn pointwise_specs(g: &ConvGeom) -> Option<[GemmSpec<f32>; 3]> {
    let pointwise = g.is_pointwise() && g.groups == 1;
    let pixels = g.n * g.h * g.w;
    pointwise.then(|| {
        [
            GemmSpec::new(false, true, pixels, g.c_out, g.c_in),
            GemmSpec::new(false, false, pixels, g.c_in, g.c_out),
            GemmSpec::new(true, false, g.c_out, g.c_in, pixels),
        ]
    })
}

/// The forward GEMM: per group, pixels x C_out/g, K = KH * KW * C_in/g.
pub(super) fn forward_spec(g: &ConvGeom) -> GemmSpec<f32> {
    let (cout_g, k) = group_gemm_dims(g);
    group_spec(g, g.n * g.oh * g.ow, cout_g, k)
}

/// The stride-1 data gradient's GEMM: per group, input pixels x C_in/g, K = KH * KW * C_out/g.
pub(super) fn data_direct_spec(g: &ConvGeom) -> GemmSpec<f32> {
    group_spec(g, g.n * g.h * g.w, g.c_in_per_group(), g.c_out_per_group() * g.kh * g.kw)
}

/// The strided data gradient's GEMMs, one per group and phase at the largest phase's size (the
/// first's, ceil(H / sh) x ceil(W / sw) pixels per image; K at most C_out/g times the most taps).
pub(super) fn data_phase_spec(g: &ConvGeom) -> GemmSpec<f32> {
    let k = g.c_out_per_group() * g.kh.div_ceil(g.sh) * g.kw.div_ceil(g.sw);
    let plane = g.h.div_ceil(g.sh) * g.w.div_ceil(g.sw);
    GemmSpec { batch: g.groups * g.sh * g.sw, ..GemmSpec::new(false, false, g.n * plane, g.c_in_per_group(), k) }
}

/// The weight gradient's GEMM: per group, C_out/g x K over every output pixel of the batch.
pub(super) fn filter_spec(g: &ConvGeom) -> GemmSpec<f32> {
    let (cout_g, k) = group_gemm_dims(g);
    group_spec(g, cout_g, k, g.n * g.oh * g.ow)
}

/// An NHWC tensor `t` of `channels` channels as the GEMMs' per-group [pixels, channels / groups]
/// outputs, in its stored format: row stride `channels`, group g's columns from channel
/// g * channels / groups. 4-channel stores where every group's row starts aligned.
fn nhwc_target(t: &GpuBuf<f32>, g: &ConvGeom, channels: usize) -> GemmTarget {
    let per_group = channels / g.groups;
    let vec = t.ptr().is_multiple_of(16) && per_group.is_multiple_of(4) && channels.is_multiple_of(4);
    GemmTarget { ptr: t.ptr(), batch_stride: per_group, plane: channels, image_stride: 0, vec, format: t.stored(), bias: 0, bias_rows: false }
}

/// Whether an NHWC tensor's group columns take 4-value loads (aligned, rows and groups 4
/// channels apart), as a kernel flag: its rows read in place, or its im2col gathered 4 channels
/// of a tap at a time.
fn nhwc_vec(t: &GpuBuf<f32>, g: &ConvGeom, channels: usize) -> KernelArg {
    KernelArg::I32(nhwc_target(t, g, channels).vec as i32)
}

/// The window of a `GemmIm2colNhwc` (kernels/conv_gemm.cuh): the gathered tensor's (h, w) and
/// channels (all, and per group), KW, strides, paddings (signed: the reversed window's may be
/// negative), dilations, the GEMM rows' pixel width and plane.
#[allow(clippy::too_many_arguments)]
fn nhwc_window(
    (h, w): (usize, usize),
    channels: usize,
    per_group: usize,
    g: &ConvGeom,
    (sh, sw): (usize, usize),
    (ph, pw): (i64, i64),
    (out_h, out_w): (usize, usize),
) -> Result<Vec<KernelArg>> {
    let signed = |p: i64| i32::try_from(p).map(KernelArg::I32).map_err(|_| Error::shape("conv padding or dilation is too large"));
    Ok(vec![
        int(h, "conv input height")?,
        int(w, "conv input width")?,
        int(channels, "conv channels")?,
        int(per_group, "conv channels per group")?,
        int(g.kw, "conv kernel width")?,
        int(sh, "conv stride")?,
        int(sw, "conv stride")?,
        signed(ph)?,
        signed(pw)?,
        int(g.dh, "conv dilation")?,
        int(g.dw, "conv dilation")?,
        int(out_w, "conv output width")?,
        int(out_h * out_w, "conv output plane")?,
    ])
}

/// The forward's window over x.
fn forward_window(g: &ConvGeom) -> Result<Vec<KernelArg>> {
    nhwc_window((g.h, g.w), g.c_in, g.c_in_per_group(), g, (g.sh, g.sw), (g.ph as i64, g.pw as i64), (g.oh, g.ow))
}

impl GpuBackend {
    /// y = conv(x, w) + bias, x and y NHWC in their stored formats, the bias added as y is stored.
    pub(super) fn forward_nhwc(&self, x: &GpuBuf<f32>, w: &GpuBuf<f32>, bias: Option<&GpuBuf<f32>>, g: &ConvGeom, y: &mut GpuBuf<f32>) -> Result<()> {
        if let Some([spec, ..]) = pointwise_specs(g) {
            return self.layer_gemm_biased(&spec, x, w, bias, y);
        }
        let (cout_g, k) = group_gemm_dims(g);
        let mut packed = self.alloc::<f32>(w.len())?;
        self.transpose_images_into(w, &mut packed, g.c_out, g.c_in_per_group(), g.kh * g.kw, "the convolution weight's channels-last pack")?;
        let mut operands = vec![packed.arg(), x.stored_arg(), x.format_arg(), stride_arg(cout_g * k, "conv weight group")?, stride_arg(g.c_in_per_group(), "conv input group")?];
        operands.extend(forward_window(g)?);
        operands.extend([vectorizable(&packed, 0, k, cout_g * k, g.groups), nhwc_vec(x, g, g.c_in)]);
        let target = GemmTarget { bias: bias.map_or(0, |b| b.ptr()), ..nhwc_target(y, g, g.c_out) };
        self.launch_conv_gemm("conv_nhwc_gemm", &forward_spec(g), &target, &operands)
    }

    /// dx of an NHWC convolution.
    pub(super) fn backward_data_nhwc(&self, dy: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom, dx: &mut GpuBuf<f32>) -> Result<()> {
        if let Some([_, spec, _]) = pointwise_specs(g) {
            return self.layer_gemm(&spec, dy, w, dx);
        }
        if g.sh == 1 && g.sw == 1 {
            self.backward_data_direct_nhwc(dy, w, g, dx)
        } else {
            self.backward_data_phased_nhwc(dy, w, g, dx)
        }
    }

    /// Stride 1: dy convolved with the reversed window (padding dilation * (kernel - 1) -
    /// padding) and the flipped, transposed weight, in the forward's GEMM.
    fn backward_data_direct_nhwc(&self, dy: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom, dx: &mut GpuBuf<f32>) -> Result<()> {
        let (cout_g, cin_g, taps) = (g.c_out_per_group(), g.c_in_per_group(), g.kh * g.kw);
        let (flipped, vec_w) = self.pack_flipped_weights(w, g)?;
        let reversed_pad = |d: usize, k: usize, p: usize| d as i64 * (k as i64 - 1) - p as i64;
        let mut operands = vec![flipped.arg(), dy.stored_arg(), dy.format_arg(), stride_arg(cout_g * cin_g * taps, "conv weight group")?, stride_arg(cout_g, "conv output-gradient group")?];
        operands.extend(nhwc_window((g.oh, g.ow), g.c_out, cout_g, g, (1, 1), (reversed_pad(g.dh, g.kh, g.ph), reversed_pad(g.dw, g.kw, g.pw)), (g.h, g.w))?);
        operands.extend([vec_w, nhwc_vec(dy, g, g.c_out)]);
        self.launch_conv_gemm("conv_nhwc_gemm", &data_direct_spec(g), &nhwc_target(dx, g, g.c_in), &operands)
    }

    /// Strided: one launch of phase GEMMs (conv_nhwc_data_phase_gemm) after the phase weights'
    /// packing, as the NCHW data gradient; K is never split.
    fn backward_data_phased_nhwc(&self, dy: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom, dx: &mut GpuBuf<f32>) -> Result<()> {
        let spec = data_phase_spec(g);
        if spec.m == 0 || spec.n == 0 {
            return Ok(());
        }
        let tile = spec.plan(SplitK::Splits(1), self.driver().multiprocessor_count()).tile;
        if spec.m.div_ceil(tile.rows()) > MAX_GRID_YZ {
            return Err(Error::shape(format!("conv input gradient has {} pixels per stride phase, more than one launch covers", spec.m)));
        }
        let (_packed, vec_w, mut args) = self.phase_gemm_head(dx, dy, w, g)?;
        args.extend([int(g.c_out_per_group(), "conv output channels per group")?, int(g.c_in, "conv input channels")?, int(g.c_out, "conv output channels")?]);
        args.extend(phase_geometry_args(g)?);
        args.extend([vec_w, nhwc_vec(dx, g, g.c_in), nhwc_vec(dy, g, g.c_out)]);
        let (module, kernel) = self.conv_gemm_kernel("conv_nhwc_data_phase_gemm");
        self.launch(module, &format!("{kernel}{}", tile.suffix()), tile_grid(&spec, tile, spec.batch), &args)
    }

    /// dW in PyTorch's order from NHWC x and dy.
    pub(super) fn backward_filter_nhwc(&self, x: &GpuBuf<f32>, dy: &GpuBuf<f32>, g: &ConvGeom, dw: &mut GpuBuf<f32>) -> Result<()> {
        if let Some([_, _, spec]) = pointwise_specs(g) {
            return self.layer_gemm(&spec, dy, x, dw);
        }
        let spec = filter_spec(g);
        let channels_last = self.alloc::<f32>(dw.len())?;
        let mut operands = vec![dy.stored_arg(), dy.format_arg(), x.stored_arg(), x.format_arg(), int(g.c_out, "conv output channels")?, stride_arg(g.c_in_per_group(), "conv input group")?];
        operands.extend(forward_window(g)?);
        operands.extend([nhwc_vec(dy, g, g.c_out), nhwc_vec(x, g, g.c_in)]);
        self.launch_conv_gemm("conv_nhwc_filter_gemm", &spec, &GemmTarget::row_major(channels_last.ptr(), &spec), &operands)?;
        self.transpose_images_into(&channels_last, dw, g.c_out, g.kh * g.kw, g.c_in_per_group(), "the channels-last weight gradient's unpack")
    }
}

/// Bytes the channels-last convolution holds while its largest pass runs on a device of `sms`
/// SMs (see `gpu_workspace_bytes`): each pass's packed weight (the weight gradient's in K order)
/// and split-K partial products, or the plain GEMMs' partial products of a pointwise one (on the
/// `tensor_cores`, split as `layer_gemm` splits them).
pub(super) fn workspace_bytes(g: &ConvGeom, sms: usize, tensor_cores: bool) -> usize {
    let f32_bytes = std::mem::size_of::<f32>();
    let partials = |spec: &GemmSpec<f32>, plain_on_tensor_cores: bool| {
        let splits = match plain_on_tensor_cores {
            true => spec.k_split_on(GemmTile::Small, SplitK::Auto, sms).splits,
            false => spec.plan(SplitK::Auto, sms).k_split.splits,
        };
        if splits == 1 { 0 } else { splits * spec.batch * spec.m * spec.n * f32_bytes }
    };
    if let Some(specs) = pointwise_specs(g) {
        return specs.iter().map(|spec| partials(spec, tensor_cores)).max().unwrap_or(0);
    }
    let packed_weight = g.weight_len() * f32_bytes;
    let forward = packed_weight + partials(&forward_spec(g), false);
    let data = match g.sh == 1 && g.sw == 1 {
        true => packed_weight + partials(&data_direct_spec(g), false),
        false => packed_weight,
    };
    let filter = packed_weight + partials(&filter_spec(g), false);
    forward.max(data).max(filter)
}
