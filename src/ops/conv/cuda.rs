//! GPU convolution: im2col + the tiled SGEMM over a bounded workspace (chunks of images, groups as
//! the GEMM batch), col2im as a gather, and the dedicated depthwise kernels.

use super::{ConvGeom, ConvOps};
use crate::device::Buffer;
use crate::error::Result;
use crate::device::driver::KernelArg;
use crate::gpu::grid::{int, per_element, reduction};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::check::expect_len;
use crate::ops::gemm::{GemmOps, GemmSpec};

/// The window geometry as kernel `int`s, in the order the callers destructure it into each
/// kernel's own argument order.
fn window_args(g: &ConvGeom) -> Result<[KernelArg; 12]> {
    Ok([
        int(g.kh, "conv kernel height")?,
        int(g.kw, "conv kernel width")?,
        int(g.sh, "conv stride")?,
        int(g.sw, "conv stride")?,
        int(g.ph, "conv padding")?,
        int(g.pw, "conv padding")?,
        int(g.dh, "conv dilation")?,
        int(g.dw, "conv dilation")?,
        int(g.oh, "conv output height")?,
        int(g.ow, "conv output width")?,
        int(g.h, "conv input height")?,
        int(g.w, "conv input width")?,
    ])
}

/// Kernel arguments C, H, W, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW in the kernels' order.
fn geometry_args(channels: usize, g: &ConvGeom) -> Result<Vec<KernelArg>> {
    let [kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, h, w] = window_args(g)?;
    Ok(vec![int(channels, "conv channels")?, h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow])
}

/// The GEMM of a pointwise convolution (1x1 kernel, stride 1, no padding, one group): each image
/// already is the [C_in, H*W] matrix im2col would build, so forward (C_out rows) and backward
/// data (`transpose`d weight, C_in rows) are one GEMM batched over images with the weight shared
/// (stride 0), with no workspace and no layout shuffle.
fn pointwise_spec(g: &ConvGeom, transpose: bool) -> Option<GemmSpec<f32>> {
    let pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0 && g.groups == 1;
    if !pointwise {
        return None;
    }
    let plane = g.h * g.w;
    let (rows, inner) = if transpose { (g.c_in, g.c_out) } else { (g.c_out, g.c_in) };
    let mut spec = GemmSpec::new(transpose, false, rows, plane, inner);
    spec.batch = g.n;
    spec.stride_a = 0;
    spec.stride_b = inner * plane;
    spec.stride_c = rows * plane;
    Some(spec)
}

/// Rows of one group's weight matrix (C_out / groups) and its columns, the GEMMs' inner size
/// (C_in / groups * KH * KW).
fn group_gemm_dims(g: &ConvGeom) -> (usize, usize) {
    (g.c_out_per_group(), g.c_in_per_group() * g.kh * g.kw)
}

impl GpuBackend {
    /// dst [B, A, P] = src [A, B, P] with its two outer axes swapped; `src_at`/`dst_at` are element
    /// offsets of the tensors inside their buffers.
    fn swap_outer_axes(
        &self,
        src: &GpuBuf<f32>,
        src_at: usize,
        dst: &mut GpuBuf<f32>,
        dst_at: usize,
        (a, b, p): (usize, usize, usize),
    ) -> Result<()> {
        let cfg = per_element(a * b * p, "a conv chunk")?;
        let args = [KernelArg::Ptr(src.ptr_at(src_at)), KernelArg::Ptr(dst.ptr_at(dst_at)), int(a, "a chunk axis")?, int(b, "a chunk axis")?, int(p, "a chunk axis")?];
        self.launch("conv", "swap_outer_axes", cfg, &args)
    }

