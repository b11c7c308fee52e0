//! A model is a static DAG of layers. This module is the model's *description*: nodes with their
//! per-sample output shapes, parameters with their initialisers, and the outputs that feed the
//! loss. It holds no tensors; `crate::exec` runs it on a device. A node's op is its unit from
//! `crate::ops` (see `crate::ops::node`), which derives the node's shape when it is added.

pub mod fold;
pub mod fuse;
pub mod layout;

use crate::error::{Error, Result};
use crate::shape::Layout;
use crate::ops::{
    Activation, AdaptiveAvgPool2d, Add, AvgPool2d, BatchNorm2d, BatchNormParams, ChannelShuffle, Concat, Conv2d, Dropout,
    Flatten, Input, Linear, MaxPool2d, Mul, MulChannel, NodeOp, PoolWindow, SliceChannels,
};

pub use crate::ops::{ConvCfg, Op, ParamId};

pub type NodeId = usize;

/// How a parameter is initialised (all draws from the seeded RNG of the executor).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// N(0, std^2)
    Normal { std: f64 },
    /// N(0, std^2) redrawn outside [-2 std, 2 std] (truncated normal, as Inception uses)
    TruncatedNormal { std: f64 },
    /// U(-bound, bound)
    Uniform { bound: f64 },
    Const(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ParamKind {
    Weight,
    Bias,
    BnGamma,
    BnBeta,
    /// Running statistics: state, not trained (PyTorch's buffers).
    BnRunningMean,
    BnRunningVar,
}

impl ParamKind {
    /// Whether L2 weight decay applies when biases and BN parameters are excluded from it.
    pub fn decays_by_default(self) -> bool {
        matches!(self, ParamKind::Weight)
    }
    /// Running statistics are never trained.
    pub fn is_state(self) -> bool {
        matches!(self, ParamKind::BnRunningMean | ParamKind::BnRunningVar)
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ParamSpec {
    /// torchvision-style key, e.g. "layer1.0.conv1.weight".
    pub name: String,
    pub shape: Vec<usize>,
    pub init: Init,
    pub kind: ParamKind,
    /// False for running statistics and for frozen layers.
    pub trainable: bool,
}

impl ParamSpec {
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<NodeId>,
    /// Output shape per sample (without the batch dimension).
    pub shape: Vec<usize>,
}

/// A logits output feeding the loss: total loss = sum of loss_weight * cross-entropy.
#[derive(Clone, Debug, PartialEq)]
pub struct GraphOutput {
    pub node: NodeId,
    pub loss_weight: f64,
    /// Auxiliary heads train but are ignored at evaluation.
    pub auxiliary: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub name: String,
    /// Nodes in topological order (every input precedes its consumer); node 0 is the input.
    pub nodes: Vec<Node>,
    pub params: Vec<ParamSpec>,
    pub outputs: Vec<GraphOutput>,
    /// How [C, H, W] activations lie in memory while it runs: NCHW as built; NHWC after
    /// `layout::channels_last`, which places the conversions.
    pub layout: Layout,
}

impl Graph {
    pub fn input_shape(&self) -> &[usize] {
        &self.nodes[0].shape
    }
    /// The main (non-auxiliary) output; builders guarantee exactly one.
    pub fn main_output(&self) -> &GraphOutput {
        self.outputs.iter().find(|o| !o.auxiliary).expect("graph has a main output")
    }
    /// Per-sample shapes of node `id`'s inputs, in input order.
    pub fn input_shapes(&self, id: NodeId) -> Vec<&[usize]> {
        self.nodes[id].inputs.iter().map(|&j| self.nodes[j].shape.as_slice()).collect()
    }
    /// For every node, how many node inputs and graph outputs read it.
    pub fn reader_counts(&self) -> Vec<usize> {
        let mut readers = vec![0usize; self.nodes.len()];
        for node in &self.nodes {
            for &j in &node.inputs {
                readers[j] += 1;
            }
        }
        for output in &self.outputs {
            readers[output.node] += 1;
        }
        readers
    }
    pub fn num_classes(&self) -> usize {
        self.nodes[self.main_output().node].shape.iter().product()
    }
    pub fn trainable_params(&self) -> usize {
        self.params.iter().filter(|p| !p.kind.is_state()).map(|p| p.numel()).sum()
    }
    pub fn non_trainable_params(&self) -> usize {
        self.params.iter().filter(|p| p.kind.is_state()).map(|p| p.numel()).sum()
    }
}

/// Builds a graph node by node, inferring shapes and failing with a clear message when a layer
/// does not fit its input (e.g. an input image too small for the model).
pub struct GraphBuilder {
    graph: Graph,
}

impl GraphBuilder {
    /// `input` is the per-sample shape [C, H, W].
    pub fn new(name: &str, input: &[usize]) -> Self {
        let node = Node { name: "input".into(), op: Op::Input(Input), inputs: vec![], shape: input.to_vec() };
        GraphBuilder { graph: Graph { name: name.into(), nodes: vec![node], params: vec![], outputs: vec![], layout: Layout::Nchw } }
    }
    pub fn input(&self) -> NodeId {
        0
    }
    pub fn shape(&self, id: NodeId) -> &[usize] {
        &self.graph.nodes[id].shape
    }
    pub fn channels(&self, id: NodeId) -> usize {
        self.graph.nodes[id].shape[0]
    }
    pub fn param(&mut self, name: String, shape: Vec<usize>, init: Init, kind: ParamKind) -> ParamId {
        let trainable = !kind.is_state();
        self.graph.params.push(ParamSpec { name, shape, init, kind, trainable });
        self.graph.params.len() - 1
    }
    /// Overrides the initialiser of a parameter (models whose init differs from the default).
    pub fn set_init(&mut self, id: ParamId, init: Init) {
        self.graph.params[id].init = init;
    }
    pub fn node_params(&self, id: NodeId) -> Vec<ParamId> {
        self.graph.nodes[id].op.params()
    }

    /// Adds a node of any kind reading `inputs`; its unit derives the output shape, and an error
    /// names the layer whose input does not fit.
    pub fn node(&mut self, name: &str, op: impl Into<Op>, inputs: &[NodeId]) -> Result<NodeId> {
        let op = op.into();
        let shapes: Vec<&[usize]> = inputs.iter().map(|&j| self.shape(j)).collect();
        let shape = op.output_shape(&shapes).map_err(|e| in_layer(name, e))?;
        self.graph.nodes.push(Node { name: name.into(), op, inputs: inputs.to_vec(), shape });
        Ok(self.graph.nodes.len() - 1)
    }

    /// Conv2d with PyTorch's default initialisation (kaiming_uniform(a=sqrt(5)), i.e.
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias); builders override with set_init.
    pub fn conv2d(&mut self, name: &str, x: NodeId, cfg: ConvCfg) -> Result<NodeId> {
        let c = self.channels(x);
        // Checks the geometry before any parameter is added.
        cfg.geom(self.shape(x), 1).map_err(|e| in_layer(name, e))?;
        let fan_in = (c / cfg.groups) * cfg.kernel.0 * cfg.kernel.1;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let wshape = vec![cfg.out_channels, c / cfg.groups, cfg.kernel.0, cfg.kernel.1];
        let weight = self.param(format!("{name}.weight"), wshape, Init::Uniform { bound }, ParamKind::Weight);
        let bias = cfg
            .bias
            .then(|| self.param(format!("{name}.bias"), vec![cfg.out_channels], Init::Uniform { bound }, ParamKind::Bias));
        let op = Conv2d::new(cfg, weight, bias).map_err(|e| in_layer(name, e))?;
        self.node(name, op, &[x])
    }

    /// BatchNorm2d(eps=1e-5, momentum=0.1 unless given): gamma 1, beta 0, running mean 0, var 1.
    pub fn batch_norm2d(&mut self, name: &str, x: NodeId, eps: f64, momentum: f64) -> Result<NodeId> {
        let c = self.channels(x);
        let gamma = self.param(format!("{name}.weight"), vec![c], Init::Const(1.0), ParamKind::BnGamma);
        let beta = self.param(format!("{name}.bias"), vec![c], Init::Const(0.0), ParamKind::BnBeta);
        let running_mean = self.param(format!("{name}.running_mean"), vec![c], Init::Const(0.0), ParamKind::BnRunningMean);
        let running_var = self.param(format!("{name}.running_var"), vec![c], Init::Const(1.0), ParamKind::BnRunningVar);
        let params = BatchNormParams { gamma, beta, running_mean, running_var };
        self.node(name, BatchNorm2d::new(eps, momentum, params), &[x])
    }

    /// Linear with PyTorch's default init; the input is flattened per sample.
    pub fn linear(&mut self, name: &str, x: NodeId, out_features: usize, bias: bool) -> Result<NodeId> {
        let fan_in: usize = self.shape(x).iter().product();
        let bound = 1.0 / (fan_in as f64).sqrt();
        let weight = self.param(format!("{name}.weight"), vec![out_features, fan_in], Init::Uniform { bound }, ParamKind::Weight);
        let bias = bias.then(|| self.param(format!("{name}.bias"), vec![out_features], Init::Uniform { bound }, ParamKind::Bias));
        let op = Linear::new(out_features, weight, bias).map_err(|e| in_layer(name, e))?;
        self.node(name, op, &[x])
    }

    pub fn activation(&mut self, name: &str, x: NodeId, kind: Activation) -> NodeId {
        self.node(name, kind, &[x]).expect("an activation takes any input shape")
    }

    pub fn max_pool2d(&mut self, name: &str, x: NodeId, kernel: usize, stride: usize, padding: usize, ceil_mode: bool) -> Result<NodeId> {
        let window = PoolWindow::new(kernel, stride, padding, ceil_mode).map_err(|e| in_layer(name, e))?;
        self.node(name, MaxPool2d::new(window), &[x])
    }

    #[allow(clippy::too_many_arguments)]
    pub fn avg_pool2d(
        &mut self,
        name: &str,
        x: NodeId,
        kernel: usize,
        stride: usize,
        padding: usize,
        ceil_mode: bool,
        count_include_pad: bool,
    ) -> Result<NodeId> {
        let window = PoolWindow::new(kernel, stride, padding, ceil_mode).map_err(|e| in_layer(name, e))?;
        self.node(name, AvgPool2d::new(window, count_include_pad), &[x])
    }

    pub fn adaptive_avg_pool2d(&mut self, name: &str, x: NodeId, output: (usize, usize)) -> Result<NodeId> {
        let op = AdaptiveAvgPool2d::new(output).map_err(|e| in_layer(name, e))?;
        self.node(name, op, &[x])
    }

    pub fn add(&mut self, name: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.node(name, Add, &[a, b])
    }

    pub fn mul(&mut self, name: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        self.node(name, Mul, &[a, b])
    }

    /// x [C, H, W] * s [C, 1, 1] per sample.
    pub fn mul_channel(&mut self, name: &str, x: NodeId, s: NodeId) -> Result<NodeId> {
        self.node(name, MulChannel, &[x, s])
    }

    pub fn concat(&mut self, name: &str, xs: &[NodeId]) -> Result<NodeId> {
        self.node(name, Concat, xs)
    }

    pub fn slice_channels(&mut self, name: &str, x: NodeId, start: usize, len: usize) -> Result<NodeId> {
        let op = SliceChannels::new(start, len).map_err(|e| in_layer(name, e))?;
        self.node(name, op, &[x])
    }

    pub fn channel_shuffle(&mut self, name: &str, x: NodeId, groups: usize) -> Result<NodeId> {
        let op = ChannelShuffle::new(groups).map_err(|e| in_layer(name, e))?;
        self.node(name, op, &[x])
    }

    pub fn dropout(&mut self, name: &str, x: NodeId, p: f64) -> Result<NodeId> {
        let op = Dropout::new(p).map_err(|e| in_layer(name, e))?;
        self.node(name, op, &[x])
    }

    pub fn flatten(&mut self, name: &str, x: NodeId) -> NodeId {
        self.node(name, Flatten, &[x]).expect("flatten takes any input shape")
    }

    /// Marks `node` as a logits output; `auxiliary` heads are weighted into the training loss only.
    pub fn output(&mut self, node: NodeId, loss_weight: f64, auxiliary: bool) {
        self.graph.outputs.push(GraphOutput { node, loss_weight, auxiliary });
    }

    pub fn finish(self) -> Result<Graph> {
        let mains = self.graph.outputs.iter().filter(|o| !o.auxiliary).count();
        if mains != 1 {
            return Err(Error::shape(format!("graph {} must have exactly one main output, has {mains}", self.graph.name)));
        }
        Ok(self.graph)
    }
}

/// Prefixes a unit's error with the layer it belongs to, keeping its kind.
fn in_layer(name: &str, e: Error) -> Error {
    match e {
        Error::Shape(m) => Error::shape(format!("layer {name}: {m}")),
        Error::Config(m) => Error::config(format!("layer {name}: {m}")),
        other => other,
    }
}
