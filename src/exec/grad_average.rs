//! Data parallelism inside a training step: each parameter's gradient, as soon as backward has
//! finished it, goes into a gradient bucket whose sum over the ranks starts while backward goes
//! on; after backward the sums replace the gradients in their buffers (each rank's loss counts
//! 1/world of its slice's mean, `Executor::output_losses`, so the sum is the global batch's).
//! Through the host in f64 over MPI (`dist::GradientBuckets`), so any device and element type
//! reduce alike, or with NCCL in device memory on a stream beside backward's
//! (`Device::nccl_buckets`, CUDA GPUs).

use super::params::GradStore;
use super::Buf;
use crate::device::Device;
use crate::dist::nccl::NcclComm;
use crate::dist::{BucketCounts, DeviceBuckets, GradientBuckets, GradientHook, ProcessGroup};
use crate::element::Element;
use crate::error::Result;
use crate::graph::{Graph, ParamId};
use crate::ops::{Backend, NodeOp};
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
    /// NCCL's communicator when the sums run in device memory; None: MPI through the host.
    nccl: Option<NcclComm>,
}

impl GradientAveraging {
    /// Averaging over `group` in buckets of `bucket_bytes` of `E` gradients, for `graph`.
    /// With `nccl`, the sums run in device memory over NCCL's communicator of the same ranks.
    pub fn new<E>(group: Arc<ProcessGroup>, nccl: Option<NcclComm>, bucket_bytes: usize, graph: &Graph) -> GradientAveraging {
        let bucket_values = (bucket_bytes / std::mem::size_of::<E>()).max(1);
        GradientAveraging { group, bucket_values, final_after: final_after(graph), nccl }
    }

    /// The same averaging for another graph of the same parameters (a fused one).
    pub fn for_graph(self, graph: &Graph) -> GradientAveraging {
        GradientAveraging { final_after: final_after(graph), ..self }
    }

    /// How many ranks the gradients are summed over.
    pub fn world_size(&self) -> usize {
        self.group.world_size()
    }

    pub fn final_after(&self) -> &[Vec<ParamId>] {
        &self.final_after
    }

    /// One step's buckets, filled from `backend`'s gradients.
    pub fn start<'s, E: Element, B: Device<E>>(&'s self, backend: &'s B) -> Result<StepBuckets<'s, E, B>> {
        Ok(match &self.nccl {
            None => StepBuckets::Host(HostBuckets {
                backend,
                buckets: GradientBuckets::new(&self.group, self.bucket_values),
                element: PhantomData,
            }),
            Some(comm) => StepBuckets::Device { buckets: backend.nccl_buckets(comm, self.bucket_values)? },
        })
    }
}

/// One step's gradient buckets: through the host, or in device memory.
pub enum StepBuckets<'s, E: Element, B: Device<E>> {
    Host(HostBuckets<'s, E, B>),
    Device { buckets: Box<dyn DeviceBuckets<Buf<E, B>> + 's> },
}

impl<E: Element, B: Backend<E>> StepBuckets<'_, E, B> {
    /// What backward tells the final gradients.
    pub fn hook(&mut self) -> &mut dyn GradientHook<Buf<E, B>> {
        match self {
            StepBuckets::Host(host) => host,
            StepBuckets::Device { buckets, .. } => &mut **buckets,
        }
    }

    /// After backward: every gradient holds its sum over the ranks, the global batch's gradient
    /// (on the device, once the queued sums have run).
    pub fn finish(self, grads: &mut GradStore<E, B>) -> Result<BucketCounts> {
        match self {
            StepBuckets::Host(host) => host.finish(grads),
            StepBuckets::Device { buckets } => buckets.finish(),
        }
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
    /// Waits for every bucket's sum and writes it into each gradient's buffer: the global
    /// batch's gradient, each rank's loss having been taken as 1/world of its slice's mean.
    pub fn finish(self, grads: &mut GradStore<E, B>) -> Result<BucketCounts> {
        let (sums, counts) = self.buckets.finish()?;
        for (id, sum) in sums {
            let total: Vec<E> = sum.iter().map(|&v| E::from_f64(v)).collect();
            let grad = grads.get_mut(id).expect("a bucketed gradient is held");
            self.backend.overwrite(grad, &total)?;
        }
        Ok(counts)
    }
}
