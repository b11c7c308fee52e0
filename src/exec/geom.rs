//! Op geometry for one node at a given batch size, derived from the graph's per-sample shapes.
//! Forward, backward and the memory planner all take their sizes from here.

use crate::error::{Error, Result};
use crate::graph::{Graph, NodeId, Op};
use crate::ops::{AdaptivePoolGeom, BatchNormGeom, ChannelBroadcast, ConvGeom, LinearGeom, PoolGeom};

/// The per-sample [C, H, W] of node `id`'s output.
pub fn chw(graph: &Graph, id: NodeId) -> Result<(usize, usize, usize)> {
    match graph.nodes[id].shape.as_slice() {
        &[c, h, w] => Ok((c, h, w)),
        s => Err(Error::shape(format!("layer {} expects a [C, H, W] input, got {s:?}", graph.nodes[id].name))),
    }
}

/// Elements per sample of node `id`'s output.
pub fn numel(graph: &Graph, id: NodeId) -> usize {
    graph.nodes[id].shape.iter().product()
}

/// The node's first input (every op but Input has one).
fn input0(graph: &Graph, id: NodeId) -> NodeId {
    graph.nodes[id].inputs[0]
}

pub fn conv(graph: &Graph, id: NodeId, n: usize) -> Result<ConvGeom> {
    let Op::Conv2d { out_channels, kernel, stride, padding, dilation, groups, .. } = graph.nodes[id].op else {
        unreachable!("conv geometry of a non-conv node")
    };
    let (c, h, w) = chw(graph, input0(graph, id))?;
    ConvGeom::new(n, c, (h, w), out_channels, kernel, stride, padding, dilation, groups)
}

pub fn linear(graph: &Graph, id: NodeId, n: usize) -> Result<LinearGeom> {
    LinearGeom::new(n, numel(graph, input0(graph, id)), numel(graph, id))
}

pub fn batch_norm(graph: &Graph, id: NodeId, n: usize) -> Result<BatchNormGeom> {
    let Op::BatchNorm2d { eps, .. } = graph.nodes[id].op else { unreachable!("bn geometry of a non-bn node") };
    let (c, h, w) = chw(graph, input0(graph, id))?;
    BatchNormGeom::new(n, c, h * w, eps)
}

pub fn pool(graph: &Graph, id: NodeId, n: usize) -> Result<PoolGeom> {
    let (c, h, w) = chw(graph, input0(graph, id))?;
    match graph.nodes[id].op {
        Op::MaxPool2d { kernel, stride, padding, ceil_mode } => {
            PoolGeom::new(n, c, (h, w), kernel, stride, padding, ceil_mode, true)
        }
        Op::AvgPool2d { kernel, stride, padding, ceil_mode, count_include_pad } => {
            PoolGeom::new(n, c, (h, w), kernel, stride, padding, ceil_mode, count_include_pad)
        }
        _ => unreachable!("pool geometry of a non-pool node"),
    }
}

pub fn adaptive_pool(graph: &Graph, id: NodeId, n: usize) -> Result<AdaptivePoolGeom> {
    let Op::AdaptiveAvgPool2d { output } = graph.nodes[id].op else {
        unreachable!("adaptive pool geometry of another node")
    };
    let (c, h, w) = chw(graph, input0(graph, id))?;
    AdaptivePoolGeom::new(n, c, (h, w), output)
}

/// Squeeze-excitation gating: x [N, C, HW] times a per-sample [N, C] gate.
pub fn mul_channel(graph: &Graph, id: NodeId, n: usize) -> Result<ChannelBroadcast> {
    let (c, h, w) = chw(graph, input0(graph, id))?;
    Ok(ChannelBroadcast { n, c, hw: h * w, per_sample: true })
}

/// Channel counts of each input of a concat and the shared H*W.
pub fn concat(graph: &Graph, id: NodeId) -> Result<(Vec<usize>, usize)> {
    let (_, h, w) = chw(graph, id)?;
    let channels = graph.nodes[id].inputs.iter().map(|&j| chw(graph, j).map(|(c, _, _)| c)).collect::<Result<_>>()?;
    Ok((channels, h * w))
}
