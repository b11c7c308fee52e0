//! What a graph node's op is: one type per node kind in its op folder (a "unit"), owning its
//! output shape and geometry checks, its forward and backward on any backend, what it saves for
//! backward and what that costs, its MACs and its description. The executor, the memory planner
//! and the model summary ask the units for these facts (through [`crate::ops::Op`], the enum
//! `node_ops!` generates from the registration list) instead of matching on node kinds.

use crate::device::{ConvWorkspace, Device};
use crate::dist::ProcessGroup;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::{Backend, BatchNormSaved};
use crate::shape::Layout;

/// Index of a parameter (weights, biases, BN scale, shift and running statistics) in the graph's
/// parameter list; the executor's parameter store owns the values.
pub type ParamId = usize;

/// The [C, H, W] of a per-sample shape; `op` names the layer kind in the error.
pub fn chw(shape: &[usize], op: &str) -> Result<(usize, usize, usize)> {
    match *shape {
        [c, h, w] => Ok((c, h, w)),
        _ => Err(Error::shape(format!("{op} needs a [C, H, W] input, got {shape:?}"))),
    }
}

/// The [N, C, HW] view channel-wise ops take of a batch of `n` [C, H, W] tensors in `layout`:
/// itself in NCHW; in NHWC, N * H * W "images" of C channels and one pixel, the same memory
/// order (batch norm, concat, split and shuffle then need no channels-last kernels of their own).
pub fn channel_rows(layout: Layout, n: usize, (c, h, w): (usize, usize, usize)) -> (usize, usize, usize) {
    match layout {
        Layout::Nchw => (n, c, h * w),
        Layout::Nhwc => (n * h * w, c, 1),
    }
}

/// Elements of a per-sample shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

/// Buffers a forward creates only for its backward (its kept inputs aside).
pub enum Saved<E: Element, B: Device<E>> {
    None,
    /// Max-pool argmax per output.
    Indices(B::IdxBuf),
    /// Dropout's scaled keep mask.
    Mask(B::Buf),
    /// Batch-norm batch mean and inverse std.
    BnStats(BatchNormSaved<B::Buf>),
}

/// How a backward hands out its input gradients, as the memory planner replays it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradFlow {
    /// Every input receives the output gradient itself (no new buffer).
    PassDy,
    /// One new buffer per input, computed together whether or not each input needs it.
    AllAtOnce,
    /// One new buffer per input that needs a gradient.
    AsNeeded,
}

/// A node's input gradient: the output gradient passed on unchanged, or a new buffer.
pub enum InputGrad<T> {
    PassDy,
    New(T),
}

/// Parameter values as the executor's store holds them.
pub trait ParamValues<E: Element, B: Device<E>> {
    fn value(&self, id: ParamId) -> &B::Buf;
    /// Mutable access to distinct parameters at once, in the order of `ids`.
    fn values_mut(&mut self, ids: &[ParamId]) -> Result<Vec<&mut B::Buf>>;
}

/// Scratch buffers the executor lends and takes back (reused across steps).
pub trait Scratch<E: Element, B: Device<E>> {
    fn copy_of(&mut self, backend: &B, src: &B::Buf) -> Result<B::Buf>;
    fn recycle(&mut self, buf: B::Buf);
}

/// Where a backward sends its gradients; the executor accumulates them.
pub trait GradSink<E: Element, B: Device<E>> {
    fn input_needs_grad(&self, pos: usize) -> bool;
    /// Sends the gradient of input `pos` (dropped when that input needs none).
    fn send_input(&mut self, pos: usize, grad: InputGrad<B::Buf>) -> Result<()>;
    fn param_needs_grad(&self, id: ParamId) -> bool;
    fn send_param(&mut self, id: ParamId, grad: B::Buf) -> Result<()>;
}

/// What a unit's forward gets besides its inputs' values.
pub struct ForwardCtx<'a, E: Element, B: Backend<E>> {
    pub backend: &'a B,
    pub params: &'a mut dyn ParamValues<E, B>,
    pub scratch: &'a mut dyn Scratch<E, B>,
    /// Batch size.
    pub n: usize,
    /// Per-sample shapes of the node's inputs.
    pub inputs: &'a [&'a [usize]],
    /// How the run's [C, H, W] tensors lie in memory (`Graph::layout`).
    pub layout: Layout,
    /// Batch statistics and dropout on (else running statistics, dropout off).
    pub training: bool,
    /// Training only: whether BN running statistics take this batch's statistics.
    pub update_running_stats: bool,
    /// Whether this node's backward will run, so what it saves must be kept.
    pub record: bool,
    /// Training only: the step's dropout seed on the device (`dropout::step_seed_words`), and
    /// the node's id, which dropout mixes into it.
    pub step_seed: Option<&'a B::IdxBuf>,
    pub node: usize,
    /// Training with `--sync-bn`: the data-parallel ranks whose batches batch norm's
    /// statistics span (None: this process's batch alone).
    pub batch_norm_group: Option<&'a ProcessGroup>,
}

