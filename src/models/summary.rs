//! Per-layer summary of a graph: output shape, parameters and multiply-accumulates, with totals
//! and an estimate of the activation memory a training step keeps.
//!
//! MACs count the multiply-accumulates of convolutions and dense layers per sample (as ptflops
//! and fvcore do); element-wise layers, pooling and batch norm are not counted.
//!
//! Activation memory estimate (what the tape keeps for backward, in f32 at the given batch):
//! every node's output, the input included, except Flatten (a view of its input); plus, per
//! dropout layer, its mask (one f32 per element), per max-pool layer its argmax indices (one u32
//! per output element), and per batch-norm layer its saved mean and inverse standard deviation
//! (two f32 per channel). Parameters, gradients, optimiser state and the transient workspace of
//! the kernels are not included. It is an upper bound on the tape: the executor frees what
//! backward does not need. `peak_step_bytes` is the executor's own planned peak
//! (`crate::exec::memory::planned_peak`): live activations, tape, gradients and convolution
//! workspace at the worst moment of a training step, parameters excluded. A summary has no
//! backend to ask for its workspace, so it assumes the device layer's default
//! (`DEFAULT_WORKSPACE_MB`) and reports it as `workspace_bytes`.

use crate::device::DEFAULT_WORKSPACE_MB;
use crate::error::Result;
use crate::exec::memory::planned_peak;
use crate::exec::plan::{Mode, Plan};
use crate::graph::{Graph, Op};
use serde::Serialize;

const F32_BYTES: u64 = 4;

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
    /// Estimated bytes the tape keeps for one training step at `batch` (see the module docs).
    pub activation_bytes: u64,
    /// The executor's planned peak of a training step at `batch`, parameters excluded.
    pub peak_step_bytes: u64,
    /// The convolution workspace the planned peak assumes: the device layer's default.
    pub workspace_bytes: u64,
    pub layers: Vec<LayerSummary>,
}

/// A short description of an op, e.g. `conv 3x3/2 p1 g32`.
pub fn describe(op: &Op) -> String {
    fn pair(p: (usize, usize)) -> String {
        if p.0 == p.1 {
            p.0.to_string()
        } else {
            format!("{}x{}", p.0, p.1)
        }
    }
    fn window(kind: &str, k: (usize, usize), s: (usize, usize), p: (usize, usize)) -> String {
        let mut text = format!("{kind} {}x{}/{}", k.0, k.1, pair(s));
        if p != (0, 0) {
            text += &format!(" p{}", pair(p));
        }
        text
    }
    match op {
        Op::Input => "input".into(),
        Op::Conv2d { kernel, stride, padding, dilation, groups, .. } => {
            let mut text = window("conv", *kernel, *stride, *padding);
            if *dilation != (1, 1) {
                text += &format!(" d{}", pair(*dilation));
            }
            if *groups != 1 {
                text += &format!(" g{groups}");
            }
            text
        }
        Op::BatchNorm2d { .. } => "batchnorm".into(),
        Op::Linear { .. } => "linear".into(),
        Op::Activation(kind) => kind.name().into(),
        Op::MaxPool2d { kernel, stride, padding, ceil_mode } => {
            window("maxpool", *kernel, *stride, *padding) + if *ceil_mode { " ceil" } else { "" }
        }
        Op::AvgPool2d { kernel, stride, padding, ceil_mode, .. } => {
            window("avgpool", *kernel, *stride, *padding) + if *ceil_mode { " ceil" } else { "" }
        }
        Op::AdaptiveAvgPool2d { output } => format!("adaptive avgpool {}x{}", output.0, output.1),
        Op::Add => "add".into(),
        Op::Mul => "mul".into(),
        Op::MulChannel => "mul channel".into(),
        Op::Concat => "concat".into(),
        Op::SliceChannels { start, len } => format!("channels {start}..{}", start + len),
        Op::ChannelShuffle { groups } => format!("shuffle g{groups}"),
        Op::Dropout { p } => format!("dropout {p}"),
        Op::Flatten => "flatten".into(),
    }
}

/// Per-sample multiply-accumulates of node `id`.
fn macs(graph: &Graph, id: usize) -> u64 {
    let node = &graph.nodes[id];
    let out: usize = node.shape.iter().product();
    let input = |k: usize| &graph.nodes[node.inputs[k]].shape;
    match &node.op {
        Op::Conv2d { kernel, groups, .. } => (out * (input(0)[0] / groups) * kernel.0 * kernel.1) as u64,
        Op::Linear { .. } => (out * input(0).iter().product::<usize>()) as u64,
        _ => 0,
    }
}

/// Elements (f32) the tape keeps for node `id` per sample.
fn kept_elements(graph: &Graph, id: usize) -> u64 {
    let node = &graph.nodes[id];
    let out = node.shape.iter().product::<usize>() as u64;
    match node.op {
        Op::Flatten => 0,
        Op::Dropout { .. } | Op::MaxPool2d { .. } => 2 * out,
        _ => out,
    }
}

pub fn summarize(graph: &Graph, batch: usize) -> Result<ModelSummary> {
    let layers: Vec<LayerSummary> = graph
        .nodes
        .iter()
        .enumerate()
        .map(|(id, node)| LayerSummary {
            name: node.name.clone(),
            op: describe(&node.op),
            output_shape: node.shape.clone(),
            params: node.op.params().iter().map(|&p| graph.params[p].numel()).sum(),
            macs: macs(graph, id),
        })
        .collect();
    let per_sample: u64 = (0..graph.nodes.len()).map(|id| kept_elements(graph, id)).sum();
    let bn_saved: u64 = graph
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::BatchNorm2d { .. }))
        .map(|n| 2 * n.shape[0] as u64)
        .sum();
    let trainable = graph.trainable_params();
    let non_trainable = graph.non_trainable_params();
    let trains = |p: usize| graph.params[p].trainable;
    let plan = Plan::new(graph, Mode::Train, trains, false);
    let workspace_bytes = DEFAULT_WORKSPACE_MB << 20;
    let peak = planned_peak(graph, &plan, batch, F32_BYTES as usize, workspace_bytes, trains)?;
    Ok(ModelSummary {
        model: graph.name.clone(),
        input: graph.input_shape().to_vec(),
        batch,
        trainable_params: trainable,
        non_trainable_params: non_trainable,
        total_params: trainable + non_trainable,
        macs: layers.iter().map(|l| l.macs).sum(),
        activation_bytes: (per_sample * batch as u64 + bn_saved) * F32_BYTES,
        peak_step_bytes: peak as u64,
        workspace_bytes: workspace_bytes as u64,
        layers,
    })
}
