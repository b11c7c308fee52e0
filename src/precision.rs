//! The numeric format a run stores its values in (`--precision`) and the exact scalar rounding
//! to each format.
//!
//! Storage is EMULATED: every buffer is still an f32 (or f64) container, and "stored in bf16"
//! means the container holds a value rounded exactly as a bf16 store would round it. The results
//! are those of a reduced-precision engine (so device runs compare tightly with the CPU, and
//! training accuracy can be judged); the memory and bandwidth savings of 16-bit storage are not
//! realised yet.
//!
//! Rounding, as the PTX conversions a GPU kernel would store with:
//! - bf16 (`cvt.rn.bf16.f32`): 8 significant bits, f32's exponent range, round to nearest even;
//!   f32 subnormals round to bf16 subnormals, overflow goes to infinity.
//! - fp16 (`cvt.rn.f16.f32`): 11 significant bits, exponents down to 2^-14 (subnormals to
//!   2^-24), round to nearest even; magnitudes from 65520 up become infinity.
//! - tf32 (`cvt.rna.tf32.f32`): 11 significant bits in f32's exponent range, round to nearest
//!   with ties AWAY from zero (the tensor cores' input conversion), NaN and infinities unchanged.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    Fp32,
    /// Activations in f32; convolution and linear operands (inputs, weights, output
    /// gradients) rounded to tf32, as tensor cores read them.
    Tf32,
    /// Activations and activation gradients stored in bfloat16; fp32 master weights,
    /// optimiser state and batch-norm statistics.
    Bf16,
    /// As bf16 in IEEE half precision, with dynamic loss scaling.
    Fp16,
}

