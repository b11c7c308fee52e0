//! Every primitive a CNN training step needs, one folder per op family. Each family's `mod.rs`
//! holds its geometry and its trait (forward and backward as separate methods, so each device
//! supplies dedicated kernels); `cpu.rs` is the rayon reference, `cuda.rs` the GPU launcher, and
//! `kernels/<family>.cu` the GPU code.

pub mod activation;
pub mod cases;
pub mod channel;
pub mod check;
pub mod conv;
pub mod dropout;
pub mod elementwise;
pub mod gemm;
pub mod linear;
pub mod loss;
pub mod norm;
pub mod optim;
pub mod pool;
pub mod reduce;
pub mod reshape;

pub use activation::{Activation, ActivationOps};
pub use channel::ChannelOps;
pub use conv::{ConvGeom, ConvOps};
pub use dropout::DropoutOps;
pub use elementwise::{ChannelBroadcast, ElementwiseOps};
pub use gemm::{GemmOps, GemmSpec};
pub use linear::{LinearGeom, LinearOps};
pub use loss::LossOps;
pub use norm::{BatchNormGeom, BatchNormSaved, NormOps};
pub use optim::{AdamParams, OptimOps, SgdParams};
pub use pool::{AdaptivePoolGeom, PoolGeom, PoolOps};
pub use reduce::ReduceOps;

use crate::element::Element;

/// Everything a device must provide to train a CNN in element type `E`.
pub trait Backend<E: Element>:
    GemmOps<E>
    + ConvOps<E>
    + PoolOps<E>
    + NormOps<E>
    + LinearOps<E>
    + ActivationOps<E>
    + ElementwiseOps<E>
    + ChannelOps<E>
    + DropoutOps<E>
    + LossOps<E>
    + ReduceOps<E>
    + OptimOps<E>
{
}

impl<E: Element, T> Backend<E> for T where
    T: GemmOps<E>
        + ConvOps<E>
        + PoolOps<E>
        + NormOps<E>
        + LinearOps<E>
        + ActivationOps<E>
        + ElementwiseOps<E>
        + ChannelOps<E>
        + DropoutOps<E>
        + LossOps<E>
        + ReduceOps<E>
        + OptimOps<E>
{
}
