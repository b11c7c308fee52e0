//! Data-parallel building blocks the CPU ops share: chunked rayon maps and deterministic
//! reductions. Work is split into fixed-size chunks so that scheduling costs stay small next to
//! the arithmetic and so that reductions add their partial sums in the same order on every run.

use crate::element::Element;
use rayon::prelude::*;

/// Elements per rayon task.
pub const CHUNK: usize = 1 << 14;

/// y[i] = f(x[i])
pub fn map<E: Element>(x: &[E], f: impl Fn(E) -> E + Sync) -> Vec<E> {
    let mut y = vec![E::zero(); x.len()];
    y.par_chunks_mut(CHUNK)
        .zip(x.par_chunks(CHUNK))
        .for_each(|(yc, xc)| {
            for (y, &x) in yc.iter_mut().zip(xc) {
                *y = f(x);
            }
        });
    y
}

/// y[i] = f(a[i], b[i]); the caller has checked that the lengths agree.
pub fn zip_map<E: Element>(a: &[E], b: &[E], f: impl Fn(E, E) -> E + Sync) -> Vec<E> {
    debug_assert_eq!(a.len(), b.len());
    let mut y = vec![E::zero(); a.len()];
    y.par_chunks_mut(CHUNK)
        .zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK)))
        .for_each(|(yc, (ac, bc))| {
            for ((y, &a), &b) in yc.iter_mut().zip(ac).zip(bc) {
                *y = f(a, b);
            }
        });
    y
}

/// x[i] = f(x[i]) in place.
pub fn update<E: Element>(x: &mut [E], f: impl Fn(E) -> E + Sync) {
    x.par_chunks_mut(CHUNK).for_each(|xc| {
        for x in xc {
            *x = f(*x);
        }
    });
}

/// The sum of f(x[i]) accumulated in f64; the same value on every run, whatever the thread count.
pub fn sum_f64<E: Element>(x: &[E], f: impl Fn(E) -> f64 + Sync) -> f64 {
    let partials: Vec<f64> = x
        .par_chunks(CHUNK)
        .map(|c| c.iter().map(|&v| f(v)).sum::<f64>())
        .collect();
    partials.iter().sum()
}
