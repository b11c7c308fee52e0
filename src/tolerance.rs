//! The project's one tolerance rule for comparing a result with a reference:
//! `|got - ref| <= atol + rtol * |ref|`, where a NaN on either side never passes.

/// True when `got` is within `atol + rtol * |want|` of `want`.
pub fn within(got: f64, want: f64, atol: f64, rtol: f64) -> bool {
    (got - want).abs() <= atol + rtol * want.abs()
}

/// The index of the element furthest outside the tolerance (a NaN counts as furthest), or None
/// when every element is within it. The slices must have the same length.
pub fn worst_violation<T: Copy + Into<f64>>(got: &[T], want: &[f64], atol: f64, rtol: f64) -> Option<usize> {
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if within(g.into(), w, atol, rtol) {
            continue;
        }
        let excess = (g.into() - w).abs() - (atol + rtol * w.abs());
        // The first NaN stays the worst; otherwise the largest excess.
        if worst.is_none_or(|(_, e)| !e.is_nan() && (excess.is_nan() || excess > e)) {
            worst = Some((i, excess));
        }
    }
    worst.map(|(i, _)| i)
}

/// Fails naming the worst element when any element of `got` is outside the tolerance of `want`.
#[track_caller]
pub fn assert_close<T: Copy + Into<f64> + std::fmt::Display>(what: &str, got: &[T], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length {} vs reference {}", got.len(), want.len());
    if let Some(i) = worst_violation(got, want, atol, rtol) {
        panic!("{what}: element {i} is {} but the reference is {} (atol {atol}, rtol {rtol})", got[i], want[i]);
    }
}

/// The unit roundoff of f32, the arithmetic every device computes in.
pub const F32_UNIT_ROUNDOFF: f64 = 1.0 / 16_777_216.0;
/// How many standard deviations of accumulated f32 rounding error a comparison allows
/// (λ of the probabilistic bound below).
const ERROR_SPREAD: f64 = 6.0;
/// Ulps of f32 by which two devices' elementary functions (exp, log, rsqrt, division) may differ:
/// the GPU's are not correctly rounded.
const FUNCTION_ULPS: f64 = 4.0;

/// A tolerance `atol + rtol * |ref|`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    pub atol: f64,
    pub rtol: f64,
}

// How results stored in a reduced-precision format are compared (the derivation).
//
// Two computations of one value s (a device's kernel and the CPU reference, or the CPU and the
// exact value) start from the same inputs, already rounded to the format, and each accumulates
// at most K terms in f32 in its own order before storing its result rounded to the format.
//
// 1. Before the store. A sum of K terms in f32 (unit roundoff u32 = 2^-24) differs from the
//    exact sum by at most γ_K·S, γ_K = K·u32/(1 - K·u32), S = Σ|terms| (Higham, Accuracy and
//    Stability of Numerical Algorithms, §3.1). That worst case assumes every rounding errs the
//    same way; rounding errors behave as independent zero-mean variables, and with probability
//    at least 1 - 2·exp(-λ²/2) the error is below λ·√K·u32·S (Higham & Mary, SIAM J. Sci.
//    Comput. 41(5), 2019). With λ = 6 (a failure chance of 3e-8 per value) and a few ulps
//    (FUNCTION_ULPS) for elementary functions that are not correctly rounded on a GPU, the two
//    f32 results a and b satisfy |a - b| <= f·S with f = 2·(λ·√K + FUNCTION_ULPS)·u32 (both
//    sides err). S is unknown per value; it is taken as the largest magnitude of the compared
//    tensor, `scale` (the terms and partial sums of the ops checked are not larger than their
//    largest result by more than the f64 headroom of f), plus |s| itself: f·(scale + |s|).
//
// 2. The store. Round to nearest gives r(a) = a·(1 + δ) + η with |δ| <= u (the format's unit
//    roundoff) and |η| <= tiny/2 (half the smallest subnormal, the step near zero). Both sides
//    store, and the stores may fall on either side of a rounding boundary, so
//        |r(a) - r(b)| <= |a - b| + u·(|a| + |b|) + tiny
//                      <= (1 + u)·|a - b| + 2u·|b| + tiny,
//    and |b| <= (|r(b)| + tiny/2)/(1 - u). To first order in u and f:
//        rtol = 2u/(1 - u) + f,   atol = (1 + u)·f·scale + 2·tiny.
//    One rounded value of the format apart is the most two faithful computations differ by; a
//    kernel that stores at the wrong place or rounds the wrong way differs by more.
//
// 3. Against an exact reference (the f64 CPU on the same rounded inputs) only one side stores
//    and only one side errs in f32: rtol = u/(1 - u) + f/2, atol = f·scale/2 + tiny.
//
// Without a store (fp32 and tf32 results, u = tiny = 0) the rule is the f32 part alone.

