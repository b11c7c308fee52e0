//! Per-layer summary of a graph: output shape, parameters and multiply-accumulates, with totals
//! and the memory of a training step. Every figure comes from the node units (`describe`,
//! `macs`, `params`) and the executor's memory planner (`crate::exec::memory::plan_memory`):
//! `activation_bytes` is what the tape holds when the forward pass ends (the inputs backward
//! reads, plus masks, argmax indices and batch statistics), `peak_step_bytes` the planned peak of
//! live activations, tape, gradients and convolution workspace at the worst moment of a training
//! step, both in f32 with parameters excluded. With fusion on (as `train` runs by default), the
//! memory figures are those of the graph with its batch norm -> (add) -> activation chains fused
//! (`graph::fuse`), which keeps neither the batch norms' outputs nor the sums; the layer rows are
//! the model's own.
//! A summary has no backend to ask for its workspace, so it plans twice: with the device layer's
//! default (`DEFAULT_WORKSPACE_MB`) of column buffers for every pass, as the CPU runs
//! convolutions (`workspace_bytes`), and as a GPU of the simulator's default SM count runs them,
//! implicit GEMMs with no columns whose only workspace is split-K partial products
//! (`gpu_peak_step_bytes`, `gpu_workspace_bytes`: the largest one convolution holds).

use crate::device::{ConvWorkspace, DEFAULT_WORKSPACE_MB};
use crate::sim::DEFAULT_SIM_MULTIPROCESSORS;
use crate::error::Result;
use crate::exec::memory::plan_memory;
use crate::exec::plan::{Mode, Plan};
use crate::graph::fuse::fuse_batch_norm_activations;
use crate::graph::layout::channels_last;
use crate::graph::Graph;
use crate::ops::NodeOp;
use serde::Serialize;

const F32_BYTES: usize = 4;

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerSummary {
    pub name: String,
    pub op: String,
    pub output_shape: Vec<usize>,
    /// Trainable and state parameters of this layer.
    pub params: usize,
    pub macs: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelSummary {
    pub model: String,
    pub input: Vec<usize>,
    pub batch: usize,
    pub trainable_params: usize,
    pub non_trainable_params: usize,
    pub total_params: usize,
    /// Per sample.
    pub macs: u64,
    /// Bytes the tape holds at the end of a training forward pass at `batch` (see the module docs).
    pub activation_bytes: u64,
    /// The executor's planned peak of a training step at `batch`, parameters excluded.
    pub peak_step_bytes: u64,
    /// The convolution workspace the planned peak assumes: the device layer's default.
    pub workspace_bytes: u64,
    /// The planned peak on a GPU of `DEFAULT_SIM_MULTIPROCESSORS` SMs (implicit-GEMM
    /// convolutions, channels-last as GPUs train by default), parameters excluded.
    pub gpu_peak_step_bytes: u64,
    /// The most workspace one convolution holds on that GPU (split-K partial products).
    pub gpu_workspace_bytes: u64,
    /// Batch norm -> (add) -> activation chains fused in the graph the memory figures plan; zero
    /// without fusion.
    pub fused_chains: usize,
    pub layers: Vec<LayerSummary>,
}

/// The summary of `graph` at `batch`, its memory planned for training with the batch norm ->
/// (add) -> activation chains fused when `fusion` holds.
pub fn summarize(graph: &Graph, batch: usize, fusion: bool) -> Result<ModelSummary> {
    let layers: Vec<LayerSummary> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(id, node)| LayerSummary {
            name: node.name.clone(),
            op: node.op.describe(),
            output_shape: node.shape.clone(),
            params: node.op.params().iter().map(|&p| graph.params[p].numel()).sum(),
            macs: node.op.macs(&graph.input_shapes(id), &node.shape),
        })
        .collect();
    let trainable = graph.trainable_params();
    let non_trainable = graph.non_trainable_params();
    let trains = |p: usize| graph.params[p].trainable;
    let fused = fusion.then(|| fuse_batch_norm_activations(graph));
    let (trained, fused_chains) = match &fused {
        Some(f) => (&f.graph, f.counts.batch_norm_activations + f.counts.batch_norm_add_activations),
        None => (graph, 0),
    };
    let plan = Plan::new(trained, Mode::Train, trains, false);
    let workspace_bytes = DEFAULT_WORKSPACE_MB << 20;
    let memory = plan_memory(trained, &plan, batch, F32_BYTES, F32_BYTES, ConvWorkspace::columns(workspace_bytes), false, trains)?;
    // A GPU trains channels-last by default (`Device::default_layout`), so its figures plan that graph.
    let on_gpu = channels_last(trained);
    let gpu_plan = Plan::new(&on_gpu, Mode::Train, trains, false);
    let gpu = ConvWorkspace::ImplicitGemm { gemm_sms: DEFAULT_SIM_MULTIPROCESSORS };
    let gpu_memory = plan_memory(&on_gpu, &gpu_plan, batch, F32_BYTES, F32_BYTES, gpu, false, trains)?;
    let mut gpu_workspace_bytes = 0;
    for (id, node) in on_gpu.nodes.iter().enumerate().skip(1) {
        gpu_workspace_bytes = gpu_workspace_bytes.max(node.op.workspace_bytes(&on_gpu.input_shapes(id), batch, F32_BYTES, gpu, on_gpu.layout)?);
    }
    Ok(ModelSummary {
        model: graph.name.clone(),
        input: graph.input_shape().to_vec(),
        batch,
        trainable_params: trainable,
        non_trainable_params: non_trainable,
        total_params: trainable + non_trainable,
        macs: layers.iter().map(|l| l.macs).sum(),
        activation_bytes: memory.tape as u64,
        peak_step_bytes: memory.peak as u64,
        workspace_bytes: workspace_bytes as u64,
        gpu_peak_step_bytes: gpu_memory.peak as u64,
        gpu_workspace_bytes: gpu_workspace_bytes as u64,
        fused_chains,
        layers,
    })
}
