//! GoogLeNet (Inception v1) as torchvision, with both auxiliary heads (after inception4a and
//! inception4d, loss weight 0.3 each) unless `aux_logits` is off. Convs are `BasicConv2d` (bias-free, BN eps 0.001, ReLU);
//! conv and dense weights draw from a truncated normal of std 0.01, dense biases keep PyTorch's
//! default. torchvision's "5x5" branch really uses a 3x3 kernel; so does this one.

use super::layers::{conv_bn, linear, pooled_classifier, ConvInit, LinearInit, UnitNames};
use super::ModelOptions;
use crate::error::Result;
use crate::graph::{ConvCfg, Graph, GraphBuilder, NodeId};
use crate::ops::Activation;

const STD: f64 = 0.01;

fn basic(b: &mut GraphBuilder, opts: &ModelOptions, prefix: &str, x: NodeId, out: usize, k: usize, p: usize) -> Result<NodeId> {
    let cfg = ConvCfg::new(opts.width(out), k).padding(p);
    conv_bn(b, &UnitNames::basic(prefix), x, cfg, ConvInit::TruncNormal(STD), 1e-3, Some(Activation::Relu))
}

/// Widths: 1x1; 3x3 reduce, 3x3; "5x5" reduce, "5x5"; pool projection.
type InceptionWidths = (usize, usize, usize, usize, usize, usize);

fn inception(b: &mut GraphBuilder, opts: &ModelOptions, p: &str, x: NodeId, w: InceptionWidths) -> Result<NodeId> {
    let (c1, c3r, c3, c5r, c5, pool) = w;
    let b1 = basic(b, opts, &format!("{p}.branch1"), x, c1, 1, 0)?;
    let b2 = basic(b, opts, &format!("{p}.branch2.0"), x, c3r, 1, 0)?;
    let b2 = basic(b, opts, &format!("{p}.branch2.1"), b2, c3, 3, 1)?;
    let b3 = basic(b, opts, &format!("{p}.branch3.0"), x, c5r, 1, 0)?;
    let b3 = basic(b, opts, &format!("{p}.branch3.1"), b3, c5, 3, 1)?;
    let b4 = b.max_pool2d(&format!("{p}.branch4.0"), x, 3, 1, 1, true)?;
    let b4 = basic(b, opts, &format!("{p}.branch4.1"), b4, pool, 1, 0)?;
    b.concat(&format!("{p}.concat"), &[b1, b2, b3, b4])
}

/// Adaptive 4x4 average pool, 1x1 conv 128, fc 1024 - ReLU - dropout 0.7 - fc N.
fn aux(b: &mut GraphBuilder, opts: &ModelOptions, p: &str, x: NodeId) -> Result<NodeId> {
    let y = b.adaptive_avg_pool2d(&format!("{p}.avgpool"), x, (4, 4))?;
    let y = basic(b, opts, &format!("{p}.conv"), y, 128, 1, 0)?;
    let y = b.flatten(&format!("{p}.flatten"), y);
    let y = linear(b, &format!("{p}.fc1"), y, opts.width(1024), LinearInit::TruncNormal(STD))?;
    let y = b.activation(&format!("{p}.relu"), y, Activation::Relu);
    let y = b.dropout(&format!("{p}.dropout"), y, 0.7)?;
    linear(b, &format!("{p}.fc2"), y, opts.classes, LinearInit::TruncNormal(STD))
}

pub fn googlenet(opts: &ModelOptions) -> Result<Graph> {
    let mut graph = GraphBuilder::new("googlenet", &opts.input);
    let b = &mut graph;
    let x = b.input();
    let cfg = ConvCfg::new(opts.width(64), 7).stride(2).padding(3);
    let x = conv_bn(b, &UnitNames::basic("conv1"), x, cfg, ConvInit::TruncNormal(STD), 1e-3, Some(Activation::Relu))?;
    let x = b.max_pool2d("maxpool1", x, 3, 2, 0, true)?;
    let x = basic(b, opts, "conv2", x, 64, 1, 0)?;
    let x = basic(b, opts, "conv3", x, 192, 3, 1)?;
    let x = b.max_pool2d("maxpool2", x, 3, 2, 0, true)?;
    let x = inception(b, opts, "inception3a", x, (64, 96, 128, 16, 32, 32))?;
    let x = inception(b, opts, "inception3b", x, (128, 128, 192, 32, 96, 64))?;
    let x = b.max_pool2d("maxpool3", x, 3, 2, 0, true)?;
    let x = inception(b, opts, "inception4a", x, (192, 96, 208, 16, 48, 64))?;
    let aux1 = if opts.aux_logits { Some(aux(b, opts, "aux1", x)?) } else { None };
    let x = inception(b, opts, "inception4b", x, (160, 112, 224, 24, 64, 64))?;
    let x = inception(b, opts, "inception4c", x, (128, 128, 256, 24, 64, 64))?;
    let x = inception(b, opts, "inception4d", x, (112, 144, 288, 32, 64, 64))?;
    let aux2 = if opts.aux_logits { Some(aux(b, opts, "aux2", x)?) } else { None };
    let x = inception(b, opts, "inception4e", x, (256, 160, 320, 32, 128, 128))?;
    let x = b.max_pool2d("maxpool4", x, 2, 2, 0, true)?;
    let x = inception(b, opts, "inception5a", x, (256, 160, 320, 32, 128, 128))?;
    let x = inception(b, opts, "inception5b", x, (384, 192, 384, 48, 128, 128))?;
    let logits = pooled_classifier(b, x, "avgpool", Some(("dropout", 0.2)), "fc", opts.classes, LinearInit::TruncNormal(STD))?;
    b.output(logits, 1.0, false);
    for aux in [aux1, aux2].into_iter().flatten() {
        b.output(aux, 0.3, true);
    }
    graph.finish()
}
