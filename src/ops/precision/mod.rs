//! Rounding stored values to the run's precision (`crate::precision`): the one operation that
//! emulates a reduced-precision engine's stores. Values stay in their 32-bit (or 64-bit)
//! containers, rounded exactly as a bf16/fp16/tf32 store rounds them, identically on every
//! device, so device results compare tightly with the CPU's.

mod cpu;
mod cuda;

use crate::device::Device;
use crate::element::Element;
use crate::error::Result;
use crate::precision::{Precision, StoredFormat};

pub trait PrecisionOps<E: Element>: Device<E> {
    /// Rounds every value of `x` in place to `precision`'s format (nothing for fp32).
    fn round_in_place(&self, precision: Precision, x: &mut Self::Buf) -> Result<()>;
    /// dst = `src` rounded to `precision`'s format (a copy for fp32); the same length.
    fn round_into(&self, precision: Precision, src: &Self::Buf, dst: &mut Self::Buf) -> Result<()>;
    /// Declares that convolutions' and linear layers' GEMM operands are stored in `precision`'s
    /// format from now on: a GPU then runs those GEMMs on its tensor cores (convolutions at
    /// bf16/fp16/tf32, linear layers at bf16/fp16: `ops::gemm::tc_train`); a device without tensor
    /// cores computes them as before.
    fn declare_gemm_operand_format(&self, _precision: Precision) {}
    /// Whether this device keeps a bf16/fp16 run's activations and activation gradients in
    /// 16-bit buffers (GPUs); else they stay in f32 containers rounded in place (the CPU).
    fn stores_16bit(&self) -> bool {
        false
    }
    /// The format `x` holds its values in: f32 but in a GPU's 16-bit buffers.
    fn stored_format(&self, _x: &Self::Buf) -> StoredFormat {
        StoredFormat::F32
    }
    /// A copy of `x` stored in `format`: exact going wider, rounded to nearest even going
    /// narrower. Only devices that `stores_16bit` have narrow buffers.
    fn convert_stored(&self, _x: &Self::Buf, format: StoredFormat) -> Result<Self::Buf> {
        Err(crate::error::Error::config(format!("{} keeps no {format:?} buffers", self.name())))
    }
    /// An f32 copy of `x` when it is stored in 16 bits; None when it holds f32 already. For
    /// whatever reads f32 only (kernels of other families, the SGEMM, nodes that don't read
    /// stored formats).
    fn widened(&self, x: &Self::Buf) -> Result<Option<Self::Buf>> {
        if self.stored_format(x) == StoredFormat::F32 {
            return Ok(None);
        }
        self.convert_stored(x, StoredFormat::F32).map(Some)
    }
}
