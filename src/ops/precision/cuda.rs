//! Rounding on the GPU: kernels/precision.cu's `round_to_format`, one thread per value, in place
//! when source and destination are one buffer.

use super::PrecisionOps;
use crate::device::driver::KernelArg;
use crate::device::Buffer;
use crate::error::Result;
use crate::gpu::grid::{int, per_element};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::check::expect_len;
use crate::precision::Precision;

/// The kernel's format code (kernels/precision.cu).
fn format_code(precision: Precision) -> i32 {
    match precision {
        Precision::Fp32 => 0,
        Precision::Tf32 => 1,
        Precision::Bf16 => 2,
        Precision::Fp16 => 3,
    }
}

impl GpuBackend {
    fn launch_rounding(&self, precision: Precision, src: KernelArg, dst: KernelArg, len: usize) -> Result<()> {
        if len == 0 {
            return Ok(());
        }
        let n = int(len, "the length of a buffer to round")?;
        let cfg = per_element(len, "round_to_format")?;
        self.launch("precision", "round_to_format", cfg, &[src, dst, n, KernelArg::I32(format_code(precision))])
    }
}

impl PrecisionOps<f32> for GpuBackend {
    fn round_in_place(&self, precision: Precision, x: &mut GpuBuf<f32>) -> Result<()> {
        if precision == Precision::Fp32 {
            return Ok(());
        }
        self.launch_rounding(precision, x.arg(), x.arg(), x.len())
    }

    fn round_into(&self, precision: Precision, src: &GpuBuf<f32>, dst: &mut GpuBuf<f32>) -> Result<()> {
        expect_len("round_into", "dst", dst.len(), src.len())?;
        self.launch_rounding(precision, src.arg(), dst.arg(), src.len())
    }

    fn declare_gemm_operand_format(&self, precision: Precision) {
        self.set_gemm_operand_format(precision);
    }
}
