//! Data parallelism inside a training step: each parameter's gradient, as soon as backward has
//! finished it, goes into a gradient bucket whose sum over the ranks starts while backward goes
//! on (`dist::GradientBuckets`); after backward the means replace the gradients in their
//! buffers. Through the host in f64, so any device and element type reduce alike.

use super::params::GradStore;
use super::Buf;
use crate::device::Device;
use crate::dist::{BucketCounts, GradientBuckets, GradientHook, ProcessGroup};
use crate::element::Element;
use crate::error::Result;
use crate::graph::{Graph, ParamId};
use crate::ops::NodeOp;
use std::marker::PhantomData;
use std::sync::Arc;

/// The ranks an executor averages its gradients over, and how.
pub struct GradientAveraging {
    group: Arc<ProcessGroup>,
    /// Values per bucket (PyTorch's bucket_cap_mb, in gradient values).
    bucket_values: usize,
    /// Per node: the parameters whose gradient is final once that node's backward has run
    /// (the first node in graph order that uses them: backward runs the nodes in reverse).
    final_after: Vec<Vec<ParamId>>,
}

impl GradientAveraging {
    /// Averaging over `group` in buckets of `bucket_bytes` of `E` gradients, for `graph`.
    pub fn new<E>(group: Arc<ProcessGroup>, bucket_bytes: usize, graph: &Graph) -> GradientAveraging {
        let bucket_values = (bucket_bytes / std::mem::size_of::<E>()).max(1);
        GradientAveraging { group, bucket_values, final_after: final_after(graph) }
    }

    /// The same averaging for another graph of the same parameters (a fused one).
    pub fn for_graph(self, graph: &Graph) -> GradientAveraging {
        GradientAveraging { final_after: final_after(graph), ..self }
    }

    pub fn final_after(&self) -> &[Vec<ParamId>] {
        &self.final_after
    }

    /// One step's buckets, filled from `backend`'s gradients.
    pub fn start<'s, E: Element, B: Device<E>>(&'s self, backend: &'s B) -> HostBuckets<'s, E, B> {
        HostBuckets { backend, buckets: GradientBuckets::new(&self.group, self.bucket_values), world: self.group.world_size(), element: PhantomData }
    }
}

/// Per node, the parameters first used by it.
fn final_after(graph: &Graph) -> Vec<Vec<ParamId>> {
    let mut first_use: Vec<Option<usize>> = vec![None; graph.params.len()];
    for (i, node) in graph.nodes.iter().enumerate() {
        for p in node.op.params() {
            first_use[p].get_or_insert(i);
        }
    }
    let mut final_after = vec![Vec::new(); graph.nodes.len()];
    for (p, first) in first_use.into_iter().enumerate() {
        if let Some(i) = first {
            final_after[i].push(p);
        }
    }
    final_after
}

/// One step's gradient buckets, fed with the host copies of the final gradients.
pub struct HostBuckets<'s, E: Element, B: Device<E>> {
    backend: &'s B,
    buckets: GradientBuckets<'s>,
    world: usize,
    element: PhantomData<E>,
}

impl<E: Element, B: Device<E>> GradientHook<Buf<E, B>> for HostBuckets<'_, E, B> {
    fn gradient_final(&mut self, param: usize, grad: &Buf<E, B>) -> Result<()> {
        let host = self.backend.download(grad)?;
        self.buckets.add(param, host.into_iter().map(Element::to_f64))
    }

    fn between_nodes(&mut self) {
        self.buckets.poll();
    }
}

impl<E: Element, B: Device<E>> HostBuckets<'_, E, B> {
    /// Waits for every bucket's sum and writes the mean over the ranks into each gradient's
    /// buffer (the mean of the ranks' mean gradients is the global batch's, every rank's batch
    /// being an equal slice of it).
    pub fn finish(self, grads: &mut GradStore<E, B>) -> Result<BucketCounts> {
        let (sums, counts) = self.buckets.finish()?;
        let scale = 1.0 / self.world as f64;
        for (id, sum) in sums {
            let mean: Vec<E> = sum.iter().map(|&v| E::from_f64(v * scale)).collect();
            let grad = grads.get_mut(id).expect("a bucketed gradient is held");
            self.backend.overwrite(grad, &mean)?;
        }
        Ok(counts)
    }
}
