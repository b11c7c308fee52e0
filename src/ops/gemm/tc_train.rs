//! The GEMMs of training on the tensor cores (issue 15): when the run stores the operands of its
//! GEMMs rounded to bf16, fp16 or tf32 (`GpuBackend::gemm_operand_format`, declared by the
//! executor's storage rounding) on a device of compute capability 8.0 or newer
//! (`training_tc_input`), the convolutions' implicit GEMMs run on tensor-core tiles
//! (`ops::conv`'s GPU module, kernels/conv_tc.cu), and at bf16/fp16 the linear layers' forward,
//! data-gradient and weight-gradient GEMMs run on the tensor-core GEMM (`tc.rs`: f32
//! accumulation and output) instead of the fp32 SGEMM. A linear layer at tf32 keeps the SGEMM
//! on its tf32-rounded operands.
//!
//! The operands hold values already rounded to the format (activations, activation gradients and
//! the weights' rounded copies), so packing them into 16-bit patterns (kernels/precision.cu,
//! pack_tc_operand) is exact. The kernel needs K and N multiples of 8: the packs zero-pad both
//! (zero products add nothing), and a padded N makes the product land in an f32 workspace whose
//! real columns are copied out (kernels/gemm.cu, copy_columns). The packs and workspaces come
//! from the device's caching allocator: after the first step each is a cached block, not a
//! driver allocation.

use super::tc::{gemm_tc_half_at, TcGemm, TcInput};
use super::{GemmOps, GemmSpec};
use crate::device::driver::KernelArg;
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::gpu::grid::{int, per_element};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::precision::Precision;

/// The kernel's multiple for K and N with 16-bit inputs (one 16-byte copy).
const TC_MULTIPLE: usize = 8;

/// `d` rounded up to the tensor-core kernel's multiple.
pub(crate) fn tc_padded(d: usize) -> usize {
    d.next_multiple_of(TC_MULTIPLE)
}

/// The `TcIn` code of kernels/tensor_core.cuh.
pub(crate) fn tc_format_arg(input: TcInput) -> KernelArg {
    KernelArg::I32(match input {
        TcInput::Bf16 => 0,
        TcInput::F16 => 1,
        TcInput::Tf32 => 2,
    })
}

/// How `pack_tc` lays out `count` f32 matrices of `rows` x `cols` (matrix b at `src_offset +
/// b * src_stride` elements) as 16-bit operands: transposed when `transpose`, zero-padded to
/// `out_rows` x `out_cols`, element (r, c) of output matrix b at `b * out_stride + r *
/// out_row_stride + c`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Pack {
    pub count: usize,
    pub src_offset: usize,
    pub src_stride: usize,
    pub rows: usize,
    pub cols: usize,
    pub transpose: bool,
    pub out_rows: usize,
    pub out_cols: usize,
    pub out_stride: usize,
    pub out_row_stride: usize,
}

impl Pack {
    /// `count` matrices packed back to back, each padded to `out_rows` x `out_cols`.
    pub(crate) fn dense(count: usize, src_stride: usize, rows: usize, cols: usize, transpose: bool, out_rows: usize, out_cols: usize) -> Self {
        Pack { count, src_offset: 0, src_stride, rows, cols, transpose, out_rows, out_cols, out_stride: out_rows * out_cols, out_row_stride: out_cols }
    }

    fn out_len(&self) -> usize {
        (self.count - 1) * self.out_stride + (self.out_rows - 1) * self.out_row_stride + self.out_cols
    }
}

impl GpuBackend {
    /// The tensor cores' input format for the training GEMMs, when they run there.
    pub(crate) fn training_tc_input(&self) -> Option<TcInput> {
        let input = match self.gemm_operand_format() {
            Precision::Bf16 => TcInput::Bf16,
            Precision::Fp16 => TcInput::F16,
            Precision::Tf32 => TcInput::Tf32,
            Precision::Fp32 => return None,
        };
        (self.driver().compute_capability() >= (8, 0)).then_some(input)
    }

    /// `pack`'s matrices of `src` as 16-bit `input` patterns, in a buffer from the cache.
    pub(crate) fn pack_tc(&self, input: TcInput, src: &GpuBuf<f32>, pack: &Pack) -> Result<GpuBuf<u16>> {
        let p = *pack;
        if p.count == 0 || p.out_rows == 0 || p.out_cols == 0 {
            return Err(Error::shape("a tensor-core operand pack needs at least one element"));
        }
        let src_need = p.src_offset + (p.count - 1) * p.src_stride + p.rows * p.cols;
        if src.len() < src_need {
            return Err(Error::shape(format!("a tensor-core operand pack reads {src_need} elements of a buffer of {}", src.len())));
        }
        let out = self.alloc::<u16>(p.out_len())?;
        let total = p.count * p.out_rows * p.out_cols;
        let args = [
            KernelArg::Ptr(src.ptr() + (p.src_offset * std::mem::size_of::<f32>()) as u64),
            out.arg(),
            int(total, "a tensor-core operand")?,
            int(p.src_stride, "an operand's matrix stride")?,
            int(p.rows, "an operand's rows")?,
            int(p.cols, "an operand's columns")?,
            int(p.out_rows, "a packed operand's rows")?,
            int(p.out_cols, "a packed operand's columns")?,
            int(p.out_stride, "a packed operand's matrix stride")?,
            int(p.out_row_stride, "a packed operand's row stride")?,
            KernelArg::I32(p.transpose as i32),
            tc_format_arg(input),
        ];
        self.launch("precision", "pack_tc_operand", per_element(total, "pack_tc_operand")?, &args)?;
        Ok(out)
    }