    /// The [C_out, nb * OH * OW] view of dy for images n0..n0+nb that the GEMMs read, with the
    /// element offset it starts at: dy itself for a single image, else a rearranged copy.
    fn dy_chunk<'a>(
        &self,
        dy: &'a GpuBuf<f32>,
        g: &ConvGeom,
        n0: usize,
        nb: usize,
        scratch: &'a mut Option<GpuBuf<f32>>,
    ) -> Result<(&'a GpuBuf<f32>, usize)> {
        let plane = g.oh * g.ow;
        let at = n0 * g.c_out * plane;
        match scratch {
            Some(buf) if nb > 1 => {
                self.swap_outer_axes(dy, at, buf, 0, (nb, g.c_out, plane))?;
                Ok((buf, 0))
            }
            _ => Ok((dy, at)),
        }
    }

    /// Images per chunk (bounded by `workspace_bytes`), the column buffer for them and, when a
    /// chunk holds several images, a [C_out, images * OH * OW] scratch buffer.
    fn chunk_buffers(&self, g: &ConvGeom) -> Result<(usize, GpuBuf<f32>, Option<GpuBuf<f32>>)> {
        let nb = g.images_per_chunk(self.workspace_bytes, std::mem::size_of::<f32>());
        let cols = self.alloc::<f32>(g.col_rows() * g.col_cols(nb))?;
        let scratch = if nb > 1 { Some(self.alloc::<f32>(g.c_out * g.col_cols(nb))?) } else { None };
        Ok((nb, cols, scratch))
    }

    /// y = conv(x, w) without bias through im2col and one grouped GEMM per chunk of images.
    fn forward_chunked(&self, x: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom, y: &mut GpuBuf<f32>) -> Result<()> {
        let plane = g.oh * g.ow;
        let (cout_g, k) = group_gemm_dims(g);
        let (nb, mut cols, mut scratch) = self.chunk_buffers(g)?;
        for n0 in (0..g.n).step_by(nb) {
            let cur = nb.min(g.n - n0);
            self.im2col(x, g, n0, cur, &mut cols)?;
            // Per group: [C_out/g, k] x [k, cur * plane], written straight into y for one image
            // (its NCHW slice is exactly that matrix), else into scratch and rearranged.
            let mut spec = GemmSpec::new(false, false, cout_g, cur * plane, k);
            spec.batch = g.groups;
            spec.stride_a = cout_g * k;
            spec.stride_b = k * cur * plane;
            spec.stride_c = cout_g * cur * plane;
            match scratch.as_mut() {
                Some(tmp) if cur > 1 => {
                    self.gemm(&spec, w, &cols, tmp)?;
                    self.swap_outer_axes(tmp, 0, y, n0 * g.c_out * plane, (g.c_out, cur, plane))?;
                }
                _ => {
                    spec.offset_c = n0 * g.c_out * plane;
                    self.gemm(&spec, w, &cols, y)?;
                }
            }
        }
        Ok(())
    }

    /// dx through one grouped GEMM and col2im per chunk of images.
    fn backward_data_chunked(&self, dy: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom, dx: &mut GpuBuf<f32>) -> Result<()> {
        let plane = g.oh * g.ow;
        let (cout_g, k) = group_gemm_dims(g);
        let (nb, mut cols, mut scratch) = self.chunk_buffers(g)?;
        for n0 in (0..g.n).step_by(nb) {
            let cur = nb.min(g.n - n0);
            let (dy_mat, dy_at) = self.dy_chunk(dy, g, n0, cur, &mut scratch)?;
            // Per group: dcols [k, cur * plane] = W_g^T [k, C_out/g] x dy_g [C_out/g, cur * plane].
            let mut spec = GemmSpec::new(true, false, k, cur * plane, cout_g);
            spec.batch = g.groups;
            spec.stride_a = cout_g * k;
            spec.stride_b = cout_g * cur * plane;
            spec.offset_b = dy_at;
            spec.stride_c = k * cur * plane;
            self.gemm(&spec, w, dy_mat, &mut cols)?;
            self.col2im(&cols, g, n0, cur, dx)?;
        }
        Ok(())
    }

    fn check_depthwise(&self, g: &ConvGeom) -> Result<Vec<KernelArg>> {
        g.check_depthwise()?;
        let [kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, h, w] = window_args(g)?;
        let mult = int(g.c_out / g.c_in, "depthwise multiplier")?;
        Ok(vec![int(g.n, "batch")?, int(g.c_in, "channels")?, h, w, mult, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow])
    }
}

impl ConvOps<f32> for GpuBackend {
    fn im2col(&self, x: &GpuBuf<f32>, g: &ConvGeom, n0: usize, nb: usize, cols: &mut GpuBuf<f32>) -> Result<()> {
        expect_len("conv2d", "input", x.len(), g.x_len())?;
        g.check_image_chunk(n0, nb, cols.len())?;
        let need = g.col_rows() * g.col_cols(nb);
        let cfg = per_element(g.c_in * g.col_cols(nb), "the im2col matrix")?;
        int(need, "the im2col matrix")?;
        let mut args = vec![KernelArg::Ptr(x.ptr_at(n0 * g.c_in * g.h * g.w)), cols.arg()];
        args.extend(geometry_args(g.c_in, g)?);
        args.push(int(nb, "images per chunk")?);
        self.launch("conv", "im2col", cfg, &args)
    }

    fn col2im(&self, cols: &GpuBuf<f32>, g: &ConvGeom, n0: usize, nb: usize, dx: &mut GpuBuf<f32>) -> Result<()> {
        expect_len("conv2d", "input gradient", dx.len(), g.x_len())?;
        g.check_image_chunk(n0, nb, cols.len())?;
        let need = g.col_rows() * g.col_cols(nb);
        let cfg = per_element(nb * g.c_in * g.h * g.w, "a conv input chunk")?;
        int(need, "the im2col matrix")?;
        let mut args = vec![cols.arg(), KernelArg::Ptr(dx.ptr_at(n0 * g.c_in * g.h * g.w))];
        args.extend(geometry_args(g.c_in, g)?);
        args.push(int(nb, "images per chunk")?);
        self.launch("conv", "col2im", cfg, &args)
    }

