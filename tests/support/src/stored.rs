//! What the 16-bit op tests share: the inputs a bf16/fp16 run stores (rounded to its format on
//! the CPU, in 16-bit buffers on the GPU) and the check that a GPU result is stored in the format
//! and equals the CPU emulation's f32 result rounded once, as the executor stores it.

use ferronet::cpu::{CpuBackend, CpuBuf};
use ferronet::device::Device;
use ferronet::element::Element;
use ferronet::gpu::{GpuBackend, GpuBuf};
use ferronet::ops::PrecisionOps;
use ferronet::precision::{Precision, StoredFormat};
use ferronet::tolerance::assert_close;

/// How closely a GPU result must match the CPU's.
#[derive(Clone, Copy, Debug)]
pub enum Agreement {
    /// Bit for bit: both devices compute the same f32 value and round it once.
    Exact,
    /// Within `atol` absolute or `rtol` relative: the devices sum in different orders or their
    /// transcendental functions differ, and one rounding may land on either side.
    Within { atol: f64, rtol: f64 },
}

/// A precision's stored values on the GPU and their emulation on the CPU. Fp32 stores f32
/// buffers and rounds nothing.
pub struct StoredPrecision<'a> {
    pub gpu: &'a GpuBackend,
    pub cpu: &'a CpuBackend,
    pub precision: Precision,
    pub format: StoredFormat,
}

impl<'a> StoredPrecision<'a> {
    pub fn new(gpu: &'a GpuBackend, cpu: &'a CpuBackend, precision: Precision) -> Self {
        let format = precision.stored_format().unwrap_or(StoredFormat::F32);
        StoredPrecision { gpu, cpu, precision, format }
    }

    /// Within one unit of the format's last place (relative), or `atol`.
    pub fn one_ulp(&self, atol: f64) -> Agreement {
        Agreement::Within { atol, rtol: 2.0 * self.precision.unit_roundoff() }
    }

    /// `v` rounded to the format, as the CPU emulation stores it.
    pub fn rounded(&self, v: &[f32]) -> Vec<f32> {
        v.iter().map(|&a| self.precision.round(a)).collect()
    }

    /// `v` in a GPU buffer stored in the format (rounded to nearest even going narrower).
    pub fn on_gpu(&self, v: &[f32]) -> GpuBuf<f32> {
        self.gpu.convert_stored(&self.gpu.upload(v).unwrap(), self.format).unwrap()
    }

    /// `v` rounded to the format in a CPU buffer: what the emulation reads.
    pub fn on_cpu(&self, v: &[f32]) -> CpuBuf<f32> {
        self.cpu.upload(&self.rounded(v)).unwrap()
    }

    /// The values of `got`, asserting that it is stored in the format.
    #[track_caller]
    pub fn download(&self, what: &str, got: &GpuBuf<f32>) -> Vec<f32> {
        assert_eq!(self.gpu.stored_format(got), self.format, "{} {what}: the result's format", self.precision);
        self.gpu.download(got).unwrap()
    }

    /// The CPU emulation's result as the run stores it: rounded once to the format.
    pub fn as_stored<E: Element>(&self, mut want: CpuBuf<E>) -> Vec<E> {
        PrecisionOps::<E>::round_in_place(self.cpu, self.precision, &mut want).unwrap();
        want.to_vec()
    }

    /// Asserts that `got` agrees with `want` as `agreement` says.
    #[track_caller]
    pub fn compare<E: Element>(&self, what: &str, got: &[f32], want: &[E], agreement: Agreement) {
        let want: Vec<f64> = want.iter().map(|&v| Element::to_f64(v)).collect();
        let what = format!("{} {what}", self.precision);
        match agreement {
            Agreement::Exact => assert_eq!(got.iter().map(|&v| v as f64).collect::<Vec<f64>>(), want, "{what}"),
            Agreement::Within { atol, rtol } => assert_close(&what, got, &want, atol, rtol),
        }
    }

    /// Asserts that `got` is stored in the format and agrees with the CPU's result `want` rounded
    /// once to it.
    #[track_caller]
    pub fn check<E: Element>(&self, what: &str, got: &GpuBuf<f32>, want: CpuBuf<E>, agreement: Agreement) {
        self.compare(what, &self.download(what, got), &self.as_stored(want), agreement);
    }
}