/// What a unit's backward gets besides the output gradient.
pub struct BackwardCtx<'a, E: Element, B: Backend<E>> {
    pub backend: &'a B,
    pub params: &'a dyn ParamValues<E, B>,
    pub n: usize,
    pub inputs: &'a [&'a [usize]],
    /// As `ForwardCtx::layout`.
    pub layout: Layout,
    /// The inputs' forward values the plan kept (see `NodeOp::kept_inputs`).
    pub kept: &'a [Option<&'a B::Buf>],
    /// What the forward saved.
    pub saved: &'a Saved<E, B>,
    pub grads: &'a mut dyn GradSink<E, B>,
    /// As `ForwardCtx::batch_norm_group`.
    pub batch_norm_group: Option<&'a ProcessGroup>,
}

impl<E: Element, B: Backend<E>> BackwardCtx<'_, E, B> {
    /// The kept forward value of input `pos`.
    pub fn kept_input(&self, pos: usize) -> &B::Buf {
        self.kept[pos].expect("the plan keeps what this backward reads")
    }
}

/// A node kind. Shapes are per sample (no batch dimension); `n` is the batch size.
pub trait NodeOp {
    /// The output shape for these input shapes, or why they do not fit.
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>>;
    /// A short description, e.g. `conv 3x3/2 p1 g32`.
    fn describe(&self) -> String;
    /// Multiply-accumulates per sample; counted for convolutions and dense layers only (as
    /// ptflops and fvcore do).
    fn macs(&self, _inputs: &[&[usize]], _output: &[usize]) -> u64 {
        0
    }
    /// The parameters and running statistics this op reads, weight first.
    fn params(&self) -> Vec<ParamId> {
        Vec::new()
    }
    /// The parameters that can receive gradients (running statistics never do).
    fn learnable_params(&self) -> Vec<ParamId> {
        self.params()
    }
    /// Whether the output is the first input's buffer itself (no copy, no kernel).
    fn aliases_input(&self, _training: bool, _inputs: usize) -> bool {
        false
    }
    /// Whether every kernel of this node's forward and backward in `layout` reads its inputs
    /// and output gradient in whatever format they are stored (kernels/stored.cuh) and writes
    /// its output and input gradients in the format of the input it reads (16 bits in a GPU's
    /// bf16/fp16 run). The executor hands any other node f32 buffers, and stores what it writes
    /// in the run's format after it.
    fn reads_stored(&self, _layout: Layout) -> bool {
        false
    }
    /// A channel range start..start+len this node takes of its one input: the executor splits
    /// sibling ranges of one input together.
    fn channel_range(&self) -> Option<(usize, usize)> {
        None
    }
    /// Per input: whether backward reads its forward value (`trainable` tells which parameters
    /// receive gradients).
    fn kept_inputs(&self, inputs: usize, _trainable: &dyn Fn(ParamId) -> bool) -> Vec<bool> {
        vec![false; inputs]
    }
    /// Bytes of what forward creates for backward ([`Saved`]) at batch `n` with `elem`-byte
    /// elements; made even when no backward runs, then dropped at once.
    fn saved_bytes(&self, _training: bool, _output: &[usize], _n: usize, _elem: usize) -> usize {
        0
    }
    /// Bytes held only while forward or backward runs on a device whose convolutions work as
    /// `workspace` says, on tensors in `layout`.
    fn workspace_bytes(&self, _inputs: &[&[usize]], _n: usize, _elem: usize, _workspace: ConvWorkspace, _layout: Layout) -> Result<usize> {
        Ok(0)
    }
    /// How backward (in training) hands out input gradients.
    fn grad_flow(&self, inputs: usize) -> GradFlow {
        if self.aliases_input(true, inputs) {
            GradFlow::PassDy
        } else {
            GradFlow::AsNeeded
        }
    }
    /// Computes the output and what backward needs; never called when `aliases_input` holds.
    fn forward<E: Element, B: Backend<E>>(
        &self,
        ctx: &mut ForwardCtx<'_, E, B>,
        xs: &[&B::Buf],
    ) -> Result<(B::Buf, Saved<E, B>)>;
    /// Sends the gradients of the inputs and parameters for output gradient `dy`.
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()>;
}
