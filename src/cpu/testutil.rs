//! Helpers for the CPU op tests: seeded random inputs, central finite differences and tolerance
//! checks, all in f64.

use crate::cpu::{CpuBackend, CpuBuf};
use crate::rng::Rng;

/// `len` values uniform in [-2, 2), fixed by `seed`.
pub fn random(len: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.uniform_range(-2.0, 2.0)).collect()
}

pub fn buf(cpu: &CpuBackend, v: &[f64]) -> CpuBuf<f64> {
    cpu.wrap(v.to_vec())
}

pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// d loss / d x[i] for every i by central differences with step h.
pub fn finite_diff(x: &[f64], h: f64, loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut probe = x.to_vec();
    (0..x.len())
        .map(|i| {
            probe[i] = x[i] + h;
            let up = loss(&probe);
            probe[i] = x[i] - h;
            let down = loss(&probe);
            probe[i] = x[i];
            (up - down) / (2.0 * h)
        })
        .collect()
}

/// Fails when any |got - want| > tol * (1 + |want|): the project's rule with atol = rtol = tol.
#[track_caller]
pub fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    crate::tolerance::assert_close(what, got, want, tol, tol);
}

/// The message of an expected error (CPU buffers have no Debug, so `unwrap_err` is unavailable).
#[track_caller]
pub fn error_text<T>(r: crate::error::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

/// An f32 copy of an f64 operand, for f32-vs-f64 agreement tests.
pub fn narrow(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// An f64 copy of an f32 result, to compare with an f64 reference.
pub fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}
