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

/// Lanes of the unrolled sums below: independent running sums the compiler can keep in vector
/// registers (one running sum is a chain of dependent adds that cannot be reordered).
const LANES: usize = 8;

/// The sum of f(v[i]) over eight lanes, added in a fixed order, accumulated in `A` (f64 for
/// statistics, the element type where the caller sums in it).
#[inline]
pub fn lane_sum<E: Copy, A: Accumulator>(v: &[E], f: impl Fn(E) -> A) -> A {
    let mut lanes = [A::default(); LANES];
    let chunks = v.chunks_exact(LANES);
    let tail: A = chunks.remainder().iter().map(|&x| f(x)).sum();
    for chunk in chunks {
        lanes.iter_mut().zip(chunk).for_each(|(lane, &x)| *lane = *lane + f(x));
    }
    lanes.into_iter().sum::<A>() + tail
}

/// The sum of f(a[i], b[i]) over eight lanes, as `lane_sum` (`a` and `b` of one length).
#[inline]
pub fn lane_sum2<E: Copy, A: Accumulator>(a: &[E], b: &[E], f: impl Fn(E, E) -> A) -> A {
    debug_assert_eq!(a.len(), b.len());
    let mut lanes = [A::default(); LANES];
    let (ac, bc) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: A = ac.remainder().iter().zip(bc.remainder()).map(|(&x, &y)| f(x, y)).sum();
    for (ca, cb) in ac.zip(bc) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(ca).zip(cb) {
            *lane = *lane + f(x, y);
        }
    }
    lanes.into_iter().sum::<A>() + tail
}

/// What the lane sums accumulate in: f32 or f64 (zero is `default()`).
pub trait Accumulator: Copy + Default + std::ops::Add<Output = Self> + std::iter::Sum {}
impl<A: Copy + Default + std::ops::Add<Output = A> + std::iter::Sum> Accumulator for A {}
