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

#[cfg(test)]
mod tests {
    use super::*;

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
