//! Every primitive a CNN training step needs, one folder per op family. Each family's `mod.rs`
//! holds its geometry and its backend trait (forward and backward as separate methods, so each
//! device supplies dedicated kernels); `cpu.rs` is the rayon reference, `cuda.rs` the GPU
//! launcher, `kernels/<family>.cu` the GPU code, and `node.rs` the graph node kinds of the
//! family (see [`node`]), `cases.rs` its gradient checks and benchmark cases (see [`cases`]).
//! The list below registers each family in one line: its folder, its backend trait (part of
//! [`Backend`]), its node kinds (variants of [`Op`]) and, with `+ cases`, its cases.

#[macro_use]
mod registry;
#[macro_use]
pub mod check;
pub mod cases;

pub mod node;

pub use conv::{ConvCfg, ConvGeom, ConvPath};
pub use elementwise::ChannelBroadcast;
pub use self::gemm::GemmSpec;
pub use linear::LinearGeom;
pub use node::{NodeOp, ParamId};
pub use norm::{BatchNormGeom, BatchNormParams, BatchNormSaved};
pub use optim::{AdamParams, SgdParams};
pub use pool::{AdaptivePoolGeom, PoolGeom, PoolWindow};

use crate::device::Device;
use crate::element::Element;
use crate::error::Result;
use node::{BackwardCtx, ForwardCtx, GradFlow, Saved};

node_ops! {
    gemm: GemmOps => [] + cases,
    conv: ConvOps => [Conv2d] + cases,
    pool: PoolOps => [MaxPool2d, AvgPool2d, AdaptiveAvgPool2d] + cases,
    norm: NormOps => [BatchNorm2d, BatchNormAct] + cases,
    linear: LinearOps => [Linear] + cases,
    activation: ActivationOps => [Activation] + cases,
    elementwise: ElementwiseOps => [Add, Mul, MulChannel] + cases,
    channel: ChannelOps => [Concat, SliceChannels, ChannelShuffle] + cases,
    dropout: DropoutOps => [Dropout] + cases,
    layout: LayoutOps => [Relayout] + cases,
    loss: LossOps => [] + cases,
    view => [Input, Flatten] + cases,
    optim: OptimOps => [] + cases,
    reduce: ReduceOps => [],
    precision: PrecisionOps => [],
}
