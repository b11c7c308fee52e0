//! 2-D convolution: the im2col-GEMM convolution (any groups, in one batched GEMM per chunk, never
//! a per-group loop; the CPU builds the columns, the GPU gathers them on the fly) and the
//! dedicated depthwise path (groups == in channels).
//!
//! Layouts: x [N, C_in, H, W]; weight [C_out, C_in/groups, KH, KW]; bias [C_out];
//! y [N, C_out, OH, OW]. The im2col buffer of images n0..n0+nb is a row-major matrix of
//! `C_in*KH*KW` rows by `nb*OH*OW` columns: row r = (c*KH + ki)*KW + kj, column
//! j = (n - n0)*OH*OW + oh*OW + ow, value x[n, c, oh*sh - ph + ki*dh, ow*sw - pw + kj*dw] or 0 in the
//! padding. Because channels of one group are contiguous rows, the rows of group g are the block
//! g*(C_in/groups)*KH*KW .. (g+1)*..., so a grouped convolution is one batched GEMM over groups.

pub mod cases;
mod cpu;
mod depthwise_nhwc;
mod node;
pub mod tc;

pub use node::{describe_window, Conv2d, ConvCfg, ConvPath};

use crate::device::Device;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::check::expect_len;
use crate::shape::{window_output_len, Layout};

mod cuda;

pub use cuda::{depthwise_gpu_workspace_bytes, gpu_workspace_bytes};
pub(crate) use cuda::forward_spec;

/// The sizes of a [`ConvGeom`], read through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ConvDims {
    pub n: usize,
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
    pub groups: usize,
    pub oh: usize,
    pub ow: usize,
    /// How x, y and their gradients lie in memory (the weight is [C_out, C_in/groups, KH, KW]
    /// either way).
    pub layout: Layout,
}

checked_geometry!(
    /// A convolution checked by `ConvGeom::new`; no other way makes or changes one:
    /// ```compile_fail
    /// let g = ferronet::ops::ConvGeom::new(1, 1, (4, 4), 1, (3, 3), (1, 1), (0, 0), (1, 1), 1).unwrap();
    /// let inconsistent = ferronet::ops::ConvGeom { ow: g.ow + 1, ..g };
    /// ```
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    ConvGeom => ConvDims
);

