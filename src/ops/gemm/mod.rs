//! General matrix multiply, row-major, optionally transposed and batched, with beta-accumulate.

pub mod cases;
mod cpu;

use crate::device::Device;
use crate::element::Element;
use crate::error::Result;

mod cuda;

/// C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b] for b in 0..batch, all row-major and packed.
/// op(A) is m x k: A is stored m x k, or k x m when `trans_a`. op(B) is k x n: B is stored k x n,
/// or n x k when `trans_b`. C is m x n. Matrix b of A starts at `offset_a + b * stride_a`
/// (elements), likewise for B and C. With beta == 0, C is overwritten (never read).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GemmSpec<E> {
    pub trans_a: bool,
    pub trans_b: bool,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: E,
    pub beta: E,
    pub batch: usize,
    pub stride_a: usize,
    pub stride_b: usize,
    pub stride_c: usize,
    pub offset_a: usize,
    pub offset_b: usize,
    pub offset_c: usize,
}

impl<E: Element> GemmSpec<E> {
    /// A single (batch 1) product C = op(A) * op(B), overwriting C.
    pub fn new(trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize) -> Self {
        GemmSpec {
            trans_a,
            trans_b,
            m,
            n,
            k,
            alpha: E::one(),
            beta: E::zero(),
            batch: 1,
            stride_a: m * k,
            stride_b: k * n,
            stride_c: m * n,
            offset_a: 0,
            offset_b: 0,
            offset_c: 0,
        }
    }
    /// Elements each operand must hold for this spec to stay in bounds: (a, b, c).
    pub fn required_lens(&self) -> (usize, usize, usize) {
        let last = |off: usize, stride: usize, size: usize| {
            if self.batch == 0 || size == 0 {
                0
            } else {
                off + (self.batch - 1) * stride + size
            }
        };
        (
            last(self.offset_a, self.stride_a, self.m * self.k),
            last(self.offset_b, self.stride_b, self.k * self.n),
            last(self.offset_c, self.stride_c, self.m * self.n),
        )
    }
    pub fn flops(&self) -> f64 {
        2.0 * self.batch as f64 * self.m as f64 * self.n as f64 * self.k as f64
    }
}

pub trait GemmOps<E: Element>: Device<E> {
    fn gemm(&self, spec: &GemmSpec<E>, a: &Self::Buf, b: &Self::Buf, c: &mut Self::Buf) -> Result<()>;
}
