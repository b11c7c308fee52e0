//! Where a run at reduced precision (`--precision`) rounds and stores, in one place: the forward
//! and backward passes call these hooks, the ops themselves know nothing of the precision.
//!
//! How values are stored: a GPU keeps a bf16/fp16 run's activations and activation gradients in
//! 16-bit buffers (`PrecisionOps::stores_16bit`); the CPU keeps f32 containers holding the values
//! rounded exactly as those stores round them (`ops::precision`), so device results compare
//! tightly with the CPU's. Nodes whose kernels read every stored format (`NodeOp::reads_stored`)
//! take the 16-bit buffers and write their outputs in 16 bits; any other node gets f32 copies
//! and its output is stored after it. What is stored or rounded:
//! - bf16, fp16: the input batch, every node's output (the activations a node stores), every
//!   activation gradient contribution a node's backward sends and every partial sum of them
//!   (AMP's autograd adds bf16 gradients into bf16). A fused node (`graph::fuse`'s
//!   BatchNormAct: batch norm, residual add and activation) stores once, at its output, as a
//!   fused kernel stores only its output; its intermediates stay f32. Batch-norm statistics,
//!   reductions and softmax-cross-entropy compute in f32: the loss reads the stored logits, the
//!   loss itself is f32.
//! - every format but fp32: convolutions and linear layers read a format-rounded copy of their
//!   weights and biases (fp32 master copies stay with the optimiser, as AMP casts them), refreshed
//!   at each forward pass into buffers kept across steps; their parameter gradients are rounded
//!   to the format before the optimiser at bf16/fp16 (AMP produces them in the format).
//! - tf32 only: convolution and linear inputs (rounded copies) and their output gradients, the
//!   operands tensor cores read; activations stay f32.

use super::params::{GradStore, ParamStore};
use super::tape::Value;
use super::Buf;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::graph::{Graph, Op, ParamId};
use crate::ops::node::ParamValues;
use crate::ops::{Backend, NodeOp};
use crate::precision::{Precision, StoredFormat};
use crate::shape::Layout;
use std::sync::Arc;

/// The ops whose operands are rounded (they are the GEMMs a tensor core runs).
fn is_gemm(op: &Op) -> bool {
    matches!(op, Op::Conv2d(_) | Op::Linear(_))
}

/// The run's precision and the rounded weight copies the GEMM ops read.
pub struct StorageRounding<E: Element, B: Backend<E>> {
    precision: Precision,
    /// Per parameter id: its format-rounded copy when a convolution or linear layer reads it.
    copies: Vec<Option<Buf<E, B>>>,
}

impl<E: Element, B: Backend<E>> StorageRounding<E, B> {
    pub fn new(precision: Precision) -> Self {
        StorageRounding { precision, copies: Vec::new() }
    }

    pub fn precision(&self) -> Precision {
        self.precision
    }

    /// Rounds the GEMM ops' weights into their copies (allocated at the first call, reused
    /// after): once per forward pass, after the optimiser moved the master weights. Declares the
    /// GEMMs' operand format to the backend first (its tensor cores take them at bf16/fp16).
    pub fn refresh_weights(&mut self, backend: &B, graph: &Graph, params: &ParamStore<E, B>) -> Result<()> {
        backend.declare_gemm_operand_format(self.precision);
        if !self.precision.rounds_gemm_operands() {
            return Ok(());
        }
        if self.copies.len() != params.len() {
            self.copies = (0..params.len()).map(|_| None).collect();
        }
        let mut done = vec![false; params.len()];
        for node in graph.nodes.iter().filter(|n| is_gemm(&n.op)) {
            for id in node.op.params() {
                if std::mem::replace(&mut done[id], true) {
                    continue;
                }
                let master = params.value(id);
                let len = crate::device::Buffer::len(master);
                let copy = match &mut self.copies[id] {
                    Some(copy) if crate::device::Buffer::len(copy) == len => copy,
                    slot => slot.insert(backend.zeros(len)?),
                };
                backend.round_into(self.precision, master, copy)?;
            }
        }
        Ok(())
    }

    /// Bytes the rounded weight copies hold (what memory plans add at reduced precision).
    pub fn weight_copy_bytes(&self, graph: &Graph, params: &ParamStore<E, B>) -> usize {
        if !self.precision.rounds_gemm_operands() {
            return 0;
        }
        let mut ids: Vec<ParamId> = graph.nodes.iter().filter(|n| is_gemm(&n.op)).flat_map(|n| n.op.params()).collect();
        ids.sort_unstable();
        ids.dedup();
        ids.iter().map(|&id| params.spec(id).numel()).sum::<usize>() * std::mem::size_of::<E>()
    }

    /// The parameters as the ops read them: the rounded copies where there are some.
    pub fn params<'a>(&'a self, master: &'a mut ParamStore<E, B>) -> RoundedParams<'a, E, B> {
        RoundedParams { master: Master::Exclusive(master), copies: &self.copies }
    }

    /// As `params`, read-only (backward).
    pub fn params_shared<'a>(&'a self, master: &'a ParamStore<E, B>) -> RoundedParams<'a, E, B> {
        RoundedParams { master: Master::Shared(master), copies: &self.copies }
    }

    /// The input batch as stored at bf16/fp16.
    pub fn store_input(&self, backend: &B, input: Value<E, B>) -> Result<Value<E, B>> {
        if !self.precision.stores_activations() {
            return Ok(input);
        }
        self.stored(backend, input)
    }