    fn conv2d_forward(&self, x: &GpuBuf<f32>, w: &GpuBuf<f32>, bias: Option<&GpuBuf<f32>>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
        g.check_forward_operands("conv2d", x.len(), w.len(), bias.map(|b| b.len()))?;
        let plane = g.oh * g.ow;
        let mut y = self.alloc::<f32>(g.y_len())?;
        match pointwise_spec(g, false) {
            Some(spec) => self.gemm(&spec, w, x, &mut y)?,
            None => self.forward_chunked(x, w, g, &mut y)?,
        }
        if let Some(b) = bias {
            self.add_bias(&mut y, b, g.c_out, plane)?;
        }
        Ok(y)
    }

    fn conv2d_backward_data(&self, dy: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
        expect_len("conv2d", "output gradient", dy.len(), g.y_len())?;
        expect_len("conv2d", "weight", w.len(), g.weight_len())?;
        let mut dx = self.alloc::<f32>(g.x_len())?;
        match pointwise_spec(g, true) {
            Some(spec) => self.gemm(&spec, w, dy, &mut dx)?,
            None => self.backward_data_chunked(dy, w, g, &mut dx)?,
        }
        Ok(dx)
    }

    fn conv2d_backward_filter(&self, x: &GpuBuf<f32>, dy: &GpuBuf<f32>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
        expect_len("conv2d", "input", x.len(), g.x_len())?;
        expect_len("conv2d", "output gradient", dy.len(), g.y_len())?;
        let plane = g.oh * g.ow;
        let (cout_g, k) = group_gemm_dims(g);
        let mut dw = self.alloc::<f32>(g.weight_len())?;
        let (nb, mut cols, mut scratch) = self.chunk_buffers(g)?;
        for n0 in (0..g.n).step_by(nb) {
            let cur = nb.min(g.n - n0);
            self.im2col(x, g, n0, cur, &mut cols)?;
            let (dy_mat, dy_at) = self.dy_chunk(dy, g, n0, cur, &mut scratch)?;
            // Per group: dW_g [C_out/g, k] (+)= dy_g [C_out/g, cur * plane] x cols_g^T; the first
            // chunk overwrites, later ones accumulate.
            let mut spec = GemmSpec::new(false, true, cout_g, k, cur * plane);
            spec.batch = g.groups;
            spec.stride_a = cout_g * cur * plane;
            spec.offset_a = dy_at;
            spec.stride_b = k * cur * plane;
            spec.stride_c = cout_g * k;
            spec.beta = if n0 == 0 { 0.0 } else { 1.0 };
            self.gemm(&spec, dy_mat, &cols, &mut dw)?;
        }
        Ok(dw)
    }

    fn conv2d_backward_bias(&self, dy: &GpuBuf<f32>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
        expect_len("conv2d", "output gradient", dy.len(), g.y_len())?;
        self.bias_grad(dy, g.n, g.c_out, g.oh * g.ow)
    }

    fn depthwise_conv2d_forward(&self, x: &GpuBuf<f32>, w: &GpuBuf<f32>, bias: Option<&GpuBuf<f32>>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
        let geometry = self.check_depthwise(g)?;
        g.check_forward_operands("depthwise conv2d", x.len(), w.len(), bias.map(|b| b.len()))?;
        let y = self.alloc::<f32>(g.y_len())?;
        let mut args = vec![x.arg(), w.arg(), KernelArg::Ptr(bias.map_or(0, |b| b.ptr())), y.arg()];
        args.extend(geometry);
        args.push(KernelArg::I32(bias.is_some() as i32));
        self.launch("conv", "depthwise_forward", per_element(g.y_len(), "the depthwise output")?, &args)?;
        Ok(y)
    }

    fn depthwise_conv2d_backward_data(&self, dy: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
        let geometry = self.check_depthwise(g)?;
        expect_len("depthwise conv2d", "output gradient", dy.len(), g.y_len())?;
        expect_len("depthwise conv2d", "weight", w.len(), g.weight_len())?;
        int(g.y_len(), "the depthwise output")?;
        let dx = self.alloc::<f32>(g.x_len())?;
        let mut args = vec![dy.arg(), w.arg(), dx.arg()];
        args.extend(geometry);
        self.launch("conv", "depthwise_backward_data", per_element(g.x_len(), "the depthwise input")?, &args)?;
        Ok(dx)
    }

    fn depthwise_conv2d_backward_filter(&self, x: &GpuBuf<f32>, dy: &GpuBuf<f32>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
        let geometry = self.check_depthwise(g)?;
        expect_len("depthwise conv2d", "input", x.len(), g.x_len())?;
        expect_len("depthwise conv2d", "output gradient", dy.len(), g.y_len())?;
        int(g.y_len(), "the depthwise output")?;
        int(g.x_len(), "the depthwise input")?;
        let dw = self.alloc::<f32>(g.weight_len())?;
        // One block per filter tap.
        let cfg = reduction(g.weight_len(), g.n * g.oh * g.ow)?;
        let mut args = vec![x.arg(), dy.arg(), dw.arg()];
        args.extend(geometry);
        self.launch("conv", "depthwise_backward_filter", cfg, &args)?;
        Ok(dw)
    }
}
