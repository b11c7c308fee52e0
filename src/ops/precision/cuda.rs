//! Rounding on the GPU: kernels/precision.cu's `round_to_format`, in place when source and
//! destination are one buffer; and `convert_stored`, between stored formats. Both take 4 values
//! per thread, one access each way for a whole group of aligned buffers (kernels/pointwise.cuh).

use super::{check_loss_scale_args, LossScaleFactor, PrecisionOps, LOSS_SCALE_STATE_LEN};
use crate::device::driver::KernelArg;
use crate::device::Buffer;
use crate::error::Result;
use crate::gpu::grid::{int, per_element};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::check::expect_len;
use crate::ops::elementwise::pointwise;
use crate::precision::{Precision, StoredFormat};

/// The kernel's format code (kernels/precision.cu).
fn format_code(precision: Precision) -> i32 {
    match precision {
        Precision::Fp32 => 0,
        Precision::Tf32 => 1,
        Precision::Bf16 => 2,
        Precision::Fp16 => 3,
    }
}

/// `round_to_format` reads and writes f32 containers only.
fn expect_f32(op: &str, x: &GpuBuf<f32>) -> Result<()> {
    if x.stored() != StoredFormat::F32 {
        return Err(crate::error::Error::device(format!("{op} takes f32 buffers, not one stored as {:?}", x.stored())));
    }
    Ok(())
}

impl GpuBackend {
    /// Rounds `src` into `dst` (the same buffer in place; f32 containers of one length).
    fn launch_rounding(&self, precision: Precision, src: &GpuBuf<f32>, dst: &GpuBuf<f32>) -> Result<()> {
        if src.len() == 0 {
            return Ok(());
        }
        let n = int(src.len(), "the length of a buffer to round")?;
        let (cfg, vec) = pointwise(src.len(), "round_to_format", &[src, dst])?;
        self.launch("precision", "round_to_format", cfg, &[src.arg(), dst.arg(), n, KernelArg::I32(format_code(precision)), vec])
    }
}

impl PrecisionOps<f32> for GpuBackend {
    fn round_in_place(&self, precision: Precision, x: &mut GpuBuf<f32>) -> Result<()> {
        if precision == Precision::Fp32 || Some(x.stored()) == precision.stored_format() {
            return Ok(());
        }
        expect_f32("round_in_place", x)?;
        self.launch_rounding(precision, x, x)
    }

    fn round_into(&self, precision: Precision, src: &GpuBuf<f32>, dst: &mut GpuBuf<f32>) -> Result<()> {
        expect_len("round_into", "dst", dst.len(), src.len())?;
        expect_f32("round_into", src)?;
        expect_f32("round_into", dst)?;
        self.launch_rounding(precision, src, dst)
    }

    fn declare_gemm_operand_format(&self, precision: Precision) {
        self.set_gemm_operand_format(precision);
    }

    fn stores_16bit(&self) -> bool {
        true
    }

    fn stored_format(&self, x: &GpuBuf<f32>) -> StoredFormat {
        x.stored()
    }

    fn convert_stored(&self, x: &GpuBuf<f32>, format: StoredFormat) -> Result<GpuBuf<f32>> {
        let y = self.alloc_stored(x.len(), format)?;
        if x.len() > 0 {
            let n = int(x.len(), "the length of a buffer to convert")?;
            let (cfg, vec) = pointwise(x.len(), "convert_stored", &[x, &y])?;
            self.launch("precision", "convert_stored", cfg, &[x.stored_arg(), x.format_arg(), y.stored_arg(), y.format_arg(), n, vec])?;
        }
        Ok(y)
    }

    fn scale_by_loss_scale(&self, x: &mut GpuBuf<f32>, state: &GpuBuf<f32>, factor: LossScaleFactor) -> Result<()> {
        expect_len("scale_by_loss_scale", "loss scale state", state.len(), LOSS_SCALE_STATE_LEN)?;
        if x.len() == 0 {
            return Ok(());
        }
        let n = int(x.len(), "the length of a buffer to scale by the loss scale")?;
        let (cfg, vec) = pointwise(x.len(), "scale_by_loss_scale", &[x])?;
        let (weight, ranks, invert) = match factor {
            LossScaleFactor::Seed { weight, ranks } => (weight, ranks, 0),
            LossScaleFactor::Unscale => (1.0, 1.0, 1),
        };
        let args = [x.stored_arg(), x.format_arg(), n, state.arg(), KernelArg::F64(weight), KernelArg::F64(ranks), KernelArg::I32(invert), vec];
        self.launch("precision", "scale_by_loss_scale", cfg, &args)
    }

    fn update_loss_scale(&self, state: &mut GpuBuf<f32>, clip: &GpuBuf<f32>, growth_interval: usize) -> Result<()> {
        check_loss_scale_args(state.len(), clip.len(), growth_interval)?;
        let interval = int(growth_interval, "the loss scale growth interval")?;
        self.launch("precision", "update_loss_scale", per_element(1, "update_loss_scale")?, &[state.arg(), clip.arg(), interval])
    }
}
