//! The element types a tensor may hold: f32 on every device, f64 on the CPU (the reference).

use std::fmt::{Debug, Display};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    F32,
    F64,
}

pub trait Element:
    num_traits::Float
    + num_traits::NumAssign
    + bytemuck::Pod
    + Default
    + Send
    + Sync
    + Debug
    + Display
    + std::iter::Sum
    + 'static
{
    const DTYPE: DType;
    fn from_f64(v: f64) -> Self;
    fn to_f64(self) -> f64;

    /// Row-major strided GEMM on the CPU: C = alpha * A(m x k) * B(k x n) + beta * C, where each
    /// matrix is given by its slice and (row stride, column stride). Transposes are expressed by
    /// swapping strides. The gemm crate's kernels (measured faster than matrixmultiply's on the zoo's
    /// convolution shapes, see benches/RESULTS.md) on blocks of C spread over rayon's threads.
    #[allow(clippy::too_many_arguments)]
    fn cpu_gemm(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: &[Self],
        a_strides: (isize, isize),
        b: &[Self],
        b_strides: (isize, isize),
        beta: Self,
        c: &mut [Self],
        c_strides: (isize, isize),
    );
}

/// Bounds check shared by both gemm implementations: the last element each matrix touches must lie
/// inside its slice, so the unsafe call below never reads or writes out of bounds.
fn assert_gemm_extent(rows: usize, cols: usize, s: (isize, isize), len: usize) {
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(s.0 >= 0 && s.1 >= 0, "gemm strides must be non-negative");
    let last = (rows - 1) * s.0 as usize + (cols - 1) * s.1 as usize;
    assert!(last < len, "gemm operand out of bounds: needs index {last}, slice has {len}");
}

macro_rules! impl_element {
    ($t:ty, $dtype:expr) => {
        impl Element for $t {
            const DTYPE: DType = $dtype;
            #[inline]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline]
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn cpu_gemm(
                m: usize,
                k: usize,
                n: usize,
                alpha: Self,
                a: &[Self],
                a_strides: (isize, isize),
                b: &[Self],
                b_strides: (isize, isize),
                beta: Self,
                c: &mut [Self],
                c_strides: (isize, isize),
            ) {
                assert_gemm_extent(m, k, a_strides, a.len());
                assert_gemm_extent(k, n, b_strides, b.len());
                assert_gemm_extent(m, n, c_strides, c.len());
                if m == 0 || n == 0 {
                    return;
                }
                let (a, b, c) = (SharedPtr(a.as_ptr()), SharedPtr(b.as_ptr()), SharedPtr(c.as_mut_ptr() as *const $t));
                // One block of C: rows `rows` (or columns `cols`) of the whole product.
                let block = |rows: std::ops::Range<usize>, cols: std::ops::Range<usize>| {
                    let (a, b, c) = (&a, &b, &c);
                    // SAFETY: the extents were checked above against each slice's length, a
                    // block lies inside the whole matrices, and the blocks' C elements are
                    // disjoint, so no two tasks write the same element.
                    unsafe {
                        let c_block = (c.0 as *mut $t).offset(rows.start as isize * c_strides.0 + cols.start as isize * c_strides.1);
                        // gemm's convention: dst = alpha * dst + beta * lhs * rhs, dst read only
                        // when asked (a zero beta here leaves C's old contents, even NaN, unread).
                        gemm::gemm(
                            rows.len(),
                            cols.len(),
                            k,
                            c_block,
                            c_strides.1,
                            c_strides.0,
                            beta != 0.0,
                            a.0.offset(rows.start as isize * a_strides.0),
                            a_strides.1,
                            a_strides.0,
                            b.0.offset(cols.start as isize * b_strides.1),
                            b_strides.1,
                            b_strides.0,
                            beta,
                            alpha,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        )
                    }
                };
                split_gemm(m, n, k, block);
            }
        }
    };
}

/// A pointer the blocks of one GEMM share across rayon's threads; each block touches only its
/// own elements of the output.
struct SharedPtr<T>(*const T);
// SAFETY: see `split_gemm`: the blocks write disjoint elements and only read the inputs.
unsafe impl<T> Send for SharedPtr<T> {}
unsafe impl<T> Sync for SharedPtr<T> {}

/// Multiply-adds below which a GEMM runs on the calling thread: splitting costs more than it
/// gains.
const PARALLEL_MIN_MACS: usize = 1 << 18;
/// The fewest rows or columns of C a block gets, so the micro-kernel's panels stay full.
const MIN_BLOCK: usize = 64;

/// Runs `block(rows, cols)` over blocks of an m x n product on rayon's threads: the longer side
/// is cut into a few blocks per thread (the same pool as every other CPU op, instead of a GEMM
/// pool of its own competing with it). Each element's sum over k is the same whichever block
/// computes it, so the result does not depend on the split.
fn split_gemm(m: usize, n: usize, k: usize, block: impl Fn(std::ops::Range<usize>, std::ops::Range<usize>) + Sync) {
    use rayon::prelude::*;
    let threads = rayon::current_num_threads();
    let long = m.max(n);
    let blocks = (4 * threads).min(long / MIN_BLOCK);
    if threads == 1 || blocks < 2 || m * n * k < PARALLEL_MIN_MACS {
        return block(0..m, 0..n);
    }
    let size = long.div_ceil(blocks);
    (0..long.div_ceil(size)).into_par_iter().for_each(|i| {
        let part = i * size..((i + 1) * size).min(long);
        if m >= n {
            block(part, 0..n)
        } else {
            block(0..m, part)
        }
    });
}

impl_element!(f32, DType::F32);
impl_element!(f64, DType::F64);

#[cfg(test)]
mod tests {
    use super::*;

    /// The comment on `split_gemm` promises a result independent of the split: a product cut
    /// into blocks over two threads equals the one-block product bit for bit.
    #[test]
    fn split_gemm_equals_one_block() {
        let (m, k, n) = (300, 257, 190);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 53 % 97) as f32 - 48.0) / 13.0).collect();
        let product = |threads: usize| {
            let mut c = vec![0f32; m * n];
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().expect("a thread pool");
            pool.install(|| f32::cpu_gemm(m, k, n, 1.0, &a, (k as isize, 1), &b, (1, k as isize), 0.0, &mut c, (n as isize, 1)));
            c
        };
        let (one, split) = (product(1), product(2));
        assert!(m * n * k >= PARALLEL_MIN_MACS && m.max(n) / MIN_BLOCK >= 2, "the shape must be split");
        assert_eq!(one, split);
    }
}