impl ConvGeom {
    /// Validates the configuration and computes the output size (PyTorch's rule).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        n: usize,
        c_in: usize,
        (h, w): (usize, usize),
        c_out: usize,
        (kh, kw): (usize, usize),
        (sh, sw): (usize, usize),
        (ph, pw): (usize, usize),
        (dh, dw): (usize, usize),
        groups: usize,
    ) -> Result<Self> {
        if n == 0 || c_in == 0 || c_out == 0 || h == 0 || w == 0 {
            return Err(Error::shape(format!(
                "conv2d needs non-empty input and output: N={n} C_in={c_in} H={h} W={w} C_out={c_out}"
            )));
        }
        if groups == 0 || c_in % groups != 0 || c_out % groups != 0 {
            return Err(Error::shape(format!(
                "conv2d groups={groups} must divide both in channels ({c_in}) and out channels ({c_out})"
            )));
        }
        let oh = window_output_len(h, kh, sh, ph, dh, false)
            .map_err(|e| Error::shape(format!("conv2d height: {e}")))?;
        let ow = window_output_len(w, kw, sw, pw, dw, false)
            .map_err(|e| Error::shape(format!("conv2d width: {e}")))?;
        let layout = Layout::Nchw;
        Ok(ConvGeom { dims: ConvDims { n, c_in, h, w, c_out, kh, kw, sh, sw, ph, pw, dh, dw, groups, oh, ow, layout } })
    }
    /// The same convolution on tensors in `layout` (NCHW unless set).
    pub fn with_layout(self, layout: Layout) -> Self {
        ConvGeom { dims: ConvDims { layout, ..self.dims } }
    }
    /// groups == C_in: the dedicated depthwise kernels apply (C_out = multiplier * C_in).
    pub fn is_depthwise(&self) -> bool {
        self.groups == self.c_in && self.groups > 1
    }
    /// 1x1, stride 1, no padding: each image's output is the weight times its input read in place
    /// as a [C_in, H*W] matrix, so the CPU needs no im2col columns.
    pub fn is_pointwise(&self) -> bool {
        (self.kh, self.kw, self.sh, self.sw, self.ph, self.pw) == (1, 1, 1, 1, 0, 0)
    }
    pub fn c_in_per_group(&self) -> usize {
        self.c_in / self.groups
    }
    pub fn c_out_per_group(&self) -> usize {
        self.c_out / self.groups
    }
    pub fn x_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }
    pub fn y_len(&self) -> usize {
        self.n * self.c_out * self.oh * self.ow
    }
    pub fn weight_len(&self) -> usize {
        self.c_out * self.c_in_per_group() * self.kh * self.kw
    }
    /// Rows of the im2col matrix: C_in * KH * KW.
    pub fn col_rows(&self) -> usize {
        self.c_in * self.kh * self.kw
    }
    /// Columns of the im2col matrix for `nb` images.
    pub fn col_cols(&self, nb: usize) -> usize {
        nb * self.oh * self.ow
    }
    /// Images per im2col chunk so the column buffer stays within `limit_bytes` (at least 1).
    pub fn images_per_chunk(&self, limit_bytes: usize, elem_bytes: usize) -> usize {
        let per_image = self.col_rows() * self.oh * self.ow * elem_bytes;
        (limit_bytes / per_image.max(1)).clamp(1, self.n)
    }
    /// Images n0..n0+nb must be a non-empty part of the batch and a column buffer of `cols`
    /// elements must hold their im2col matrix; the same check on every device.
    pub fn check_image_chunk(&self, n0: usize, nb: usize, cols: usize) -> Result<()> {
        if nb == 0 || n0 + nb > self.n {
            return Err(Error::shape(format!("conv image chunk {n0}..{} is outside the batch of {}", n0 + nb, self.n)));
        }
        let need = self.col_rows() * self.col_cols(nb);
        if cols < need {
            return Err(Error::shape(format!("im2col buffer holds {cols} elements but {nb} images need {need}")));
        }
        Ok(())
    }
    /// The dedicated depthwise kernels need groups == C_in > 1 (see [`ConvPath`]).
    pub fn check_depthwise(&self) -> Result<()> {
        if !self.is_depthwise() {
            return Err(Error::shape(format!(
                "depthwise convolution needs groups == in channels > 1, got groups={} with {} in channels",
                self.groups, self.c_in
            )));
        }
        Ok(())
    }
    /// The forward operands' lengths against this geometry, the same check on every device.
    pub fn check_forward_operands(&self, op: &str, x: usize, w: usize, bias: Option<usize>) -> Result<()> {
        expect_len(op, "input", x, self.x_len())?;
        expect_len(op, "weight", w, self.weight_len())?;
        match bias {
            Some(b) => expect_len(op, "bias", b, self.c_out),
            None => Ok(()),
        }
    }
    /// Checks the operands of the input-gradient pass: output gradient `dy` and weight `w`.
    pub fn check_backward_data_operands(&self, op: &str, dy: usize, w: usize) -> Result<()> {
        expect_len(op, "output gradient", dy, self.y_len())?;
        expect_len(op, "weight", w, self.weight_len())
    }
    /// Checks the operands of the weight-gradient pass: input `x` and output gradient `dy`.
    pub fn check_backward_filter_operands(&self, op: &str, x: usize, dy: usize) -> Result<()> {
        expect_len(op, "input", x, self.x_len())?;
        expect_len(op, "output gradient", dy, self.y_len())
    }
    /// Multiply-accumulates of the forward pass.
    pub fn macs(&self) -> u64 {
        (self.y_len() * self.c_in_per_group() * self.kh * self.kw) as u64
    }
}

pub trait ConvOps<E: Element>: Device<E> {
    /// y = conv(x, w) + bias, any groups.
    fn conv2d_forward(&self, x: &Self::Buf, w: &Self::Buf, bias: Option<&Self::Buf>, g: &ConvGeom) -> Result<Self::Buf>;
    /// dx from dy and the weight.
    fn conv2d_backward_data(&self, dy: &Self::Buf, w: &Self::Buf, g: &ConvGeom) -> Result<Self::Buf>;
    /// dweight from x and dy, accumulated over the batch without an N x weight temporary.
    fn conv2d_backward_filter(&self, x: &Self::Buf, dy: &Self::Buf, g: &ConvGeom) -> Result<Self::Buf>;
    /// dbias [C_out]: dy summed over N, OH, OW.
    fn conv2d_backward_bias(&self, dy: &Self::Buf, g: &ConvGeom) -> Result<Self::Buf>;
    /// Depthwise forward (g.is_depthwise()): output channel co reads input channel co / (C_out/C_in).
    fn depthwise_conv2d_forward(&self, x: &Self::Buf, w: &Self::Buf, bias: Option<&Self::Buf>, g: &ConvGeom) -> Result<Self::Buf>;
    fn depthwise_conv2d_backward_data(&self, dy: &Self::Buf, w: &Self::Buf, g: &ConvGeom) -> Result<Self::Buf>;
    fn depthwise_conv2d_backward_filter(&self, x: &Self::Buf, dy: &Self::Buf, g: &ConvGeom) -> Result<Self::Buf>;
}
