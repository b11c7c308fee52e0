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

/// Length of a dynamic loss scale's state on the device: {scale, finite steps since the scale
/// last changed, steps skipped for an overflow}, kept in f32 as PyTorch's GradScaler keeps it.
pub const LOSS_SCALE_STATE_LEN: usize = 3;

/// The factor `PrecisionOps::scale_by_loss_scale` multiplies by, of the scale the state holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LossScaleFactor {
    /// (weight * scale) / ranks: a loss output's gradient seed.
    Seed { weight: f64, ranks: f64 },
    /// 1 / scale: parameter gradients back to the loss's own scale.
    Unscale,
}

impl LossScaleFactor {
    /// The factor in f64, rounded to the element type once by the caller.
    pub fn of(self, scale: f64) -> f64 {
        match self {
            LossScaleFactor::Seed { weight, ranks } => weight * scale / ranks,
            LossScaleFactor::Unscale => 1.0 / scale,
        }
    }
}

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
    /// x *= `factor` of the scale in `state` ([`LOSS_SCALE_STATE_LEN`] values), read when the
    /// work runs: a step replayed from a CUDA graph takes the scale the steps before it left,
    /// not the one its capture saw. The product is the one `scale` makes with that factor.
    fn scale_by_loss_scale(&self, x: &mut Self::Buf, state: &Self::Buf, factor: LossScaleFactor) -> Result<()>;
    /// Dynamic loss scaling after an optimiser step, from that step's clip state
    /// (`ops::optim::CLIP_STATE_LEN` values): a non-finite gradient norm (the update was
    /// skipped) halves the scale, restarts the count of finite steps and counts the skip; a
    /// finite one adds to the count, and `growth_interval` in a row double the scale.
    fn update_loss_scale(&self, state: &mut Self::Buf, clip: &Self::Buf, growth_interval: usize) -> Result<()>;
}

/// Checks a loss-scale state and growth interval before an update.
fn check_loss_scale_args(state_len: usize, clip_len: usize, growth_interval: usize) -> Result<()> {
    crate::ops::check::expect_len("update_loss_scale", "loss scale state", state_len, LOSS_SCALE_STATE_LEN)?;
    crate::ops::check::expect_len("update_loss_scale", "clip state", clip_len, crate::ops::optim::CLIP_STATE_LEN)?;
    check_loss_scale_growth_interval(growth_interval)
}

/// Checks a growth interval the state can count to: its count of finite steps is held in f32,
/// exact up to 2^24.
pub fn check_loss_scale_growth_interval(growth_interval: usize) -> Result<()> {
    if !(1..=1 << 24).contains(&growth_interval) {
        return Err(crate::error::Error::config(format!("loss scale growth interval {growth_interval} must be in 1..=2^24")));
    }
    Ok(())
}
