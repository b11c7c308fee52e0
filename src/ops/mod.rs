//! Every primitive a CNN training step needs, one folder per op family. Each family's `mod.rs`
//! holds its geometry and its backend trait (forward and backward as separate methods, so each
//! device supplies dedicated kernels); `cpu.rs` is the rayon reference, `cuda.rs` the GPU
//! launcher, `kernels/<family>.cu` the GPU code, and `node.rs` the graph node kinds of the
//! family (see [`node`]). The list below registers each family: its folder, its backend trait
//! (part of [`Backend`]) and its node kinds (variants of [`Op`]).

#[macro_use]
mod registry;
#[macro_use]
pub mod check;

pub mod node;

pub use conv::{ConvCfg, ConvGeom, ConvPath};
pub use elementwise::ChannelBroadcast;
pub use gemm::GemmSpec;
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
    activation: ActivationOps => [Activation],
    channel: ChannelOps => [Concat, SliceChannels, ChannelShuffle],
    conv: ConvOps => [Conv2d],
    dropout: DropoutOps => [Dropout],
    elementwise: ElementwiseOps => [Add, Mul, MulChannel],
    gemm: GemmOps => [],
    linear: LinearOps => [Linear],
    loss: LossOps => [],
    norm: NormOps => [BatchNorm2d],
    optim: OptimOps => [],
    pool: PoolOps => [MaxPool2d, AvgPool2d, AdaptiveAvgPool2d],
    reduce: ReduceOps => [],
    view => [Input, Flatten],
}
