//! A model is a static DAG of layers. This module is the model's *description*: nodes with their
//! per-sample output shapes, parameters with their initialisers, and the outputs that feed the
//! loss. It holds no tensors; `crate::exec` runs it on a device.

use crate::error::{Error, Result};
use crate::ops::Activation;

pub type NodeId = usize;
pub type ParamId = usize;

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
pub enum Op {
    /// The image batch; per-sample shape [C, H, W].
    Input,
    Conv2d {
        out_channels: usize,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
        weight: ParamId,
        bias: Option<ParamId>,
    },
    BatchNorm2d {
        eps: f64,
        momentum: f64,
        gamma: ParamId,
        beta: ParamId,
        running_mean: ParamId,
        running_var: ParamId,
    },
    /// Input is flattened per sample: [F] -> [out_features].
    Linear { out_features: usize, weight: ParamId, bias: Option<ParamId> },
    Activation(Activation),
    MaxPool2d { kernel: (usize, usize), stride: (usize, usize), padding: (usize, usize), ceil_mode: bool },
    AvgPool2d {
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
        ceil_mode: bool,
        count_include_pad: bool,
    },
    AdaptiveAvgPool2d { output: (usize, usize) },
    /// inputs[0] + inputs[1], same shape.
    Add,
    /// inputs[0] * inputs[1], same shape.
    Mul,
    /// inputs[0] [C, H, W] times inputs[1] [C, 1, 1] broadcast per sample (squeeze-excitation).
    MulChannel,
    /// Channel concatenation of all inputs.
    Concat,
    /// Channels start..start+len of the input (ShuffleNet's branch split).
    SliceChannels { start: usize, len: usize },
    ChannelShuffle { groups: usize },
    Dropout { p: f64 },
    /// [C, H, W] -> [C*H*W]
    Flatten,
}

