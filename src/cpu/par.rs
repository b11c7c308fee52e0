//! Data-parallel building blocks the CPU ops share: chunked rayon maps and deterministic
//! reductions. Work is split into fixed-size chunks so that scheduling costs stay small next to
//! the arithmetic and so that reductions add their partial sums in the same order on every run.

use crate::element::Element;
use rayon::prelude::*;

/// Elements per rayon task.
pub const CHUNK: usize = 1 << 14;

/// A vector of `len` elements computed in parallel, `chunk` elements at a time (at least
/// `min_chunks` chunks per task): chunk i holds the values `chunk_values(i)` yields, exactly as many
/// as the chunk is long. Each element is written once: a `vec![0; len]` to overwrite would cost a
/// memset pass whenever the allocator hands out reused memory.
pub fn collect_chunks<E: Send, I: Iterator<Item = E>>(
    len: usize,
    chunk: usize,
    min_chunks: usize,
    chunk_values: impl Fn(usize) -> I + Sync,
) -> Vec<E> {
    let mut out = Vec::with_capacity(len);
    out.spare_capacity_mut()[..len].par_chunks_mut(chunk.max(1)).with_min_len(min_chunks).enumerate().for_each(
        |(i, slots)| {
            let mut written = 0;
            for (slot, value) in slots.iter_mut().zip(chunk_values(i)) {
                slot.write(value);
                written += 1;
            }
            assert_eq!(written, slots.len(), "chunk {i} of collect_chunks got too few values");
        },
    );
    // SAFETY: each chunk of the first `len` slots asserted above that it wrote every one of its
    // slots, and a panic in any chunk leaves for_each before this line.
    unsafe { out.set_len(len) };
    out
}

/// The CHUNK-long piece `i` of `v` (shorter at the end).
fn piece<E>(v: &[E], i: usize) -> &[E] {
    &v[i * CHUNK..((i + 1) * CHUNK).min(v.len())]
}

/// y[i] = f(x[i])
pub fn map<E: Element>(x: &[E], f: impl Fn(E) -> E + Sync) -> Vec<E> {
    collect_chunks(x.len(), CHUNK, 1, |i| piece(x, i).iter().map(|&x| f(x)))
}

/// y[i] = f(a[i], b[i]); the caller has checked that the lengths agree.
pub fn zip_map<E: Element>(a: &[E], b: &[E], f: impl Fn(E, E) -> E + Sync) -> Vec<E> {
    debug_assert_eq!(a.len(), b.len());
    collect_chunks(a.len(), CHUNK, 1, |i| piece(a, i).iter().zip(piece(b, i)).map(|(&a, &b)| f(a, b)))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collect_chunks_places_every_chunk_in_order() {
        let v: Vec<usize> = collect_chunks(10, 3, 1, |i| i * 3..(i * 3 + 3).min(10));
        assert_eq!(v, (0..10).collect::<Vec<_>>());
    }

    #[test]
    #[should_panic(expected = "too few values")]
    fn collect_chunks_refuses_a_short_chunk() {
        let _: Vec<usize> = collect_chunks(10, 3, 1, |i| i * 3..i * 3 + 2);
    }

    #[test]
    fn lane_sums_equal_the_plain_sums() {
        let v: Vec<f64> = (0..37).map(|i| f64::from(i) * 0.5).collect();
        assert_eq!(lane_sum(&v, |x| x), v.iter().sum::<f64>());
        assert_eq!(lane_sum2(&v, &v, |x, y| x * y), v.iter().map(|x| x * x).sum::<f64>());
    }
}
