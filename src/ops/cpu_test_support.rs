//! Helpers for the CPU reference tests: seeded random operands and element-wise comparison.

use crate::rng::Rng;

/// `len` values uniform in [-1, 1), reproducible from `seed`.
pub(crate) fn random_vec(seed: u64, len: usize) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..len).map(|_| rng.uniform_range(-1.0, 1.0)).collect()
}

pub(crate) fn dot(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "dot of vectors of different lengths");
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fails with the first element where |got - want| > tol * (1 + |want|).
#[track_caller]
pub(crate) fn assert_close(what: &str, got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs reference {}", got.len(), want.len());
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what}: element {i} is {g} but the reference is {w}");
    }
}

/// Casts to f64 for comparison with an f64 reference.
pub(crate) fn widen(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Casts an f64 operand to f32.
pub(crate) fn narrow(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

/// The message of an operation that must fail (buffers do not implement Debug, so no unwrap_err).
#[track_caller]
pub(crate) fn error_text<T>(result: crate::error::Result<T>) -> String {
    match result {
        Ok(_) => panic!("the operation succeeded but an error was expected"),
        Err(e) => e.to_string(),
    }
}