impl Op {
    /// The parameters (and running statistics) this op reads, weight first.
    pub fn params(&self) -> Vec<ParamId> {
        match self {
            Op::Conv2d { weight, bias, .. } | Op::Linear { weight, bias, .. } => {
                std::iter::once(*weight).chain(*bias).collect()
            }
            Op::BatchNorm2d { gamma, beta, running_mean, running_var, .. } => {
                vec![*gamma, *beta, *running_mean, *running_var]
            }
            _ => vec![],
        }
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
}

impl Graph {
    pub fn input_shape(&self) -> &[usize] {
        &self.nodes[0].shape
    }
    /// The main (non-auxiliary) output; builders guarantee exactly one.
    pub fn main_output(&self) -> &GraphOutput {
        self.outputs.iter().find(|o| !o.auxiliary).expect("graph has a main output")
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

/// Configuration of a Conv2d layer, PyTorch's defaults: stride 1, padding 0, dilation 1,
/// groups 1, bias on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvCfg {
    pub out_channels: usize,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
    pub bias: bool,
}

impl ConvCfg {
    pub fn new(out_channels: usize, kernel: usize) -> Self {
        ConvCfg {
            out_channels,
            kernel: (kernel, kernel),
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
            bias: true,
        }
    }
    pub fn kernel_hw(mut self, kh: usize, kw: usize) -> Self {
        self.kernel = (kh, kw);
        self
    }
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }
    pub fn padding_hw(mut self, ph: usize, pw: usize) -> Self {
        self.padding = (ph, pw);
        self
    }
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    pub fn bias(mut self, b: bool) -> Self {
        self.bias = b;
        self
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
        let node = Node { name: "input".into(), op: Op::Input, inputs: vec![], shape: input.to_vec() };
        GraphBuilder { graph: Graph { name: name.into(), nodes: vec![node], params: vec![], outputs: vec![] } }
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

    fn push(&mut self, name: &str, op: Op, inputs: Vec<NodeId>, shape: Vec<usize>) -> NodeId {
        self.graph.nodes.push(Node { name: name.into(), op, inputs, shape });
        self.graph.nodes.len() - 1
    }

    fn chw(&self, id: NodeId, what: &str) -> Result<(usize, usize, usize)> {
        match self.shape(id) {
            &[c, h, w] => Ok((c, h, w)),
            s => Err(Error::shape(format!("{what} needs a [C, H, W] input, got {s:?}"))),
        }
    }

    /// Conv2d with PyTorch's default initialisation (kaiming_uniform(a=sqrt(5)), i.e.
    /// U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias); builders override with set_init.
    pub fn conv2d(&mut self, name: &str, x: NodeId, cfg: ConvCfg) -> Result<NodeId> {
        let (c, h, w) = self.chw(x, name)?;
        let geom = crate::ops::ConvGeom::new(
            1,
            c,
            (h, w),
            cfg.out_channels,
            cfg.kernel,
            cfg.stride,
            cfg.padding,
            cfg.dilation,
            cfg.groups,
        )
        .map_err(|e| Error::shape(format!("layer {name}: {e}")))?;
        let fan_in = (c / cfg.groups) * cfg.kernel.0 * cfg.kernel.1;
        let bound = 1.0 / (fan_in as f64).sqrt();
        let wshape = vec![cfg.out_channels, c / cfg.groups, cfg.kernel.0, cfg.kernel.1];
        let weight = self.param(format!("{name}.weight"), wshape, Init::Uniform { bound }, ParamKind::Weight);
        let bias = cfg
            .bias
            .then(|| self.param(format!("{name}.bias"), vec![cfg.out_channels], Init::Uniform { bound }, ParamKind::Bias));
        let op = Op::Conv2d {
            out_channels: cfg.out_channels,
            kernel: cfg.kernel,
            stride: cfg.stride,
            padding: cfg.padding,
            dilation: cfg.dilation,
            groups: cfg.groups,
            weight,
            bias,
        };
        Ok(self.push(name, op, vec![x], vec![cfg.out_channels, geom.oh, geom.ow]))
    }

    /// BatchNorm2d(eps=1e-5, momentum=0.1 unless given): gamma 1, beta 0, running mean 0, var 1.
    pub fn batch_norm2d(&mut self, name: &str, x: NodeId, eps: f64, momentum: f64) -> Result<NodeId> {
        let (c, _, _) = self.chw(x, name)?;
        let gamma = self.param(format!("{name}.weight"), vec![c], Init::Const(1.0), ParamKind::BnGamma);
        let beta = self.param(format!("{name}.bias"), vec![c], Init::Const(0.0), ParamKind::BnBeta);
        let running_mean = self.param(format!("{name}.running_mean"), vec![c], Init::Const(0.0), ParamKind::BnRunningMean);
        let running_var = self.param(format!("{name}.running_var"), vec![c], Init::Const(1.0), ParamKind::BnRunningVar);
        let shape = self.shape(x).to_vec();
        Ok(self.push(name, Op::BatchNorm2d { eps, momentum, gamma, beta, running_mean, running_var }, vec![x], shape))
    }

    /// Linear with PyTorch's default init; the input is flattened per sample.
    pub fn linear(&mut self, name: &str, x: NodeId, out_features: usize, bias: bool) -> Result<NodeId> {
        let fan_in: usize = self.shape(x).iter().product();
        let bound = 1.0 / (fan_in as f64).sqrt();
        let weight = self.param(format!("{name}.weight"), vec![out_features, fan_in], Init::Uniform { bound }, ParamKind::Weight);
        let bias = bias.then(|| self.param(format!("{name}.bias"), vec![out_features], Init::Uniform { bound }, ParamKind::Bias));
        Ok(self.push(name, Op::Linear { out_features, weight, bias }, vec![x], vec![out_features]))
    }

    pub fn activation(&mut self, name: &str, x: NodeId, kind: Activation) -> NodeId {
        let shape = self.shape(x).to_vec();
        self.push(name, Op::Activation(kind), vec![x], shape)
    }

    pub fn max_pool2d(&mut self, name: &str, x: NodeId, kernel: usize, stride: usize, padding: usize, ceil_mode: bool) -> Result<NodeId> {
        let (c, h, w) = self.chw(x, name)?;
        let g = crate::ops::PoolGeom::new(1, c, (h, w), (kernel, kernel), (stride, stride), (padding, padding), ceil_mode, true)
            .map_err(|e| Error::shape(format!("layer {name}: {e}")))?;
        let op = Op::MaxPool2d { kernel: (kernel, kernel), stride: (stride, stride), padding: (padding, padding), ceil_mode };
        Ok(self.push(name, op, vec![x], vec![c, g.oh, g.ow]))
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
        let (c, h, w) = self.chw(x, name)?;
        let g = crate::ops::PoolGeom::new(1, c, (h, w), (kernel, kernel), (stride, stride), (padding, padding), ceil_mode, count_include_pad)
            .map_err(|e| Error::shape(format!("layer {name}: {e}")))?;
        let op = Op::AvgPool2d {
            kernel: (kernel, kernel),
            stride: (stride, stride),
            padding: (padding, padding),
            ceil_mode,
            count_include_pad,
        };
        Ok(self.push(name, op, vec![x], vec![c, g.oh, g.ow]))
    }

    pub fn adaptive_avg_pool2d(&mut self, name: &str, x: NodeId, output: (usize, usize)) -> Result<NodeId> {
        let (c, _, _) = self.chw(x, name)?;
        if output.0 == 0 || output.1 == 0 {
            return Err(Error::shape(format!("layer {name}: adaptive pooling output must be non-empty")));
        }
        Ok(self.push(name, Op::AdaptiveAvgPool2d { output }, vec![x], vec![c, output.0, output.1]))
    }

    fn same_shape(&self, name: &str, a: NodeId, b: NodeId) -> Result<Vec<usize>> {
        let (sa, sb) = (self.shape(a), self.shape(b));
        if sa != sb {
            return Err(Error::shape(format!("layer {name}: operand shapes {sa:?} and {sb:?} differ")));
        }
        Ok(sa.to_vec())
    }

    pub fn add(&mut self, name: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        let shape = self.same_shape(name, a, b)?;
        Ok(self.push(name, Op::Add, vec![a, b], shape))
    }

    pub fn mul(&mut self, name: &str, a: NodeId, b: NodeId) -> Result<NodeId> {
        let shape = self.same_shape(name, a, b)?;
        Ok(self.push(name, Op::Mul, vec![a, b], shape))
    }

    /// x [C, H, W] * s [C, 1, 1] per sample.
    pub fn mul_channel(&mut self, name: &str, x: NodeId, s: NodeId) -> Result<NodeId> {
        let (c, _, _) = self.chw(x, name)?;
        if self.shape(s) != [c, 1, 1] {
            return Err(Error::shape(format!("layer {name}: gate shape {:?} must be [{c}, 1, 1]", self.shape(s))));
        }
        let shape = self.shape(x).to_vec();
        Ok(self.push(name, Op::MulChannel, vec![x, s], shape))
    }

    pub fn concat(&mut self, name: &str, xs: &[NodeId]) -> Result<NodeId> {
        let (_, h, w) = self.chw(xs[0], name)?;
        let mut c = 0;
        for &x in xs {
            let (cx, hx, wx) = self.chw(x, name)?;
            if (hx, wx) != (h, w) {
                return Err(Error::shape(format!("layer {name}: concat inputs differ in spatial size ({h}x{w} vs {hx}x{wx})")));
            }
            c += cx;
        }
        Ok(self.push(name, Op::Concat, xs.to_vec(), vec![c, h, w]))
    }

    pub fn slice_channels(&mut self, name: &str, x: NodeId, start: usize, len: usize) -> Result<NodeId> {
        let (c, h, w) = self.chw(x, name)?;
        if len == 0 || start + len > c {
            return Err(Error::shape(format!("layer {name}: channels {start}..{} outside 0..{c}", start + len)));
        }
        Ok(self.push(name, Op::SliceChannels { start, len }, vec![x], vec![len, h, w]))
    }

    pub fn channel_shuffle(&mut self, name: &str, x: NodeId, groups: usize) -> Result<NodeId> {
        let (c, _, _) = self.chw(x, name)?;
        if groups == 0 || c % groups != 0 {
            return Err(Error::shape(format!("layer {name}: {groups} groups do not divide {c} channels")));
        }
        let shape = self.shape(x).to_vec();
        Ok(self.push(name, Op::ChannelShuffle { groups }, vec![x], shape))
    }

    pub fn dropout(&mut self, name: &str, x: NodeId, p: f64) -> Result<NodeId> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::config(format!("layer {name}: dropout probability {p} must be in [0, 1)")));
        }
        let shape = self.shape(x).to_vec();
        Ok(self.push(name, Op::Dropout { p }, vec![x], shape))
    }

    pub fn flatten(&mut self, name: &str, x: NodeId) -> NodeId {
        let n = self.shape(x).iter().product();
        self.push(name, Op::Flatten, vec![x], vec![n])
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
