//! Per-layer summary of a graph: output shape, parameters and multiply-accumulates, with totals
//! and the memory of a training step. Every figure comes from the node units (`describe`,
//! `macs`, `params`) and the executor's memory planner (`crate::exec::memory::plan_memory`):
//! `activation_bytes` is what the tape holds when the forward pass ends (the inputs backward
//! reads, plus masks, argmax indices and batch statistics), `peak_step_bytes` the planned peak of
//! live activations, tape, gradients and convolution workspace at the worst moment of a training
//! step, both in f32 with parameters excluded.
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
    /// convolutions), parameters excluded.
    pub gpu_peak_step_bytes: u64,
    /// The most workspace one convolution holds on that GPU (split-K partial products).
    pub gpu_workspace_bytes: u64,
    pub layers: Vec<LayerSummary>,
}

pub fn summarize(graph: &Graph, batch: usize) -> Result<ModelSummary> {
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
    let plan = Plan::new(graph, Mode::Train, trains, false);
    let workspace_bytes = DEFAULT_WORKSPACE_MB << 20;
    let memory = plan_memory(graph, &plan, batch, F32_BYTES, ConvWorkspace::columns(workspace_bytes), trains)?;
    let gpu = ConvWorkspace::ImplicitGemm { gemm_sms: DEFAULT_SIM_MULTIPROCESSORS };
    let gpu_memory = plan_memory(graph, &plan, batch, F32_BYTES, gpu, trains)?;
    let mut gpu_workspace_bytes = 0;
    for (id, node) in graph.nodes.iter().enumerate().skip(1) {
        gpu_workspace_bytes = gpu_workspace_bytes.max(node.op.workspace_bytes(&graph.input_shapes(id), batch, F32_BYTES, gpu)?);
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
        layers,
    })
}
