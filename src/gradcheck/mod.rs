//! Numerical gradient checks. On the CPU in f64, every op's backward is checked against central
//! finite differences of its forward. On a GPU device (real or simulated), the device's forward
//! and backward in f32 are compared with the f64 CPU reference (whose gradients the finite
//! differences have verified) under `atol + rtol * |ref|`.
//!
//! At a reduced precision (`--precision`, see [`precision`]) each op runs as a reduced-precision
//! engine runs it (emulated storage): its inputs and dy rounded to the format, f32 arithmetic,
//! its output and gradients stored rounded (at bf16/fp16; at tf32 only convolution and linear
//! operands are rounded). At bf16/fp16 a GPU gets the activations among an op's inputs, and dy,
//! in 16-bit buffers where its kernels read them (`GradOp::stored_inputs`), as training hands
//! them over, so the 16-bit kernels run; the CPU keeps f32 containers holding the rounded
//! values. A GPU device is compared with the CPU doing the same under the tolerance derived in
//! `crate::tolerance` (two rounded results one format step apart at most); the CPU itself is
//! compared with the exact (f64) op on the same rounded inputs, so the check says that the
//! emulation's results are the exact ones rounded once.

pub mod precision;

pub mod cases;

use crate::cpu::CpuBackend;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::cases::CaseBackend;
pub use cases::{all_cases, op_names, GradCase};
use serde::Serialize;

/// Central-difference step in f64: balances truncation (~h^2) against rounding (~eps/h).
const FD_STEP: f64 = 1e-5;
/// Relative errors are taken against max(|analytic|, |numeric|, REL_FLOOR) so that gradients
/// that are (nearly) zero are judged by their absolute error.
const REL_FLOOR: f64 = 1e-3;
/// The finite-difference pass mark: max relative error in f64.
pub const FD_MAX_REL: f64 = 1e-6;
/// At most this many elements of each input are perturbed (evenly spread) to bound run time.
const FD_MAX_ELEMENTS: usize = 400;
/// Device-vs-reference tolerance in f32.
pub const DEVICE_ATOL: f64 = 1e-4;
pub const DEVICE_RTOL: f64 = 1e-3;

#[derive(Clone, Debug, Serialize)]
pub struct CheckReport {
    pub op: String,
    pub config: String,
    pub max_abs_err: f64,
    pub max_rel_err: f64,
    pub passed: bool,
    /// Kernels the device launched for this check (empty on the CPU).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub kernels: Vec<String>,
}

/// The cases for `--op NAME` or `--op all`.
pub fn select_cases(op: &str) -> Result<Vec<GradCase>> {
    let names = op_names();
    if op != "all" && !names.contains(&op) {
        return Err(Error::config(format!("unknown op '{op}'; known ops: all, {}", names.join(", "))));
    }
    Ok(all_cases().into_iter().filter(|c| op == "all" || c.op == op).collect())
}

#[derive(Default)]
struct ErrorStats {
    max_abs: f64,
    max_rel: f64,
    passed: bool,
}

fn to_elems<E: Element>(v: &[f64]) -> Vec<E> {
    v.iter().map(|&x| E::from_f64(x)).collect()
}

/// <plus - minus, dy>, differencing each output element before weighting: summing first would
/// cancel two large totals and lose the digits the check needs.
fn weighted_difference(plus: &[f64], minus: &[f64], dy: &[f64]) -> f64 {
    plus.iter().zip(minus).zip(dy).map(|((p, m), d)| (p - m) * d).sum()
}

/// Checks `case`'s backward on the f64 CPU reference against central finite differences.
pub fn finite_difference(cpu: &CpuBackend, case: &GradCase) -> Result<CheckReport> {
    let (_, analytic) = case.run::<f64, _>(cpu, &case.inputs, &case.dy)?;
    let mut stats = ErrorStats { passed: true, ..Default::default() };
    let mut inputs = case.inputs.clone();
    for (t, grad) in analytic.iter().enumerate() {
        let len = inputs[t].len();
        let stride = len.div_ceil(FD_MAX_ELEMENTS).max(1);
        for i in (0..len).step_by(stride) {
            let orig = inputs[t][i];
            inputs[t][i] = orig + FD_STEP;
            let plus = case.run::<f64, _>(cpu, &inputs, &case.dy)?.0;
            inputs[t][i] = orig - FD_STEP;
            let minus = case.run::<f64, _>(cpu, &inputs, &case.dy)?.0;
            inputs[t][i] = orig;
            let numeric = weighted_difference(&plus, &minus, &case.dy) / (2.0 * FD_STEP);
            let abs = (grad[i] - numeric).abs();
            let rel = abs / grad[i].abs().max(numeric.abs()).max(REL_FLOOR);
            stats.max_abs = stats.max_abs.max(abs);
            stats.max_rel = stats.max_rel.max(rel);
            if !(rel < FD_MAX_REL) {
                stats.passed = false;
            }
        }
    }
    Ok(report(case, stats, Vec::new()))
}

/// Runs `case` on `device` in f32 and compares its output and every gradient with the f64 CPU
/// reference computed from the same (f32-rounded) inputs.
pub fn compare_device<B: CaseBackend<f32>>(device: &B, cpu: &CpuBackend, case: &GradCase) -> Result<CheckReport> {
    let inputs32: Vec<Vec<f32>> = case.inputs.iter().map(|v| to_elems(v)).collect();
    let dy32: Vec<f32> = to_elems(&case.dy);
    let inputs64: Vec<Vec<f64>> = inputs32.iter().map(|v| v.iter().map(|&x| x as f64).collect()).collect();
    let dy64: Vec<f64> = dy32.iter().map(|&x| x as f64).collect();
    let (ref_out, ref_grads) = case.run::<f64, _>(cpu, &inputs64, &dy64)?;
    device.take_kernel_log();
    let (out, grads) = case.run::<f32, _>(device, &inputs32, &dy32)?;
    device.synchronize()?;
    let kernels = device.take_kernel_log();
    let mut stats = ErrorStats { passed: true, ..Default::default() };
    for (got, want) in std::iter::once((&out, &ref_out)).chain(grads.iter().zip(&ref_grads)) {
        if got.len() != want.len() {
            return Err(Error::shape(format!(
                "{} ({}): device returned {} values where the reference has {}",
                case.op,
                case.config,
                got.len(),
                want.len()
            )));
        }
        for (&g, &w) in got.iter().zip(want) {
            let abs = (g as f64 - w).abs();
            stats.max_abs = stats.max_abs.max(abs);
            stats.max_rel = stats.max_rel.max(abs / w.abs().max(REL_FLOOR));
            if !(abs <= DEVICE_ATOL + DEVICE_RTOL * w.abs()) {
                stats.passed = false;
            }
        }
    }
    Ok(report(case, stats, kernels))
}

fn report(case: &GradCase, stats: ErrorStats, kernels: Vec<String>) -> CheckReport {
    CheckReport {
        op: case.op.to_string(),
        config: case.config.clone(),
        max_abs_err: stats.max_abs,
        max_rel_err: stats.max_rel,
        passed: stats.passed,
        kernels,
    }
}
