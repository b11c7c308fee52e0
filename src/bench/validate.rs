//! Checking a device's results against the f64 CPU reference on the same inputs.

use crate::cpu::CpuBackend;
use crate::device::Device;
use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{DynKernel, HostOperands, Operands};
use serde::Serialize;

#[derive(Clone, Debug, Serialize)]
pub struct Validation {
    pub passed: bool,
    /// Largest |got - want| over every output value.
    pub max_abs_error: f64,
    /// Largest |got - want| / (atol + rtol * |want|): at most 1 passes.
    pub worst_tolerance_ratio: f64,
    /// What failed, in one line (None when passed).
    pub failure: Option<String>,
}

/// Every value an op produced, in a fixed order (created buffers, then written operands), on
/// the host as f64.
pub fn results<E: Element, B: Device<E>>(op: &dyn DynKernel, b: &B, created: &[B::Buf], ops: &Operands<E, B>) -> Result<Vec<Vec<f64>>> {
    let download = |buf: &B::Buf| b.download(buf).map(|v| v.iter().map(|&x| Element::to_f64(x)).collect::<Vec<f64>>());
    let mut out = created.iter().map(download).collect::<Result<Vec<_>>>()?;
    for &i in op.written_operands() {
        out.push(download(&ops.bufs[i])?);
    }
    Ok(out)
}

/// The op's outputs computed by the CPU backend in f64 on `host` (widened exactly).
pub fn reference(op: &dyn DynKernel, host: &HostOperands) -> Result<Vec<Vec<f64>>> {
    let cpu = CpuBackend::new();
    let mut operands = host.upload::<f64, _>(&cpu)?;
    let created = op.execute(&cpu, &mut operands)?;
    results(op, &cpu, &created, &operands)
}

/// Compares every output of a device with the reference within the op's tolerance.
pub fn compare(op: &dyn DynKernel, got: &[Vec<f64>], want: &[Vec<f64>]) -> Validation {
    let (atol, rtol) = op.tolerance();
    let mut max_abs_error: f64 = 0.0;
    let mut worst_tolerance_ratio: f64 = 0.0;
    let mut failure = None;
    if got.len() != want.len() {
        failure = Some(format!("{} outputs but the reference has {}", got.len(), want.len()));
    }
    for (out, (g, w)) in got.iter().zip(want).enumerate() {
        if g.len() != w.len() {
            failure.get_or_insert(format!("output {out} has {} values but the reference has {}", g.len(), w.len()));
            continue;
        }
        for (i, (&gv, &wv)) in g.iter().zip(w).enumerate() {
            let err = (gv - wv).abs();
            let ratio = err / (atol + rtol * wv.abs());
            // NaN compares false: a NaN result fails here rather than slipping through a max.
            if (ratio.is_nan() || ratio > 1.0) && failure.is_none() {
                failure = Some(format!("output {out} element {i} is {gv} but the reference is {wv} (atol {atol:.1e}, rtol {rtol:.0e})"));
            }
            max_abs_error = max_abs_error.max(if err.is_nan() { f64::INFINITY } else { err });
            worst_tolerance_ratio = worst_tolerance_ratio.max(if ratio.is_nan() { f64::INFINITY } else { ratio });
        }
    }
    Validation { passed: failure.is_none(), max_abs_error, worst_tolerance_ratio, failure }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::optim::cases::OptimKernel;

    #[test]
    fn a_result_off_by_more_than_the_tolerance_fails_and_nan_never_passes() {
        let op = OptimKernel::Sgd { len: 2 };
        let want = vec![vec![1.0, -2.0]];
        assert!(compare(&op, &[vec![1.0 + 1e-6, -2.0]], &want).passed);
        let off = compare(&op, &[vec![1.1, -2.0]], &want);
        assert!(!off.passed && off.failure.as_deref().unwrap().contains("element 0"), "{off:?}");
        assert!(!compare(&op, &[vec![f64::NAN, -2.0]], &want).passed);
        assert!(!compare(&op, &[vec![1.0]], &want).passed);
    }
}
