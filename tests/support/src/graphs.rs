//! Tiny graphs and helpers shared by the executor tests.

use ferronet::graph::{ConvCfg, Graph, GraphBuilder, NodeId};
use ferronet::ops::Activation;
use ferronet::rng::Rng;

/// Global average pool, flatten and a linear classifier: the head every test graph ends with.
fn head(b: &mut GraphBuilder, x: NodeId, classes: usize) -> NodeId {
    let pooled = b.adaptive_avg_pool2d("avgpool", x, (1, 1)).unwrap();
    let flat = b.flatten("flatten", pooled);
    b.linear("fc", flat, classes, true).unwrap()
}

/// conv(3x3, pad 1) - silu - conv(3x3, stride 2) - flatten - linear; input [2, 6, 6].
pub fn two_conv() -> Graph {
    let mut b = GraphBuilder::new("two_conv", &[2, 6, 6]);
    let c1 = b.conv2d("conv1", 0, ConvCfg::new(3, 3).padding(1)).unwrap();
    let a1 = b.activation("act1", c1, Activation::Silu);
    let c2 = b.conv2d("conv2", a1, ConvCfg::new(4, 3).stride(2).padding(1)).unwrap();
    let flat = b.flatten("flatten", c2);
    let fc = b.linear("fc", flat, 3, true).unwrap();
    b.output(fc, 1.0, false);
    b.finish().unwrap()
}

/// ResNet's basic block: conv-BN-relu-conv-BN + identity, relu; input [4, 5, 5].
pub fn residual_block() -> Graph {
    let mut b = GraphBuilder::new("residual", &[4, 5, 5]);
    let c1 = b.conv2d("conv1", 0, ConvCfg::new(4, 3).padding(1).bias(false)).unwrap();
    let n1 = b.batch_norm2d("bn1", c1, 1e-5, 0.1).unwrap();
    let r1 = b.activation("relu1", n1, Activation::Relu);
    let c2 = b.conv2d("conv2", r1, ConvCfg::new(4, 3).padding(1).bias(false)).unwrap();
    let n2 = b.batch_norm2d("bn2", c2, 1e-5, 0.1).unwrap();
    let sum = b.add("add", n2, 0).unwrap();
    let r2 = b.activation("relu2", sum, Activation::Relu);
    let fc = head(&mut b, r2, 3);
    b.output(fc, 1.0, false);
    b.finish().unwrap()
}

/// MobileNetV2's inverted residual (expansion 2): 1x1 expand-BN-relu6, 3x3 depthwise-BN-relu6,
/// 1x1 project-BN, + identity; input [4, 5, 5].
pub fn inverted_residual() -> Graph {
    let mut b = GraphBuilder::new("inverted_residual", &[4, 5, 5]);
    let e = b.conv2d("expand", 0, ConvCfg::new(8, 1).bias(false)).unwrap();
    let e = b.batch_norm2d("expand_bn", e, 1e-5, 0.1).unwrap();
    let e = b.activation("expand_relu6", e, Activation::Relu6);
    let d = b.conv2d("depthwise", e, ConvCfg::new(8, 3).padding(1).groups(8).bias(false)).unwrap();
    let d = b.batch_norm2d("depthwise_bn", d, 1e-5, 0.1).unwrap();
    let d = b.activation("depthwise_relu6", d, Activation::Relu6);
    let p = b.conv2d("project", d, ConvCfg::new(4, 1).bias(false)).unwrap();
    let p = b.batch_norm2d("project_bn", p, 1e-5, 0.1).unwrap();
    let sum = b.add("add", p, 0).unwrap();
    let fc = head(&mut b, sum, 3);
    b.output(fc, 1.0, false);
    b.finish().unwrap()
}

/// Every remaining op in one graph: ShuffleNet's split (with a gap)/concat/shuffle, squeeze-excitation gating,
/// elementwise mul, max/avg pooling, dropout and an auxiliary head; input [4, 6, 6].
pub fn op_zoo() -> Graph {
    let mut b = GraphBuilder::new("op_zoo", &[4, 6, 6]);
    // Channel 1 is read by neither slice: its gradient is a zero pad.
    let left = b.slice_channels("split_left", 0, 0, 1).unwrap();
    let right = b.slice_channels("split_right", 0, 2, 2).unwrap();
    let conv = b.conv2d("branch_conv", right, ConvCfg::new(2, 3).padding(1)).unwrap();
    let act = b.activation("branch_hswish", conv, Activation::Hardswish);
    let joined = b.concat("concat", &[left, act]).unwrap();
    let shuffled = b.channel_shuffle("shuffle", joined, 3).unwrap();
    let squeeze = b.adaptive_avg_pool2d("se_pool", shuffled, (1, 1)).unwrap();
    let gate_conv = b.conv2d("se_fc", squeeze, ConvCfg::new(3, 1)).unwrap();
    let gate = b.activation("se_gate", gate_conv, Activation::Sigmoid);
    let gated = b.mul_channel("se_scale", shuffled, gate).unwrap();
    let squared = b.mul("square", gated, shuffled).unwrap();
    let pooled = b.max_pool2d("maxpool", squared, 3, 2, 1, true).unwrap();
    let avg = b.avg_pool2d("avgpool2", pooled, 2, 1, 0, false, false).unwrap();
    let dropped = b.dropout("dropout", avg, 0.3).unwrap();
    let flat = b.flatten("flatten", dropped);
    let fc = b.linear("fc", flat, 3, true).unwrap();
    let aux_flat = b.flatten("aux_flatten", pooled);
    let aux = b.linear("aux_fc", aux_flat, 3, false).unwrap();
    b.output(fc, 1.0, false);
    b.output(aux, 0.3, true);
    b.finish().unwrap()
}

/// n samples of the graph's input drawn from N(0, 1).
pub fn batch(graph: &Graph, n: usize, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    let len = n * graph.input_shape().iter().product::<usize>();
    (0..len).map(|_| rng.normal()).collect()
}

pub fn labels(n: usize, classes: usize) -> Vec<u32> {
    (0..n).map(|i| (i % classes) as u32).collect()
}

/// `depth` conv-BN-relu layers of 8 channels on [3, 8, 8] and a classifier: long enough for
/// liveness to matter.
pub fn conv_chain(depth: usize) -> Graph {
    let mut b = GraphBuilder::new("conv_chain", &[3, 8, 8]);
    let mut x = 0;
    for i in 0..depth {
        let c = b.conv2d(&format!("conv{i}"), x, ConvCfg::new(8, 3).padding(1).bias(false)).unwrap();
        let n = b.batch_norm2d(&format!("bn{i}"), c, 1e-5, 0.1).unwrap();
        x = b.activation(&format!("relu{i}"), n, Activation::Relu);
    }
    let fc = head(&mut b, x, 5);
    b.output(fc, 1.0, false);
    b.finish().unwrap()
}
