//! The tensor-core GEMM (`kernels/gemm_tc.cu`, compute capability 8.0 and newer; fp16 from 7.5): C[M,N] (f32) =
//! A[M,K] B[K,N], row-major, with bf16 or f16 inputs (stored as their 16-bit patterns) or f32
//! inputs that the kernel rounds to tf32, accumulated in f32. Its launcher checks the geometry,
//! and [`reference`] computes the same arithmetic on the CPU: the inputs rounded exactly as the
//! GPU sees them, the products summed in f64, with the error bound fp32 accumulation allows.

use crate::device::driver::{KernelArg, LaunchConfig};
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::precision::Precision;

const MODULE: &str = "gemm_tc";
/// The kernel's block tile width and threads (kernels/gemm_tc.cu).
pub const TILE_COLS: usize = 128;
const THREADS: u32 = 256;

/// The kernel's block tiles: 128 or 64 rows of C by [`TILE_COLS`] columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcTile {
    Rows128,
    Rows64,
}

impl TcTile {
    pub fn rows(self) -> usize {
        match self {
            TcTile::Rows128 => 128,
            TcTile::Rows64 => 64,
        }
    }
}
/// f32's unit roundoff, 2^-24.
const F32_UNIT_ROUNDOFF: f64 = 1.0 / (1u64 << 24) as f64;

/// The tensor-core input formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcInput {
    Bf16,
    F16,
    /// f32 operands, rounded by the kernel to tf32 (10-bit mantissa, round to nearest with ties
    /// away from zero: `cvt.rna.tf32.f32`).
    Tf32,
}

impl TcInput {
    /// The tensor cores' input format for GEMM operands stored at `precision`; None at fp32.
    pub fn for_precision(precision: Precision) -> Option<TcInput> {
        match precision {
            Precision::Bf16 => Some(TcInput::Bf16),
            Precision::Fp16 => Some(TcInput::F16),
            Precision::Tf32 => Some(TcInput::Tf32),
            Precision::Fp32 => None,
        }
    }
    /// Whether a device of compute capability `cc` has tensor cores for this format.
    pub fn runs_on(self, cc: (i32, i32)) -> bool {
        self.precision().has_tensor_cores_on(cc)
    }
    /// `Ok` when a device of compute capability `cc` has tensor cores for this format, else the
    /// one-line refusal naming `what` would run on them.
    pub fn check_device(self, what: &str, cc: (i32, i32)) -> Result<()> {
        match self.precision().missing_tensor_cores(cc) {
            Some(why) => Err(Error::device(format!("the {what} at {} {why}", self.precision().name()))),
            None => Ok(()),
        }
    }
    /// The run precision whose GEMM operands take this format (the inverse of `for_precision`).
    pub fn precision(self) -> Precision {
        match self {
            TcInput::Bf16 => Precision::Bf16,
            TcInput::F16 => Precision::Fp16,
            TcInput::Tf32 => Precision::Tf32,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            TcInput::Bf16 => "bf16",
            TcInput::F16 => "f16",
            TcInput::Tf32 => "tf32",
        }
    }
    fn kernel(self, tile: TcTile) -> &'static str {
        match (self, tile) {
            (TcInput::Bf16, TcTile::Rows128) => "gemm_tc_bf16",
            (TcInput::F16, TcTile::Rows128) => "gemm_tc_f16",
            (TcInput::Tf32, TcTile::Rows128) => "gemm_tc_tf32",
            (TcInput::Bf16, TcTile::Rows64) => "gemm_tc_bf16_64",
            (TcInput::F16, TcTile::Rows64) => "gemm_tc_f16_64",
            (TcInput::Tf32, TcTile::Rows64) => "gemm_tc_tf32_64",
        }
    }
    /// Elements in one 16-byte copy of the kernel: K and N must be multiples of it.
    fn chunk_elements(self) -> usize {
        match self {
            TcInput::Bf16 | TcInput::F16 => 8,
            TcInput::Tf32 => 4,
        }
    }
    /// The value the tensor core multiplies for `x`: bf16/f16 rounded to nearest even (as the
    /// 16-bit operands are stored, [`to_bits`]), tf32 as `cvt.rna.tf32.f32` rounds.
    pub fn round(self, x: f32) -> f32 {
        match self {
            TcInput::Bf16 => half::bf16::from_f32(x).to_f32(),
            TcInput::F16 => half::f16::from_f32(x).to_f32(),
            TcInput::Tf32 => tf32_rna(x),
        }
    }
}

