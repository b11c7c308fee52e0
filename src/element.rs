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
    /// swapping strides. Dispatches to matrixmultiply's sgemm/dgemm.
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
    ($t:ty, $dtype:expr, $gemm:path) => {
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
                // SAFETY: the extents were checked above against each slice's length.
                unsafe {
                    $gemm(
                        m,
                        k,
                        n,
                        alpha,
                        a.as_ptr(),
                        a_strides.0,
                        a_strides.1,
                        b.as_ptr(),
                        b_strides.0,
                        b_strides.1,
                        beta,
                        c.as_mut_ptr(),
                        c_strides.0,
                        c_strides.1,
                    )
                }
            }
        }
    };
}

impl_element!(f32, DType::F32, matrixmultiply::sgemm);
impl_element!(f64, DType::F64, matrixmultiply::dgemm);
