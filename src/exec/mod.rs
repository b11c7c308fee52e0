//! Running a graph description (`crate::graph`) on a device: parameters and gradients
//! ([`params`]), the plan of what runs, is kept and freed ([`plan`]), the forward pass with its
//! tape and the backward pass that replays it ([`forward`], [`backward`], [`tape`]), the memory
//! planner ([`memory`]), scratch-buffer reuse ([`buffer_cache`]), the training and evaluation
//! figures accumulated on the device ([`metrics`]), the [`Executor`] that ties them
//! together, the optimisers ([`optim`]) and steps replayed from a captured CUDA graph
//! ([`replay`]). Everything is generic over the element type and the backend: the CPU runs f32
//! and f64, GPUs f32.

pub mod backward;
pub mod buffer_cache;
pub mod executor;
pub mod fold;
pub mod forward;
pub mod grad_average;
pub mod memory;
pub mod metrics;
pub mod optim;
pub mod params;
pub mod plan;
pub mod precision;
pub mod replay;
pub mod tape;

pub use crate::graph::fuse::FuseCounts;
pub use executor::{Batch, EvalAccumulator, Executor, FoldCounts, ResidentBatch, StepOptions, StepOutput};
pub use metrics::{EvalCounts, NonFinite, TrainTotals};
pub use optim::{Optimizer, OptimizerConfig, OptimizerKind, OptimizerState};
pub use params::{GradStore, Param, ParamStore};
pub use plan::Mode;
pub use replay::{graph_obstacle, resolve_graph_mode, StepReplay};

use crate::device::Device;

/// A device buffer of `E`.
pub type Buf<E, B> = <B as Device<E>>::Buf;
/// A device buffer of 32-bit words (labels, metrics, the step's dropout seed).
pub type Words<E, B> = <B as Device<E>>::IdxBuf;