/// `cvt.rna.tf32.f32`: the mantissa rounded to 10 bits, ties away from zero; NaN and infinity kept.
fn tf32_rna(x: f32) -> f32 {
    if !x.is_finite() {
        return x;
    }
    f32::from_bits(x.to_bits().wrapping_add(0x1000) & 0xffff_e000)
}

/// f32 values as the 16-bit patterns of bf16 or f16 (round to nearest even), the operands of
/// [`gemm_tc_half`].
pub fn to_bits(input: TcInput, x: &[f32]) -> Result<Vec<u16>> {
    match input {
        TcInput::Bf16 => Ok(x.iter().map(|&v| half::bf16::from_f32(v).to_bits()).collect()),
        TcInput::F16 => Ok(x.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect()),
        TcInput::Tf32 => Err(Error::config("tf32 operands are f32 values, not 16-bit patterns")),
    }
}

/// A tensor-core launch's operands, each (name, elements needed, alignment in bytes), against the
/// elements each buffer holds and its address: one error line naming `op` and the first operand
/// too short or misaligned.
pub(crate) fn check_operands(op: &str, needs: [(&str, usize, u64); 3], lens: [usize; 3], ptrs: [u64; 3]) -> Result<()> {
    for (((name, need, align), have), ptr) in needs.into_iter().zip(lens).zip(ptrs) {
        if have < need {
            return Err(Error::shape(format!("{op}: {name} holds {have} elements, it needs {need}")));
        }
        if !ptr.is_multiple_of(align) {
            return Err(Error::shape(format!("{op}: {name} at {ptr:#x} is not {align}-byte aligned")));
        }
    }
    Ok(())
}

/// The shape of one tensor-core product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcGemm {
    pub input: TcInput,
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

impl TcGemm {
    pub fn flops(&self) -> f64 {
        2.0 * self.m as f64 * self.n as f64 * self.k as f64
    }

    /// The block tile for a device of `multiprocessors` SMs: 64 rows when M fits in them (a
    /// 128-row tile would multiply zeros) or when 128-row tiles would leave SMs without a block;
    /// else 128 rows, which read each operand half as often.
    pub fn plan_tile(&self, multiprocessors: usize) -> TcTile {
        let tiles_128 = self.m.div_ceil(128) * self.n.div_ceil(TILE_COLS);
        if self.m <= 64 || tiles_128 < multiprocessors {
            TcTile::Rows64
        } else {
            TcTile::Rows128
        }
    }

    /// The kernel's requirements on the shape and on the operands' lengths and addresses (A and
    /// B 16-byte aligned, C 8-byte aligned).
    fn check(&self, lens: [usize; 3], ptrs: [u64; 3]) -> Result<()> {
        let TcGemm { input, m, n, k } = *self;
        let chunk = input.chunk_elements();
        if m == 0 || n == 0 || k == 0 {
            return Err(Error::shape(format!("tensor-core GEMM of {m}x{n}x{k}: every dimension must be at least 1")));
        }
        if !k.is_multiple_of(chunk) || !n.is_multiple_of(chunk) {
            return Err(Error::shape(format!(
                "tensor-core {} GEMM of {m}x{n}x{k}: K and N must be multiples of {chunk} (pad the operands)",
                input.name()
            )));
        }
        if [m, n, k].iter().any(|&d| d > i32::MAX as usize) || m.div_ceil(TcTile::Rows64.rows()) > 65535 {
            return Err(Error::shape(format!("tensor-core GEMM of {m}x{n}x{k} is too large for one launch")));
        }
        check_operands(&format!("tensor-core GEMM of {m}x{n}x{k}"), [("A", m * k, 16), ("B", k * n, 16), ("C", m * n, 8)], lens, ptrs)
    }

