//! Full reductions to a single value (a buffer of length 1): loss totals, gradient norms.

mod cpu;
pub(crate) mod cuda;

use crate::device::Device;
use crate::element::Element;
use crate::error::Result;

pub trait ReduceOps<E: Element>: Device<E> {
    fn sum(&self, x: &Self::Buf) -> Result<Self::Buf>;
    fn mean(&self, x: &Self::Buf) -> Result<Self::Buf>;
    /// Sum of squares (for gradient-norm clipping).
    fn sum_squares(&self, x: &Self::Buf) -> Result<Self::Buf>;
}
