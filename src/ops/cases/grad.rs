//! Gradient-check cases: one op in one configuration with fixed input values and output weights
//! `dy`. Running a case gives its forward output and the gradient of <output, dy> with respect to
//! each differentiable input, all computed by the backend's own backward methods.

use super::CaseBackend;
use crate::cpu::CpuBackend;
use crate::element::Element;
use crate::error::Result;
use crate::gpu::GpuBackend;
use crate::ops::Backend;
use crate::precision::StoredFormat;
use crate::rng::Rng;

/// A case's forward output and the gradient for each input, on the host.
pub type ForwardAndGrads<E> = (Vec<E>, Vec<Vec<E>>);

/// How a case runs, written once for every backend by the family that owns the op.
pub trait GradOp: 'static {
    /// The forward output and the gradients of <output, dy> for `inputs` (in the order the case
    /// lists them); `dy_host` holds dy's values for ops that scale by them on the host.
    fn run<E: Element, B: Backend<E>>(&self, b: &B, inputs: &[B::Buf], dy: &B::Buf, dy_host: &[E]) -> Result<(B::Buf, Vec<B::Buf>)>;
    /// How many of the leading inputs are activations that the op's kernels read in any stored
    /// format, as the executor hands them to a node that `reads_stored`: a bf16/fp16 run stores
    /// them, and dy with them, in 16-bit buffers on a device that keeps those. The other inputs
    /// (parameters) stay f32, as do all of an op that reads f32 only (the default).
    fn stored_inputs(&self) -> usize {
        0
    }
    /// Per result (the output, then each gradient): the magnitude of the terms it is the
    /// difference of, where that exceeds the result itself. A result that cancels (a loss of
    /// log-sum-exp minus a logit, a softmax probability near 1 minus its target) carries the
    /// rounding errors of its terms, which a tolerance scaled by the result alone would not
    /// allow. Empty (the default): every result's terms are no larger than it.
    fn term_scales(&self, _inputs: &[Vec<f64>], _dy: &[f64]) -> Vec<f64> {
        Vec::new()
    }
}

/// [`GradOp`] made object-safe: one method per (backend, element) pair that exists.
/// Each method takes `activations`, the format the op's `stored_inputs` and dy are stored in.
pub trait DynGradOp {
    fn run_cpu_f64(&self, b: &CpuBackend, inputs: &[Vec<f64>], dy: &[f64], activations: StoredFormat) -> Result<ForwardAndGrads<f64>>;
    fn run_cpu_f32(&self, b: &CpuBackend, inputs: &[Vec<f32>], dy: &[f32], activations: StoredFormat) -> Result<ForwardAndGrads<f32>>;
    fn run_gpu_f32(&self, b: &GpuBackend, inputs: &[Vec<f32>], dy: &[f32], activations: StoredFormat) -> Result<ForwardAndGrads<f32>>;
    fn term_scales(&self, inputs: &[Vec<f64>], dy: &[f64]) -> Vec<f64>;
}

/// Uploads the inputs and dy (the op's `stored_inputs` and dy stored in `activations`), runs the
/// op, and downloads its output and gradients (widened to f32 from any stored format).
fn run_on_host<E: Element, B: Backend<E>>(op: &impl GradOp, b: &B, inputs: &[Vec<E>], dy: &[E], activations: StoredFormat) -> Result<ForwardAndGrads<E>> {
    let stored = op.stored_inputs();
    let upload = |v: &[E], is_activation: bool| match b.upload(v)? {
        buf if is_activation && activations != StoredFormat::F32 => b.convert_stored(&buf, activations),
        buf => Ok(buf),
    };
    let bufs = inputs.iter().enumerate().map(|(i, v)| upload(v, i < stored)).collect::<Result<Vec<_>>>()?;
    let dy_buf = upload(dy, stored > 0)?;
    let (out, grads) = op.run(b, &bufs, &dy_buf, dy)?;
    let out = b.download(&out)?;
    let grads = grads.iter().map(|g| b.download(g)).collect::<Result<Vec<_>>>()?;
    Ok((out, grads))
}