    fn grid(&self, tile: TcTile) -> LaunchConfig {
        LaunchConfig {
            grid: (self.n.div_ceil(TILE_COLS) as u32, self.m.div_ceil(tile.rows()) as u32, 1),
            block: (THREADS, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    fn launch(&self, gpu: &GpuBackend, tile: Option<TcTile>, ptrs: [u64; 3]) -> Result<()> {
        self.input.check_device("tensor-core GEMM", gpu.driver().compute_capability())?;
        let dim = |d: usize| KernelArg::I32(d as i32);
        let args = [KernelArg::Ptr(ptrs[0]), KernelArg::Ptr(ptrs[1]), KernelArg::Ptr(ptrs[2]), dim(self.m), dim(self.n), dim(self.k)];
        let tile = tile.unwrap_or_else(|| self.plan_tile(gpu.driver().multiprocessor_count()));
        gpu.launch(MODULE, self.input.kernel(tile), self.grid(tile), &args)
    }
}

/// C = A B on the tensor cores with bf16 or f16 operands (16-bit patterns, [`to_bits`]), on
/// `tile` or the one [`TcGemm::plan_tile`] picks for the device.
pub fn gemm_tc_half(gpu: &GpuBackend, shape: TcGemm, tile: Option<TcTile>, a: &GpuBuf<u16>, b: &GpuBuf<u16>, c: &mut GpuBuf<f32>) -> Result<()> {
    if shape.input == TcInput::Tf32 {
        return Err(Error::config("the tf32 GEMM takes f32 operands (gemm_tc_tf32)"));
    }
    let ptrs = [a.ptr(), b.ptr(), c.ptr()];
    shape.check([a.len(), b.len(), c.len()], ptrs)?;
    shape.launch(gpu, tile, ptrs)
}

/// C = A B on the tensor cores with f32 operands rounded to tf32, on `tile` or the planned one.
pub fn gemm_tc_tf32(gpu: &GpuBackend, shape: TcGemm, tile: Option<TcTile>, a: &GpuBuf<f32>, b: &GpuBuf<f32>, c: &mut GpuBuf<f32>) -> Result<()> {
    if shape.input != TcInput::Tf32 {
        return Err(Error::config(format!("the {} GEMM takes 16-bit operands (gemm_tc_half)", shape.input.name())));
    }
    let ptrs = [a.ptr(), b.ptr(), c.ptr()];
    shape.check([a.len(), b.len(), c.len()], ptrs)?;
    shape.launch(gpu, tile, ptrs)
}

/// gamma_K = K u / (1 - K u) for f32's unit roundoff u: a sum of K exact products accumulated in
/// f32 is within gamma_K times the sum of their magnitudes (see [`reference`]).
pub fn f32_accumulation_gamma(k: usize) -> f64 {
    let ku = k as f64 * F32_UNIT_ROUNDOFF;
    ku / (1.0 - ku)
}

/// The CPU reference of the tensor-core GEMM: each element of A B with A and B rounded as the
/// GPU sees them ([`TcInput::round`]) and the products summed in f64, and the largest error the
/// GPU's f32 accumulation may add to it.
///
/// The bound: the products of two bf16/f16/tf32 values are exact in f32, so the GPU's only
/// errors are the roundings of its f32 running sums. However the hardware orders and groups the
/// k-sum (the ISA leaves it open; the simulator rounds once per mma), it takes at most K
/// roundings of partial sums, each by at most the unit roundoff u = 2^-24 relative to a partial
/// sum bounded by sum_k |a_ik b_kj|; the classic bound for recursive summation then gives
/// |got - exact| <= gamma_K * sum_k |a_ik b_kj| with gamma_K = K u / (1 - K u) (Higham, Accuracy
/// and Stability of Numerical Algorithms, 2nd ed., eq. 4.4). The f64 sum's own error is below
/// 2^-29 of that and ignored.
pub fn reference(shape: TcGemm, a: &[f32], b: &[f32]) -> (Vec<f64>, Vec<f64>) {
    let TcGemm { input, m, n, k } = shape;
    let ra: Vec<f64> = a[..m * k].iter().map(|&x| input.round(x) as f64).collect();
    let rb: Vec<f64> = b[..k * n].iter().map(|&x| input.round(x) as f64).collect();
    let gamma = f32_accumulation_gamma(k);
    let mut values = vec![0.0; m * n];
    let mut bounds = vec![0.0; m * n];
    for i in 0..m {
        for p in 0..k {
            let av = ra[i * k + p];
            for j in 0..n {
                let product = av * rb[p * n + j];
                values[i * n + j] += product;
                bounds[i * n + j] += product.abs();
            }
        }
    }
    bounds.iter_mut().for_each(|s| *s *= gamma);
    (values, bounds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tf32_rounds_to_nearest_with_ties_away_from_zero() {
        // 1 + 2^-11 is halfway between 1 and 1 + 2^-10: away from zero.
        assert_eq!(tf32_rna(1.0 + 2f32.powi(-11)), 1.0 + 2f32.powi(-10));
        assert_eq!(tf32_rna(-(1.0 + 2f32.powi(-11))), -(1.0 + 2f32.powi(-10)));
        assert_eq!(tf32_rna(1.0 + 2f32.powi(-12)), 1.0);
        assert_eq!(tf32_rna(f32::INFINITY), f32::INFINITY);
    }

    #[test]
    fn the_reference_rounds_inputs_and_bounds_the_f32_accumulation() {
        // bf16 rounds 1 + 2^-9 to 1 (ties to even), f16 keeps it.
        let x = 1.0 + 2f32.powi(-9);
        let a = vec![x; 4];
        let b = vec![1.0; 4];
        let (bf, bound) = reference(TcGemm { input: TcInput::Bf16, m: 1, n: 1, k: 4 }, &a, &b);
        assert_eq!(bf, vec![4.0]);
        assert!((bound[0] - 4.0 * 4.0 * F32_UNIT_ROUNDOFF / (1.0 - 4.0 * F32_UNIT_ROUNDOFF)).abs() < 1e-18);
        let (f16v, _) = reference(TcGemm { input: TcInput::F16, m: 1, n: 1, k: 4 }, &a, &b);
        assert_eq!(f16v, vec![4.0 * x as f64]);
    }

    #[test]
    fn shapes_the_kernel_cannot_take_are_refused_in_one_line() {
        let shape = TcGemm { input: TcInput::Bf16, m: 4, n: 12, k: 16 };
        let err = shape.check([64, 192, 48], [0, 0, 0]).unwrap_err().to_string();
        assert!(err.contains("K and N must be multiples of 8"), "{err}");
        let shape = TcGemm { input: TcInput::Tf32, m: 4, n: 12, k: 16 };
        assert!(shape.check([64, 192, 48], [0, 0, 0]).is_ok());
        assert!(shape.check([63, 192, 48], [0, 0, 0]).unwrap_err().to_string().contains("A holds 63 elements, it needs 64"));
        assert!(shape.check([64, 192, 48], [8, 0, 0]).unwrap_err().to_string().contains("A at 0x8 is not 16-byte aligned"));
        assert!(TcGemm { k: 0, ..shape }.check([0, 0, 0], [0, 0, 0]).is_err());
    }

    #[test]
    fn small_products_take_64_row_tiles() {
        let shape = |m, n| TcGemm { input: TcInput::Bf16, m, n, k: 64 };
        assert_eq!(shape(64, 4096).plan_tile(82), TcTile::Rows64, "M fits 64 rows");
        assert_eq!(shape(512, 2048).plan_tile(82), TcTile::Rows64, "64 tiles of 128 rows for 82 SMs");
        assert_eq!(shape(4096, 4096).plan_tile(128), TcTile::Rows128);
    }
}