/// f: the relative discrepancy of two f32 computations of K accumulated terms (step 1).
fn f32_discrepancy(reduction_len: usize) -> f64 {
    2.0 * (ERROR_SPREAD * (reduction_len.max(1) as f64).sqrt() + FUNCTION_ULPS) * F32_UNIT_ROUNDOFF
}

/// The tolerance between two computations from the same rounded inputs that each accumulate at
/// most `reduction_len` terms in f32 and store their results rounded to a format of unit
/// roundoff `unit_roundoff` and smallest subnormal `tiny` (0 and 0 when nothing is rounded);
/// `scale` is the largest magnitude of the compared values. See the derivation above.
pub fn between_rounded(unit_roundoff: f64, tiny: f64, reduction_len: usize, scale: f64) -> Tolerance {
    let (u, f) = (unit_roundoff, f32_discrepancy(reduction_len));
    Tolerance { rtol: 2.0 * u / (1.0 - u) + f, atol: (1.0 + u) * f * scale + 2.0 * tiny }
}

/// The tolerance of one such computation against the exact value (step 3).
pub fn against_exact(unit_roundoff: f64, tiny: f64, reduction_len: usize, scale: f64) -> Tolerance {
    let (u, f) = (unit_roundoff, f32_discrepancy(reduction_len));
    Tolerance { rtol: u / (1.0 - u) + f / 2.0, atol: f * scale / 2.0 + tiny }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rounding_step_apart_passes_and_two_do_not() {
        let u = 2f64.powi(-8); // bf16
        let t = between_rounded(u, 0.0, 64, 1.0);
        let (a, one_up, two_up) = (1.0, 1.0 + 2.0 * u, 1.0 + 4.0 * u);
        assert!(within(one_up, a, t.atol, t.rtol), "neighbours in bf16 pass");
        assert!(!within(two_up, a, t.atol, t.rtol), "two steps apart fail");
        let exact = against_exact(u, 0.0, 64, 1.0);
        assert!(within(1.0 + u, 1.0, exact.atol, exact.rtol) && !within(1.0 + 2.5 * u, 1.0, exact.atol, exact.rtol));
    }

    #[test]
    fn the_bound_grows_with_the_reference() {
        assert!(within(1.5, 1.0, 0.0, 0.5));
        assert!(!within(1.6, 1.0, 0.0, 0.5));
        assert!(within(0.1, 0.0, 0.1, 0.5));
        assert!(!within(f64::NAN, 1.0, 1.0, 1.0));
        assert!(!within(1.0, f64::NAN, 1.0, 1.0));
    }

    #[test]
    fn the_worst_element_is_named() {
        let want = [1.0, 2.0, 3.0];
        assert_eq!(worst_violation(&[1.0f32, 2.0, 3.0], &want, 1e-6, 0.0), None);
        assert_eq!(worst_violation(&[1.1f32, 2.5, 3.2], &want, 1e-6, 0.0), Some(1));
        assert_eq!(worst_violation(&[1.1, f64::NAN, 9.0], &want, 1e-6, 0.0), Some(1));
    }

    #[test]
    #[should_panic(expected = "x: element 2 is 4 but the reference is 3")]
    fn assert_close_panics_outside_the_tolerance() {
        assert_close("x", &[1.0f64, 2.0, 4.0], &[1.0, 2.0, 3.0], 0.1, 0.1);
    }
}