impl<T: GradOp> DynGradOp for T {
    fn run_cpu_f64(&self, b: &CpuBackend, inputs: &[Vec<f64>], dy: &[f64], activations: StoredFormat) -> Result<ForwardAndGrads<f64>> {
        run_on_host(self, b, inputs, dy, activations)
    }
    fn run_cpu_f32(&self, b: &CpuBackend, inputs: &[Vec<f32>], dy: &[f32], activations: StoredFormat) -> Result<ForwardAndGrads<f32>> {
        run_on_host(self, b, inputs, dy, activations)
    }
    fn run_gpu_f32(&self, b: &GpuBackend, inputs: &[Vec<f32>], dy: &[f32], activations: StoredFormat) -> Result<ForwardAndGrads<f32>> {
        run_on_host(self, b, inputs, dy, activations)
    }
    fn term_scales(&self, inputs: &[Vec<f64>], dy: &[f64]) -> Vec<f64> {
        GradOp::term_scales(self, inputs, dy)
    }
}

/// One op in one configuration with fixed input values and output weights `dy`.
pub struct GradCase {
    /// The op's name as `--op` spells it.
    pub op: &'static str,
    pub config: String,
    /// The differentiable inputs, in the order the op takes them.
    pub inputs: Vec<Vec<f64>>,
    /// Weights of the scalar <output, dy> whose gradient is checked.
    pub dy: Vec<f64>,
    kind: Box<dyn DynGradOp>,
}

impl GradCase {
    /// Forward output and the gradients of <output, dy> for `inputs`, on backend `b`.
    pub fn run<E: Element, B: CaseBackend<E>>(&self, b: &B, inputs: &[Vec<E>], dy: &[E]) -> Result<ForwardAndGrads<E>> {
        self.run_storing(b, inputs, dy, StoredFormat::F32)
    }

    /// `run` with the activations among the inputs, and dy, stored in `activations` (a 16-bit
    /// format on a device that `stores_16bit`) where the op reads stored formats.
    pub fn run_storing<E: Element, B: CaseBackend<E>>(&self, b: &B, inputs: &[Vec<E>], dy: &[E], activations: StoredFormat) -> Result<ForwardAndGrads<E>> {
        b.run_grad(self.kind.as_ref(), inputs, dy, activations)
    }

    /// Per result, the magnitude of the terms it cancels ([`GradOp::term_scales`]); 0 past the
    /// list's end.
    pub fn term_scale(&self, result: usize) -> f64 {
        self.kind.term_scales(&self.inputs, &self.dy).get(result).copied().unwrap_or(0.0)
    }
}

/// The cases being collected, and the one seeded stream every family draws their values from.
pub struct GradCases {
    rng: Rng,
    cases: Vec<GradCase>,
}

impl GradCases {
    pub fn new(seed: u64) -> Self {
        GradCases { rng: Rng::new(seed), cases: Vec::new() }
    }

    /// Adds a case; its `dy` (of the output's length) is drawn after its inputs.
    pub fn push(&mut self, op: &'static str, config: String, kind: impl GradOp, inputs: Vec<Vec<f64>>, out_len: usize) {
        let dy = self.symmetric(out_len);
        self.cases.push(GradCase { op, config, inputs, dy, kind: Box::new(kind) });
    }

    pub fn into_cases(self) -> Vec<GradCase> {
        self.cases
    }

    /// The stream itself, for draws of another kind (labels, other ranges).
    pub fn rng(&mut self) -> &mut Rng {
        &mut self.rng
    }

    /// Values uniform in [-1, 1).
    pub fn symmetric(&mut self, len: usize) -> Vec<f64> {
        self.uniform(len, -1.0, 1.0)
    }

    /// Values uniform in [lo, hi).
    pub fn uniform(&mut self, len: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..len).map(|_| self.rng.uniform_range(lo, hi)).collect()
    }

    /// Values in [-scale, scale) kept more than `gap` away from each point in `kinks`, so a
    /// finite-difference step never crosses a point where the derivative jumps.
    pub fn away_from(&mut self, len: usize, scale: f64, kinks: &[f64], gap: f64) -> Vec<f64> {
        (0..len)
            .map(|_| loop {
                let v = self.rng.uniform_range(-scale, scale);
                if kinks.iter().all(|k| (v - k).abs() > gap) {
                    break v;
                }
            })
            .collect()
    }

    /// Distinct values spaced 0.01 apart in random order: max pooling has no ties for a
    /// finite-difference step to break.
    pub fn distinct(&mut self, len: usize) -> Vec<f64> {
        let mut v: Vec<f64> = (0..len).map(|i| (i as f64 - len as f64 / 2.0) * 0.01).collect();
        self.rng.shuffle(&mut v);
        v
    }
}
