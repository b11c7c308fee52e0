//! A convolution's training GEMMs on the tensor cores, at bf16/fp16 (`ops::gemm::tc_train` says
//! when, and why the 16-bit packs are exact): the input's im2col matrices are built explicitly
//! as 16-bit operands (kernels/conv_tc.cu, im2col_tc), K (C_in * KH * KW) and the output plane
//! zero-padded to the kernel's multiple of 8, in a buffer from the device's cache.
//! - forward, per image: y_n [C_out, P] = W [C_out, K] col_n [K, P] (P = OH * OW), NCHW in place;
//! - data gradient, per image: dcol_n [K, P] = W^T dy_n, into an f32 workspace whose taps every
//!   input pixel gathers (kernels/conv.cu, col2im_gather);
//! - weight gradient, one product over the batch: dW [C_out, K] = [dy_0 .. dy_N-1] [col_0^T; ..].
//!
//! One group only: a grouped (non-depthwise) convolution keeps the SGEMM implicit GEMMs, which
//! batch the groups. The explicit columns cost memory the implicit GEMMs do not (2 bytes per
//! element of the N x K x P im2col matrix, 4 per element of the data gradient's columns).

use super::ConvGeom;
use crate::device::driver::KernelArg;
use crate::error::Result;
use crate::gpu::grid::{int, per_element};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::gemm::tc::TcInput;
use crate::ops::gemm::tc_train::{tc_format_arg, tc_padded, Pack};

/// Bytes a one-group convolution holds while its largest pass runs on the tensor cores (an
/// upper bound: a pointwise one packs its operands as `ops::gemm::tc_train` does, no larger).
pub fn tc_workspace_bytes(g: &ConvGeom) -> usize {
    let (half, single) = (std::mem::size_of::<u16>(), std::mem::size_of::<f32>());
    let (k, p) = (g.c_in * g.kh * g.kw, g.oh * g.ow);
    let (k_pad, p_pad, cout_pad) = (tc_padded(k), tc_padded(p), tc_padded(g.c_out));
    let columns = g.n * k_pad * p_pad * half;
    let padded_output = |rows: usize, cols: usize, cols_pad: usize| if cols_pad == cols { 0 } else { rows * cols_pad * single };
    let forward = columns + g.c_out * k_pad * half + padded_output(g.n * g.c_out, p, p_pad);
    let data = k * cout_pad * half + g.n * cout_pad * p_pad * half + g.n * k * p_pad * single;
    let filter = g.c_out * g.n * p_pad * half + columns + padded_output(g.c_out, k, k_pad);
    forward.max(data).max(filter)
}

/// The window geometry in the order im2col_tc and col2im_gather take it after the channels: H,
/// W, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW.
fn window(g: &ConvGeom) -> Result<Vec<KernelArg>> {
    [g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.oh, g.ow].iter().map(|&d| int(d, "a convolution's geometry")).collect()
}

impl GpuBackend {
    /// The format of a one-group convolution's tensor-core GEMMs, when they run there.
    fn conv_tc_input(&self, g: &ConvGeom) -> Option<TcInput> {
        self.training_tc_input().filter(|_| g.groups == 1)
    }

    /// x's im2col matrices as 16-bit operands, [image][k_pad][p_pad] or, `transpose`d,
    /// [image][p_pad][k_pad].
    fn im2col_tc(&self, input: TcInput, x: &GpuBuf<f32>, g: &ConvGeom, transpose: bool) -> Result<GpuBuf<u16>> {
        let (k_pad, p_pad) = (tc_padded(g.c_in * g.kh * g.kw), tc_padded(g.oh * g.ow));
        let total = g.n * k_pad * p_pad;
        let col = self.alloc::<u16>(total)?;
        let mut args = vec![x.arg(), col.arg(), int(total, "an im2col matrix")?, int(g.c_in, "conv input channels")?];
        args.extend(window(g)?);
        args.extend([int(k_pad, "im2col rows")?, int(p_pad, "im2col columns")?, KernelArg::I32(transpose as i32), tc_format_arg(input)]);
        self.launch("conv_tc", "im2col_tc", per_element(total, "im2col_tc")?, &args)?;
        Ok(col)
    }

    /// y = conv(x, w) without bias on the tensor cores; Ok(false) when they do not take it.
    pub(crate) fn conv_forward_tc(&self, x: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom, y: &mut GpuBuf<f32>) -> Result<bool> {
        let Some(input) = self.conv_tc_input(g) else { return Ok(false) };
        let (k, p) = (g.c_in * g.kh * g.kw, g.oh * g.ow);
        let (k_pad, p_pad) = (tc_padded(k), tc_padded(p));
        let col = self.im2col_tc(input, x, g, false)?;
        let weight = self.pack_tc(input, w, &Pack::dense(1, 0, g.c_out, k, false, g.c_out, k_pad))?;
        self.gemm_tc_packed(input, (g.c_out, p, k_pad, g.n), (&weight, 0), (&col, k_pad * p_pad), y, 0)?;
        Ok(true)
    }

    /// dx of a convolution on the tensor cores; Ok(false) when they do not take it.
    pub(crate) fn conv_backward_data_tc(&self, dy: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom, dx: &mut GpuBuf<f32>) -> Result<bool> {
        let Some(input) = self.conv_tc_input(g) else { return Ok(false) };
        let (k, p) = (g.c_in * g.kh * g.kw, g.oh * g.ow);
        let (cout_pad, p_pad) = (tc_padded(g.c_out), tc_padded(p));
        let weight_t = self.pack_tc(input, w, &Pack::dense(1, 0, g.c_out, k, true, k, cout_pad))?;
        let grad = self.pack_tc(input, dy, &Pack::dense(g.n, g.c_out * p, g.c_out, p, false, cout_pad, p_pad))?;
        let mut dcol = self.alloc::<f32>(g.n * k * p_pad)?;
        self.gemm_tc_packed(input, (k, p_pad, cout_pad, g.n), (&weight_t, 0), (&grad, cout_pad * p_pad), &mut dcol, 0)?;
        let total = g.x_len();
        let mut args = vec![dcol.arg(), dx.arg(), int(total, "the convolution input")?, int(g.c_in, "conv input channels")?];
        args.extend(window(g)?);
        args.push(int(p_pad, "column-gradient row stride")?);
        self.launch("conv", "col2im_gather", per_element(total, "col2im_gather")?, &args)?;
        Ok(true)
    }

    /// dW of a convolution on the tensor cores; Ok(false) when they do not take it.
    pub(crate) fn conv_backward_filter_tc(&self, x: &GpuBuf<f32>, dy: &GpuBuf<f32>, g: &ConvGeom, dw: &mut GpuBuf<f32>) -> Result<bool> {
        let Some(input) = self.conv_tc_input(g) else { return Ok(false) };
        let (k, p) = (g.c_in * g.kh * g.kw, g.oh * g.ow);
        let p_pad = tc_padded(p);
        // dy as one [C_out, N * p_pad] matrix: image n's plane in columns n * p_pad.. .
        let grads = Pack { out_stride: p_pad, out_row_stride: g.n * p_pad, ..Pack::dense(g.n, g.c_out * p, g.c_out, p, false, g.c_out, p_pad) };
        let grad = self.pack_tc(input, dy, &grads)?;
        let col_t = self.im2col_tc(input, x, g, true)?;
        self.gemm_tc_packed(input, (g.c_out, k, g.n * p_pad, 1), (&grad, 0), (&col_t, 0), dw, 0)?;
        Ok(true)
    }
}