    /// C[b] = A[b] B[b] for b < `batch` on the tensor cores: A packed [m, k_pad] at `a.1` elements
    /// per b (0: one A for all), B packed [k_pad, tc_padded(n)] likewise, C f32 [m, n] row-major,
    /// the batch back to back from `c_offset`. A padded N computes into a workspace first.
    pub(crate) fn gemm_tc_packed(
        &self,
        input: TcInput,
        (m, n, k_pad, batch): (usize, usize, usize, usize),
        a: (&GpuBuf<u16>, usize),
        b: (&GpuBuf<u16>, usize),
        c: &mut GpuBuf<f32>,
        c_offset: usize,
    ) -> Result<()> {
        let n_pad = tc_padded(n);
        let out_len = batch * m * n;
        if c.len() < c_offset + out_len {
            return Err(Error::shape(format!("a tensor-core product writes {out_len} elements past {c_offset} of a buffer of {}", c.len())));
        }
        let f32_bytes = std::mem::size_of::<f32>();
        // C must start 8-byte aligned: an odd offset goes through the workspace too.
        let workspace = if n_pad != n || !c_offset.is_multiple_of(2) { Some(self.alloc::<f32>(batch * m * n_pad)?) } else { None };
        let (c_ptr, c_len) = match &workspace {
            Some(ws) => (ws.ptr(), ws.len()),
            None => (c.ptr() + (c_offset * f32_bytes) as u64, c.len() - c_offset),
        };
        let shape = TcGemm { input, m, n: n_pad, k: k_pad };
        let half = std::mem::size_of::<u16>();
        for i in 0..batch {
            let (a_at, b_at, c_at) = (i * a.1, i * b.1, i * m * n_pad);
            if a_at > a.0.len() || b_at > b.0.len() || c_at > c_len {
                return Err(Error::shape("a batched tensor-core product runs past its operands"));
            }
            let ptrs = [a.0.ptr() + (a_at * half) as u64, b.0.ptr() + (b_at * half) as u64, c_ptr + (c_at * f32_bytes) as u64];
            gemm_tc_half_at(self, shape, ptrs, [a.0.len() - a_at, b.0.len() - b_at, c_len - c_at])?;
        }
        if let Some(ws) = workspace {
            let args = [
                ws.arg(),
                KernelArg::Ptr(c.ptr() + (c_offset * f32_bytes) as u64),
                int(out_len, "a tensor-core product")?,
                int(n_pad, "a padded product's columns")?,
                int(n, "a product's columns")?,
            ];
            self.launch("gemm", "copy_columns", per_element(out_len, "copy_columns")?, &args)?;
        }
        Ok(())
    }

    /// `spec`'s product on the tensor cores when the run's GEMM operands are 16-bit and `spec`
    /// is a plain product (alpha 1, beta 0, C's matrices back to back), as every convolution and
    /// linear GEMM is; Ok(false) otherwise: the caller runs the fp32 SGEMM.
    pub(crate) fn try_gemm_tc(&self, spec: &GemmSpec<f32>, a: &GpuBuf<f32>, b: &GpuBuf<f32>, c: &mut GpuBuf<f32>) -> Result<bool> {
        let Some(input) = self.training_tc_input().filter(|input| *input != TcInput::Tf32) else { return Ok(false) };
        let GemmSpec { trans_a, trans_b, m, n, k, batch, .. } = *spec;
        let plain = spec.alpha == 1.0 && spec.beta == 0.0 && (batch == 1 || spec.stride_c == m * n);
        if !plain || m == 0 || n == 0 || k == 0 || batch == 0 {
            return Ok(false);
        }
        let (k_pad, n_pad) = (tc_padded(k), tc_padded(n));
        let count = |stride: usize| if stride == 0 { 1 } else { batch };
        let (a_count, b_count) = (count(spec.stride_a), count(spec.stride_b));
        let (a_rows, a_cols) = if trans_a { (k, m) } else { (m, k) };
        let (b_rows, b_cols) = if trans_b { (n, k) } else { (k, n) };
        let pa = self.pack_tc(input, a, &Pack { src_offset: spec.offset_a, ..Pack::dense(a_count, spec.stride_a, a_rows, a_cols, trans_a, m, k_pad) })?;
        let pb = self.pack_tc(input, b, &Pack { src_offset: spec.offset_b, ..Pack::dense(b_count, spec.stride_b, b_rows, b_cols, trans_b, k_pad, n_pad) })?;
        let per = |count: usize, len: usize| if count == 1 { 0 } else { len };
        self.gemm_tc_packed(input, (m, n, k_pad, batch), (&pa, per(a_count, m * k_pad)), (&pb, per(b_count, k_pad * n_pad)), c, spec.offset_c)?;
        Ok(true)
    }

    /// A convolution's or linear layer's GEMM: on the tensor cores when `try_gemm_tc` takes it,
    /// else on the fp32 SGEMM.
    pub(crate) fn layer_gemm(&self, spec: &GemmSpec<f32>, a: &GpuBuf<f32>, b: &GpuBuf<f32>, c: &mut GpuBuf<f32>) -> Result<()> {
        if self.try_gemm_tc(spec, a, b, c)? {
            return Ok(());
        }
        self.gemm(spec, a, b, c)
    }
}