impl Precision {
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Tf32 => "tf32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
        }
    }

    /// The unit roundoff u = 2^-t of the format, t its significant bits (stored mantissa bits
    /// plus the implicit one): round to nearest changes a normal value x by at most u·|x|.
    pub fn unit_roundoff(self) -> f64 {
        match self {
            Precision::Fp32 => 2f64.powi(-24),
            Precision::Tf32 | Precision::Fp16 => 2f64.powi(-11),
            Precision::Bf16 => 2f64.powi(-8),
        }
    }

    /// The smallest positive subnormal of the format: the absolute rounding step near zero
    /// (half of it is the largest error of rounding a value that small).
    pub fn smallest_subnormal(self) -> f64 {
        match self {
            Precision::Fp32 | Precision::Tf32 => 2f64.powi(-149),
            Precision::Bf16 => 2f64.powi(-133),
            Precision::Fp16 => 2f64.powi(-24),
        }
    }

    /// Whether activations and activation gradients are stored in the format (bf16, fp16);
    /// tf32 rounds only the operands of convolutions and linear layers.
    pub fn stores_activations(self) -> bool {
        matches!(self, Precision::Bf16 | Precision::Fp16)
    }

    /// The 16-bit format a device that stores tensors natively keeps this run's activations and
    /// activation gradients in (bf16, fp16); None where they stay f32.
    pub fn stored_format(self) -> Option<StoredFormat> {
        match self {
            Precision::Bf16 => Some(StoredFormat::Bf16),
            Precision::Fp16 => Some(StoredFormat::F16),
            Precision::Fp32 | Precision::Tf32 => None,
        }
    }

    /// The oldest GPU whose tensor cores take the format's GEMM operands: Turing (7.5) has f16
    /// tensor cores, bf16 and tf32 came with Ampere (8.0); None at fp32 (CUDA cores).
    pub fn tensor_core_compute_capability(self) -> Option<(i32, i32)> {
        match self {
            Precision::Fp16 => Some((7, 5)),
            Precision::Bf16 | Precision::Tf32 => Some((8, 0)),
            Precision::Fp32 => None,
        }
    }
    /// Whether a GPU of compute capability `cc` has tensor cores for the format.
    pub fn has_tensor_cores_on(self, cc: (i32, i32)) -> bool {
        self.tensor_core_compute_capability().is_some_and(|need| cc >= need)
    }
    /// Why a GPU of compute capability `cc` cannot run the format on tensor cores ("needs a GPU
    /// of compute capability 8.0 or newer (its tensor cores); this one is 7.5"), or None when it
    /// can or the format (fp32) needs none: the clause of every such refusal.
    pub fn missing_tensor_cores(self, (major, minor): (i32, i32)) -> Option<String> {
        let (need_major, need_minor) = self.tensor_core_compute_capability()?;
        (!self.has_tensor_cores_on((major, minor))).then(|| {
            format!("needs a GPU of compute capability {need_major}.{need_minor} or newer (its tensor cores); this one is {major}.{minor}")
        })
    }

    /// Whether convolution and linear operands are rounded (every format but fp32).
    pub fn rounds_gemm_operands(self) -> bool {
        self != Precision::Fp32
    }

    /// Whether training needs dynamic loss scaling: fp16's narrow exponent range flushes small
    /// gradients to zero without it.
    pub fn needs_loss_scaling(self) -> bool {
        self == Precision::Fp16
    }

    /// `x` rounded to the format (an f32 holding it exactly).
    pub fn round(self, x: f32) -> f32 {
        match self {
            Precision::Fp32 => x,
            Precision::Tf32 => round_tf32(x),
            Precision::Bf16 => half::bf16::from_f32(x).to_f32(),
            Precision::Fp16 => half::f16::from_f32(x).to_f32(),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The element type a GPU buffer of f32 values holds them in: f32 itself, or 16 bits (a bf16 or
/// fp16 run's activations and activation gradients). Kernels read any of them widened to f32 and
/// store rounded to nearest even (kernels/stored.cuh); the CPU keeps f32 containers holding the
/// rounded values instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum StoredFormat {
    #[default]
    F32,
    Bf16,
    F16,
}

impl StoredFormat {
    /// Bytes per value.
    pub fn bytes(self) -> usize {
        match self {
            StoredFormat::F32 => 4,
            StoredFormat::Bf16 | StoredFormat::F16 => 2,
        }
    }

    /// The code kernels switch on (kernels/stored.cuh's FERRO_F32, FERRO_BF16, FERRO_F16).
    pub fn code(self) -> i32 {
        match self {
            StoredFormat::F32 => 0,
            StoredFormat::Bf16 => 1,
            StoredFormat::F16 => 2,
        }
    }
}

/// `cvt.rna.tf32.f32`: the mantissa rounded to 10 bits with ties away from zero, on the bit
/// pattern (so f32 subnormals keep their top 10 stored bits), overflow to infinity; NaN and
/// infinities unchanged.
pub fn round_tf32(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    let bits = x.to_bits();
    // Adding half a tf32 step to the magnitude carries into the exponent when it must (up to
    // infinity at the top), which is rounding half away from zero.
    let magnitude = ((bits & 0x7fff_ffff) + 0x1000) & !0x1fff;
    f32::from_bits((bits & 0x8000_0000) | magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensor_core_refusals_name_the_capability_needed_and_the_device_s() {
        assert_eq!(
            Precision::Bf16.missing_tensor_cores((7, 5)).as_deref(),
            Some("needs a GPU of compute capability 8.0 or newer (its tensor cores); this one is 7.5")
        );
        assert_eq!(Precision::Tf32.missing_tensor_cores((8, 6)), None);
        assert_eq!(Precision::Fp16.missing_tensor_cores((7, 5)), None);
        assert!(Precision::Fp16.missing_tensor_cores((7, 0)).is_some());
        assert_eq!(Precision::Fp32.missing_tensor_cores((5, 0)), None);
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        let ulp = 2f32.powi(-7);
        assert_eq!(Precision::Bf16.round(1.0 + ulp / 2.0), 1.0, "a tie goes to the even neighbour");
        assert_eq!(Precision::Bf16.round(1.0 + 3.0 * ulp / 2.0), 1.0 + 2.0 * ulp, "a tie goes to the even neighbour");
        assert_eq!(Precision::Bf16.round(1.0 + ulp / 2.0 + 2f32.powi(-20)), 1.0 + ulp);
        assert_eq!(Precision::Bf16.round(f32::MAX), f32::INFINITY);
        // Subnormals: the low 16 bits decide, a tie goes to the even upper half.
        assert_eq!(Precision::Bf16.round(f32::from_bits(0x0001_7fff)).to_bits(), 0x0001_0000);
        assert_eq!(Precision::Bf16.round(f32::from_bits(0x0001_8000)).to_bits(), 0x0002_0000);
        assert_eq!(Precision::Bf16.round(f32::from_bits(0x0002_8000)).to_bits(), 0x0002_0000);
        assert!(Precision::Bf16.round(f32::NAN).is_nan());
    }

    #[test]
    fn fp16_overflows_and_has_subnormals() {
        assert_eq!(Precision::Fp16.round(65504.0), 65504.0);
        assert_eq!(Precision::Fp16.round(65519.0), 65504.0);
        assert_eq!(Precision::Fp16.round(65520.0), f32::INFINITY, "the tie above the largest finite is infinity");
        assert_eq!(Precision::Fp16.round(-1e6), f32::NEG_INFINITY);
        assert_eq!(Precision::Fp16.round(2f32.powi(-24)), 2f32.powi(-24), "the smallest subnormal");
        assert_eq!(Precision::Fp16.round(2f32.powi(-25)), 0.0, "half of it is a tie, to even (zero)");
        assert_eq!(Precision::Fp16.round(1.5 * 2f32.powi(-25)), 2f32.powi(-24));
        assert_eq!(Precision::Fp16.round(1.0 + 2f32.powi(-11)), 1.0, "a tie goes to even");
    }

    #[test]
    fn tf32_rounds_ties_away_from_zero() {
        let ulp = 2f32.powi(-10);
        assert_eq!(round_tf32(1.0 + ulp / 2.0), 1.0 + ulp);
        assert_eq!(round_tf32(-(1.0 + ulp / 2.0)), -(1.0 + ulp));
        assert_eq!(round_tf32(1.0 + ulp / 2.0 - 2f32.powi(-23)), 1.0);
        assert_eq!(round_tf32(f32::MAX), f32::INFINITY);
        assert_eq!(round_tf32(f32::NEG_INFINITY), f32::NEG_INFINITY);
        assert!(round_tf32(f32::NAN).is_nan());
    }

    #[test]
    fn rounding_errors_stay_within_the_unit_roundoff() {
        for p in [Precision::Tf32, Precision::Bf16, Precision::Fp16] {
            for i in 1..2000 {
                let x = 1.0 + i as f32 * 0.000_37;
                let err = (p.round(x) as f64 - x as f64).abs();
                assert!(err <= p.unit_roundoff() * x as f64, "{p}: {x} rounds to {}", p.round(x));
            }
        }
    }
}