    /// The inputs of node `op` as it reads them: f32 copies of 16-bit values for a node whose
    /// kernels read f32 only (`NodeOp::reads_stored`), and rounded copies of a GEMM's inputs at
    /// tf32 (at bf16/fp16 every value is stored rounded already).
    pub fn operands(&self, backend: &B, op: &Op, layout: Layout, xs: Vec<Value<E, B>>) -> Result<Vec<Value<E, B>>> {
        if self.precision == Precision::Tf32 && is_gemm(op) {
            return xs.into_iter().map(|x| self.rounded_copy(backend, &x)).collect();
        }
        if op.reads_stored(layout) {
            return Ok(xs);
        }
        xs.into_iter().map(|x| self.widened(backend, x)).collect()
    }

    /// A node's output as stored at bf16/fp16: in 16 bits on a device that keeps them (a node
    /// that reads stored formats wrote it so already), else rounded in place.
    pub fn store_output(&self, backend: &B, y: Buf<E, B>) -> Result<Buf<E, B>> {
        if !self.precision.stores_activations() {
            return Ok(y);
        }
        match self.native_format(backend) {
            Some(format) if backend.stored_format(&y) == format => Ok(y),
            Some(format) => backend.convert_stored(&y, format),
            None => {
                let mut y = y;
                backend.round_in_place(self.precision, &mut y)?;
                Ok(y)
            }
        }
    }

    /// A gradient contribution, or a partial sum of them, as stored at bf16/fp16 (every one is
    /// a tensor a reduced-precision engine stores, as AMP's autograd adds its bf16 gradients).
    pub fn store_contribution(&self, backend: &B, g: Value<E, B>) -> Result<Value<E, B>> {
        if !self.precision.stores_activations() {
            return Ok(g);
        }
        self.stored(backend, g)
    }

    /// The complete gradient of node `op`'s output as its backward reads it: stored already at
    /// bf16/fp16 (as f32 for a node that reads f32 only); at tf32 rounded for a GEMM (an operand
    /// of its backward GEMMs).
    pub fn store_gradient(&self, backend: &B, op: &Op, layout: Layout, dy: Value<E, B>) -> Result<Value<E, B>> {
        if self.precision == Precision::Tf32 && is_gemm(op) {
            return self.rounded(backend, dy);
        }
        if op.reads_stored(layout) {
            return Ok(dy);
        }
        self.widened(backend, dy)
    }

    /// `v` as f32 (a copy when it is stored in 16 bits).
    pub fn widened(&self, backend: &B, v: Value<E, B>) -> Result<Value<E, B>> {
        Ok(backend.widened(&v)?.map_or(v, Arc::new))
    }

    /// The 16-bit format the device keeps this run's activations in, if it keeps them so.
    fn native_format(&self, backend: &B) -> Option<StoredFormat> {
        self.precision.stored_format().filter(|_| backend.stores_16bit())
    }

    /// `v` as stored at bf16/fp16: in 16 bits (a copy unless it is already), or rounded.
    fn stored(&self, backend: &B, v: Value<E, B>) -> Result<Value<E, B>> {
        match self.native_format(backend) {
            Some(format) if backend.stored_format(&v) == format => Ok(v),
            Some(format) => Ok(Arc::new(backend.convert_stored(&v, format)?)),
            None => self.rounded(backend, v),
        }
    }

    /// Rounds the gradients of the GEMM ops' parameters to the format at bf16/fp16, as the
    /// format-typed weights' backward produces them.
    pub fn store_param_grads(&self, backend: &B, grads: &mut GradStore<E, B>) -> Result<()> {
        if !self.precision.stores_activations() {
            return Ok(());
        }
        for (id, copy) in self.copies.iter().enumerate() {
            if let (Some(_), Some(grad)) = (copy, grads.get_mut(id)) {
                backend.round_in_place(self.precision, grad)?;
            }
        }
        Ok(())
    }

    /// `v` rounded: in place when this is its only holder, else a rounded copy (a value shared
    /// by several consumers is rounded by the first; rounding is idempotent).
    fn rounded(&self, backend: &B, mut v: Value<E, B>) -> Result<Value<E, B>> {
        match Arc::get_mut(&mut v) {
            Some(buf) => {
                backend.round_in_place(self.precision, buf)?;
                Ok(v)
            }
            None => self.rounded_copy(backend, &v),
        }
    }

    /// A fresh rounded copy (tf32 operands, shared gradients): allocated per call, from the
    /// device's caching allocator on a GPU.
    fn rounded_copy(&self, backend: &B, v: &Value<E, B>) -> Result<Value<E, B>> {
        let mut copy = backend.zeros(crate::device::Buffer::len(&**v))?;
        backend.round_into(self.precision, v, &mut copy)?;
        Ok(Arc::new(copy))
    }
}

enum Master<'a, E: Element, B: Backend<E>> {
    Exclusive(&'a mut ParamStore<E, B>),
    Shared(&'a ParamStore<E, B>),
}

/// The parameters with the GEMM ops' weights replaced by their rounded copies; batch norm's
/// parameters and running statistics are the master values (f32).
pub struct RoundedParams<'a, E: Element, B: Backend<E>> {
    master: Master<'a, E, B>,
    copies: &'a [Option<Buf<E, B>>],
}

impl<E: Element, B: Backend<E>> ParamValues<E, B> for RoundedParams<'_, E, B> {
    fn value(&self, id: ParamId) -> &Buf<E, B> {
        match self.copies.get(id).and_then(Option::as_ref) {
            Some(copy) => copy,
            None => match &self.master {
                Master::Exclusive(m) => m.value(id),
                Master::Shared(m) => m.value(id),
            },
        }
    }

    fn values_mut(&mut self, ids: &[ParamId]) -> Result<Vec<&mut Buf<E, B>>> {
        match &mut self.master {
            Master::Exclusive(m) => m.values_mut(ids),
            Master::Shared(_) => Err(Error::config("backward cannot change parameters")),
        }
    }
}
