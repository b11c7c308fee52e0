//! Benchmark cases: one kernel call at one shape, with the operands it needs, how to run it on
//! any backend, its algorithmic FLOPs and bytes, and how loosely an f32 result may differ from
//! the f64 reference.
//!
//! Each case has a full shape (timed on the CPU and on a GPU) and a smaller simulator shape: the
//! simulator interprets every instruction, so it runs one image instead of the batch (a slice of
//! rows or columns for GEMM, of elements for the optimisers). Every one of these kernels splits
//! its work along that axis into independent blocks doing the same per-block work, so its
//! counters grow linearly with it; `sim_scale` is that ratio, and the prediction multiplies the
//! simulated counters by it.

use super::CaseBackend;
use crate::cpu::CpuBackend;
use crate::device::Device;
use crate::element::Element;
use crate::error::Result;
use crate::gpu::GpuBackend;
use crate::ops::Backend;
use crate::precision::Precision;
use crate::rng::Rng;

/// The device buffers one call reads and writes.
pub struct Operands<E: Element, B: Device<E>> {
    pub bufs: Vec<B::Buf>,
    pub idx: Option<B::IdxBuf>,
}

/// Host values of every operand, drawn once and uploaded to each device, so every device (and
/// the f64 reference, by exact widening) computes on the very same inputs.
pub struct HostOperands {
    pub values: Vec<Vec<f32>>,
    pub idx: Option<Vec<u32>>,
}

impl HostOperands {
    /// The operands on `backend`, converted to its element type (exactly, for f64).
    pub fn upload<E: Element, B: Device<E>>(&self, backend: &B) -> Result<Operands<E, B>> {
        let bufs = self
            .values
            .iter()
            .map(|v| backend.upload(&v.iter().map(|&x| E::from_f64(x as f64)).collect::<Vec<E>>()))
            .collect::<Result<Vec<_>>>()?;
        let idx = self.idx.as_ref().map(|i| backend.upload_idx(i)).transpose()?;
        Ok(Operands { bufs, idx })
    }
}

/// What a benchmarked call is: its operands, its cost and its shape, independent of a backend.
pub trait BenchKernel {
    /// (length, low, high) of each f32 operand, uniform in [low, high).
    fn operand_ranges(&self) -> Vec<(usize, f64, f64)>;
    /// The index operand (class labels, argmax indices) of ops that read one, drawn after the
    /// values from the same stream.
    fn index_operand(&self, _rng: &mut Rng) -> Result<Option<Vec<u32>>> {
        Ok(None)
    }
    /// Operands the op updates in place, checked like its outputs.
    fn written_operands(&self) -> &'static [usize] {
        &[]
    }
    /// Floating-point operations of one call as the algorithm needs them (an FMA is 2; a
    /// comparison or an exp counts 1), independent of how a kernel implements it.
    fn flops(&self) -> f64;
    /// Bytes one call must move at least: every input read once, every output written once.
    fn min_bytes(&self) -> f64;
    /// The longest sum that forms one output value: f32 rounding grows with it.
    fn reduction_len(&self) -> usize {
        1
    }
    /// A short text form of the shape for the report.
    fn describe(&self) -> String;
    /// The single GEMM this call is, for a cuBLAS comparison.
    fn as_cublas_gemm(&self) -> Option<CublasGemm> {
        None
    }

    /// The format the operands' values are drawn in (rounded to it), so that a kernel taking
    /// them at reduced precision reads them exactly and the f64 reference is of the same values.
    fn operand_precision(&self) -> Precision {
        Precision::Fp32
    }

    /// Draws the operands from `seed`: the values, then the index operand.
    fn host_operands(&self, seed: u64) -> Result<HostOperands> {
        let mut rng = Rng::new(seed);
        let precision = self.operand_precision();
        let values = self
            .operand_ranges()
            .into_iter()
            .map(|(len, lo, hi)| (0..len).map(|_| precision.round(rng.uniform_range(lo, hi) as f32)).collect())
            .collect();
        let idx = self.index_operand(&mut rng)?;
        Ok(HostOperands { values, idx })
    }

    /// (absolute, relative) tolerance of an f32 result against the f64 reference: |got - want|
    /// <= atol + rtol * |want|. Rounding of a sum of r terms of size ~1 grows about like r * eps
    /// at worst, so atol grows with the reduction length; a wrong kernel misses by O(1) or more.
    fn tolerance(&self) -> (f64, f64) {
        (1e-5 + 1e-6 * self.reduction_len() as f64, 1e-4)
    }
}

