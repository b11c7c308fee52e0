//! The cases every op family owns: its gradient checks (`grad`) and its benchmarked kernel calls
//! (`bench`), written in `src/ops/<family>/cases.rs`. gradcheck and the kernel benchmarks keep
//! no list of ops: they iterate over [`families`](crate::ops::families), generated from the
//! registration list in `ops/mod.rs`.
//!
//! A case author writes generic code (`GradOp::run`, `RunKernel::execute` over any backend); a
//! blanket impl turns it into an object-safe trait with one method per (backend, element) pair
//! that exists, so the lists are `Vec<Box<dyn ...>>` and [`CaseBackend`] picks the method.

pub mod bench;
pub mod grad;

pub use bench::{BenchCase, BenchCases, BenchKernel, CublasGemm, DynKernel, HostOperands, Operands, RunKernel};
pub use grad::{DynGradOp, ForwardAndGrads, GradCase, GradCases, GradOp};

use crate::cpu::CpuBackend;
use crate::element::Element;
use crate::error::Result;
use crate::gpu::GpuBackend;
use crate::ops::Backend;
use crate::precision::StoredFormat;

/// The cases of one op family. Both lists are empty unless the family overrides them.
pub trait FamilyCases {
    /// Adds the family's gradient checks; their values come from the shared seeded stream.
    fn grad_cases(&self, _cases: &mut GradCases) {}
    /// Adds the family's benchmark cases, the batch-dependent shapes at `cases.batch()` images.
    fn bench_cases(&self, _cases: &mut BenchCases) -> Result<()> {
        Ok(())
    }
}

/// An op family that owns cases: its folder name (`src/ops/<name>`, `kernels/<name>.cu`) and them.
pub struct Family {
    pub name: &'static str,
    pub cases: &'static dyn FamilyCases,
}

/// A (backend, element) pair cases run on: it picks its own method of the object-safe case
/// traits, so callers stay generic over the backend.
pub trait CaseBackend<E: Element>: Backend<E> + Sized {
    fn run_grad(&self, op: &dyn DynGradOp, inputs: &[Vec<E>], dy: &[E], activations: StoredFormat) -> Result<ForwardAndGrads<E>>;
    fn execute_kernel(&self, op: &dyn DynKernel, operands: &mut Operands<E, Self>) -> Result<Vec<Self::Buf>>;
}

impl CaseBackend<f64> for CpuBackend {
    fn run_grad(&self, op: &dyn DynGradOp, inputs: &[Vec<f64>], dy: &[f64], activations: StoredFormat) -> Result<ForwardAndGrads<f64>> {
        op.run_cpu_f64(self, inputs, dy, activations)
    }
    fn execute_kernel(&self, op: &dyn DynKernel, operands: &mut Operands<f64, Self>) -> Result<Vec<Self::Buf>> {
        op.execute_cpu_f64(self, operands)
    }
}

impl CaseBackend<f32> for CpuBackend {
    fn run_grad(&self, op: &dyn DynGradOp, inputs: &[Vec<f32>], dy: &[f32], activations: StoredFormat) -> Result<ForwardAndGrads<f32>> {
        op.run_cpu_f32(self, inputs, dy, activations)
    }
    fn execute_kernel(&self, op: &dyn DynKernel, operands: &mut Operands<f32, Self>) -> Result<Vec<Self::Buf>> {
        op.execute_cpu_f32(self, operands)
    }
}

impl CaseBackend<f32> for GpuBackend {
    fn run_grad(&self, op: &dyn DynGradOp, inputs: &[Vec<f32>], dy: &[f32], activations: StoredFormat) -> Result<ForwardAndGrads<f32>> {
        op.run_gpu_f32(self, inputs, dy, activations)
    }
    fn execute_kernel(&self, op: &dyn DynKernel, operands: &mut Operands<f32, Self>) -> Result<Vec<Self::Buf>> {
        op.execute_gpu_f32(self, operands)
    }
}
