//! Fully connected layer: x [N, in] -> y [N, out] = x * W^T + b, W [out, in] as PyTorch stores it.

pub mod cases;
mod cpu;
mod node;

pub use node::Linear;

use crate::device::Device;
use crate::element::Element;
use crate::error::{Error, Result};

mod cuda;

/// The sizes of a [`LinearGeom`], read through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LinearDims {
    pub n: usize,
    pub in_features: usize,
    pub out_features: usize,
}

checked_geometry!(
    /// A dense layer checked by `LinearGeom::new`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
    LinearGeom => LinearDims
);

impl LinearGeom {
    pub fn new(n: usize, in_features: usize, out_features: usize) -> Result<Self> {
        if n == 0 || in_features == 0 || out_features == 0 {
            return Err(Error::shape(format!(
                "linear needs non-empty sizes, got N={n} in={in_features} out={out_features}"
            )));
        }
        Ok(LinearGeom { dims: LinearDims { n, in_features, out_features } })
    }
}

pub trait LinearOps<E: Element>: Device<E> {
    fn linear_forward(&self, x: &Self::Buf, w: &Self::Buf, bias: Option<&Self::Buf>, g: &LinearGeom) -> Result<Self::Buf>;
    /// dx [N, in] = dy * W
    fn linear_backward_data(&self, dy: &Self::Buf, w: &Self::Buf, g: &LinearGeom) -> Result<Self::Buf>;
    /// dW [out, in] = dy^T * x
    fn linear_backward_weight(&self, x: &Self::Buf, dy: &Self::Buf, g: &LinearGeom) -> Result<Self::Buf>;
    /// db [out] = dy summed over N
    fn linear_backward_bias(&self, dy: &Self::Buf, g: &LinearGeom) -> Result<Self::Buf>;
}