/// A GEMM as cuBLAS would run it: row-major C[m,n] = op(A) op(B), its operands at `precision`
/// (fp32: SGEMM; tf32: f32 operands on the tensor cores; bf16/fp16: 16-bit operands), f32
/// accumulation and output.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CublasGemm {
    pub precision: Precision,
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
}

/// How a benchmarked call runs, written once for every backend by the family that owns it.
pub trait RunKernel: BenchKernel + 'static {
    /// Runs the call once. Returns the buffers it created; operands listed by
    /// `written_operands` were updated in place.
    fn execute<E: Element, B: Backend<E>>(&self, b: &B, ops: &mut Operands<E, B>) -> Result<Vec<B::Buf>>;
}

/// [`RunKernel`] made object-safe: one method per (backend, element) pair that exists.
pub trait DynKernel: BenchKernel {
    fn execute_cpu_f64(&self, b: &CpuBackend, ops: &mut Operands<f64, CpuBackend>) -> Result<Vec<<CpuBackend as Device<f64>>::Buf>>;
    fn execute_cpu_f32(&self, b: &CpuBackend, ops: &mut Operands<f32, CpuBackend>) -> Result<Vec<<CpuBackend as Device<f32>>::Buf>>;
    fn execute_gpu_f32(&self, b: &GpuBackend, ops: &mut Operands<f32, GpuBackend>) -> Result<Vec<<GpuBackend as Device<f32>>::Buf>>;
}

impl<T: RunKernel> DynKernel for T {
    fn execute_cpu_f64(&self, b: &CpuBackend, ops: &mut Operands<f64, CpuBackend>) -> Result<Vec<<CpuBackend as Device<f64>>::Buf>> {
        self.execute(b, ops)
    }
    fn execute_cpu_f32(&self, b: &CpuBackend, ops: &mut Operands<f32, CpuBackend>) -> Result<Vec<<CpuBackend as Device<f32>>::Buf>> {
        self.execute(b, ops)
    }
    fn execute_gpu_f32(&self, b: &GpuBackend, ops: &mut Operands<f32, GpuBackend>) -> Result<Vec<<GpuBackend as Device<f32>>::Buf>> {
        self.execute(b, ops)
    }
}

impl dyn DynKernel + '_ {
    /// Runs the call once on `b` (see [`RunKernel::execute`]).
    pub fn execute<E: Element, B: CaseBackend<E>>(&self, b: &B, ops: &mut Operands<E, B>) -> Result<Vec<B::Buf>> {
        b.execute_kernel(self, ops)
    }
}

/// One benchmarked call at its full and its simulator shape.
pub struct BenchCase {
    /// Unique, e.g. "conv_fwd resnet18 64x32x32 3x3".
    pub name: String,
    /// The op family (src/ops/<family>, kernels/<family>.cu).
    pub family: &'static str,
    pub full: Box<dyn DynKernel>,
    pub sim: Box<dyn DynKernel>,
    /// Full-shape counters = simulated counters * sim_scale.
    pub sim_scale: f64,
}

/// The cases being collected, at one batch size, for the family being visited.
pub struct BenchCases {
    batch: usize,
    family: &'static str,
    cases: Vec<BenchCase>,
}

impl BenchCases {
    pub fn new(batch: usize) -> Self {
        BenchCases { batch, family: "", cases: Vec::new() }
    }

    /// Images per batch of the batch-dependent shapes.
    pub fn batch(&self) -> usize {
        self.batch
    }

    /// Cases added from now on belong to `family`.
    pub fn set_family(&mut self, family: &'static str) {
        self.family = family;
    }

    pub fn add(&mut self, name: String, full: impl RunKernel, sim: impl RunKernel, sim_scale: f64) {
        self.cases.push(BenchCase { name, family: self.family, full: Box::new(full), sim: Box::new(sim), sim_scale });
    }

    pub fn into_cases(self) -> Vec<BenchCase> {
        self.cases
    }
}
