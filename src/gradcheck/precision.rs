//! Gradient checks at a reduced precision (see the module above): an op's forward and backward
//! with the rounding of a reduced-precision engine, on any backend, and the two comparisons.

use super::{report, CheckReport, ErrorStats, GradCase, REL_FLOOR};
use crate::cpu::CpuBackend;
use crate::error::{Error, Result};
use crate::ops::cases::CaseBackend;
use crate::ops::Backend;
use crate::precision::{Precision, StoredFormat};
use crate::tolerance::{against_exact, between_rounded, Tolerance};

/// Convolutions and linear layers: the ops whose operands are rounded at tf32.
fn is_gemm(op: &str) -> bool {
    matches!(op, "conv2d" | "depthwise_conv2d" | "linear")
}

/// Whether the op's inputs and dy are stored in the format.
fn rounds_inputs(op: &str, precision: Precision) -> bool {
    precision.stores_activations() || (precision.rounds_gemm_operands() && is_gemm(op))
}

/// Whether the op's forward output is stored in the format: every activation at bf16/fp16, but
/// the loss is f32.
fn rounds_output(op: &str, precision: Precision) -> bool {
    precision.stores_activations() && op != "softmax_cross_entropy"
}

/// `host` stored on `b` at `precision`: uploaded, rounded by the device's own kernel, read back.
fn store<B: Backend<f32>>(b: &B, precision: Precision, host: &[f32]) -> Result<Vec<f32>> {
    let mut buf = b.upload(host)?;
    b.round_in_place(precision, &mut buf)?;
    b.download(&buf)
}

/// The inputs and dy of `case` as the op reads them at `precision`.
fn stored_operands(case: &GradCase, precision: Precision) -> (Vec<Vec<f32>>, Vec<f32>) {
    let p = if rounds_inputs(case.op, precision) { precision } else { Precision::Fp32 };
    let round = |v: &[f64]| v.iter().map(|&x| p.round(x as f32)).collect::<Vec<f32>>();
    (case.inputs.iter().map(|v| round(v)).collect(), round(&case.dy))
}

/// The op's output and gradients on `b` at `precision`, as stored.
fn run_at<B: CaseBackend<f32>>(b: &B, case: &GradCase, precision: Precision) -> Result<(Vec<f32>, Vec<Vec<f32>>)> {
    let (inputs, dy) = stored_operands(case, precision);
    // As training stores them: activations in 16-bit buffers on a device that keeps those, for
    // the ops whose kernels read them.
    let activations = precision.stored_format().filter(|_| b.stores_16bit()).unwrap_or(StoredFormat::F32);
    // As training declares it: a GPU then runs convolutions' and linear layers' GEMMs on its
    // tensor cores at bf16/fp16.
    b.declare_gemm_operand_format(precision);
    let ran = case.run_storing::<f32, _>(b, &inputs, &dy, activations);
    b.declare_gemm_operand_format(Precision::Fp32);
    let (mut out, mut grads) = ran?;
    if rounds_output(case.op, precision) {
        out = store(b, precision, &out)?;
    }
    if precision.stores_activations() {
        grads = grads.iter().map(|g| store(b, precision, g)).collect::<Result<_>>()?;
    }
    Ok((out, grads))
}

/// The longest reduction any result of `case` can hold: every input value and every dy value
/// (an upper bound for the tolerance's K).
fn reduction_len(case: &GradCase) -> usize {
    case.inputs.iter().map(Vec::len).sum::<usize>() + case.dy.len()
}

/// Compares `got` with `want` tensor by tensor; `rule(stored, scale)` is the tolerance of a
/// tensor stored in the format (or not) whose largest magnitude, or that of the terms it
/// cancels (`GradCase::term_scale`), is `scale`.
fn compare(
    case: &GradCase,
    precision: Precision,
    got: (Vec<f32>, Vec<Vec<f32>>),
    want: (Vec<f64>, Vec<Vec<f64>>),
    rule: impl Fn(bool, f64) -> Tolerance,
    kernels: Vec<String>,
) -> Result<CheckReport> {
    let mut stats = ErrorStats { passed: true, ..Default::default() };
    let stored = std::iter::once(rounds_output(case.op, precision)).chain(std::iter::repeat(precision.stores_activations()));
    let pairs = std::iter::once((&got.0, &want.0)).chain(got.1.iter().zip(&want.1));
    for (result, ((g, w), stored)) in pairs.zip(stored).enumerate() {
        if g.len() != w.len() {
            return Err(Error::shape(format!(
                "{} ({}): {} values where the reference has {}",
                case.op,
                case.config,
                g.len(),
                w.len()
            )));
        }
        let scale = w.iter().fold(case.term_scale(result), |m, v| m.max(v.abs()));
        let t = rule(stored, scale);
        for (&g, &w) in g.iter().zip(w) {
            let abs = (g as f64 - w).abs();
            stats.max_abs = stats.max_abs.max(abs);
            stats.max_rel = stats.max_rel.max(abs / w.abs().max(REL_FLOOR));
            if !crate::tolerance::within(g as f64, w, t.atol, t.rtol) {
                stats.passed = false;
            }
        }
    }
    Ok(report(case, stats, kernels))
}

/// The format's (unit roundoff, smallest subnormal) for a tensor stored in it, else none.
fn format_of(precision: Precision, stored: bool) -> (f64, f64) {
    if stored {
        (precision.unit_roundoff(), precision.smallest_subnormal())
    } else {
        (0.0, 0.0)
    }
}

/// `device` at `precision` against the CPU's f32 emulation at the same precision, within
/// `tolerance::between_rounded`.
pub fn compare_device_at<B: CaseBackend<f32>>(device: &B, cpu: &CpuBackend, case: &GradCase, precision: Precision) -> Result<CheckReport> {
    let (ref_out, ref_grads) = run_at(cpu, case, precision)?;
    let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let want = (widen(&ref_out), ref_grads.iter().map(|g| widen(g)).collect());
    device.take_kernel_log();
    let got = run_at(device, case, precision)?;
    device.synchronize()?;
    let kernels = device.take_kernel_log();
    let k = reduction_len(case);
    compare(case, precision, got, want, |stored, scale| {
        let (u, tiny) = format_of(precision, stored);
        between_rounded(u, tiny, k, scale)
    }, kernels)
}

/// The CPU's f32 emulation at `precision` against the exact op (f64) on the same rounded
/// inputs, within `tolerance::against_exact`.
pub fn check_cpu_at(cpu: &CpuBackend, case: &GradCase, precision: Precision) -> Result<CheckReport> {
    let got = run_at(cpu, case, precision)?;
    let (inputs, dy) = stored_operands(case, precision);
    let widen = |v: &[f32]| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let inputs: Vec<Vec<f64>> = inputs.iter().map(|v| widen(v)).collect();
    let want = case.run::<f64, _>(cpu, &inputs, &widen(&dy))?;
    let k = reduction_len(case);
    compare(case, precision, got, want, |stored, scale| {
        let (u, tiny) = format_of(precision, stored);
        against_exact(u, tiny, k, scale)
    }, Vec::new())
}
