//! EfficientNet-B0 as torchvision: MBConv blocks (1x1 expand, depthwise kxk, squeeze-excitation,
//! then 1x1 projection, SiLU), Kaiming fan-out convs with zero bias, BN 1/0, and a classifier
//! drawn from U(+-1/sqrt(classes)) with zero bias. Stochastic depth on the residual branches is
//! left out: the graph has no op for it, and it only acts during training.

use super::layers::{conv, conv_bn, make_divisible, pooled_classifier, ConvInit, LinearInit, UnitNames};
use super::ModelOptions;
use crate::error::Result;
use crate::graph::{ConvCfg, Graph, GraphBuilder, NodeId};
use crate::ops::Activation;

const SILU: Option<Activation> = Some(Activation::Silu);

/// (expansion, kernel, first stride, input channels, output channels, layers) of B0's stages.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];

/// Global pool, 1x1 conv to `squeeze` - SiLU, 1x1 conv back - sigmoid, scale the channels.
fn squeeze_excitation(b: &mut GraphBuilder, p: &str, x: NodeId, squeeze: usize) -> Result<NodeId> {
    let channels = b.channels(x);
    let s = b.adaptive_avg_pool2d(&format!("{p}.avgpool"), x, (1, 1))?;
    let s = conv(b, &format!("{p}.fc1"), s, ConvCfg::new(squeeze, 1), ConvInit::KaimingFanOut)?;
    let s = b.activation(&format!("{p}.activation"), s, Activation::Silu);
    let s = conv(b, &format!("{p}.fc2"), s, ConvCfg::new(channels, 1), ConvInit::KaimingFanOut)?;
    let s = b.activation(&format!("{p}.scale_activation"), s, Activation::Sigmoid);
    b.mul_channel(&format!("{p}.scale"), x, s)
}

fn mbconv(b: &mut GraphBuilder, p: &str, x: NodeId, expand: usize, kernel: usize, stride: usize, out: usize) -> Result<NodeId> {
    let inp = b.channels(x);
    let hidden = make_divisible((inp * expand) as f64, 8);
    let mut index = 0;
    let mut next = || {
        index += 1;
        format!("{p}.block.{}", index - 1)
    };
    let mut y = x;
    if expand != 1 {
        y = conv_bn(b, &UnitNames::sequential(&next()), y, ConvCfg::new(hidden, 1), ConvInit::KaimingFanOut, 1e-5, SILU)?;
    }
    let depthwise = ConvCfg::new(hidden, kernel).stride(stride).padding((kernel - 1) / 2).groups(hidden);
    y = conv_bn(b, &UnitNames::sequential(&next()), y, depthwise, ConvInit::KaimingFanOut, 1e-5, SILU)?;
    y = squeeze_excitation(b, &next(), y, (inp / 4).max(1))?;
    y = conv_bn(b, &UnitNames::sequential(&next()), y, ConvCfg::new(out, 1), ConvInit::KaimingFanOut, 1e-5, None)?;
    if stride == 1 && inp == out {
        b.add(&format!("{p}.add"), y, x)
    } else {
        Ok(y)
    }
}

pub fn efficientnet_b0(opts: &ModelOptions) -> Result<Graph> {
    let mut graph = GraphBuilder::new("efficientnet_b0", &opts.input);
    let b = &mut graph;
    let channels = |c: usize| make_divisible(c as f64 / opts.width_divisor as f64, 8);
    let x = b.input();
    let stem = ConvCfg::new(channels(STAGES[0].3), 3).stride(2).padding(1);
    let mut x = conv_bn(b, &UnitNames::sequential("features.0"), x, stem, ConvInit::KaimingFanOut, 1e-5, SILU)?;
    for (stage, (expand, kernel, stride, _, out, layers)) in STAGES.into_iter().enumerate() {
        for i in 0..layers {
            let s = if i == 0 { stride } else { 1 };
            x = mbconv(b, &format!("features.{}.{i}", stage + 1), x, expand, kernel, s, channels(out))?;
        }
    }
    let head = ConvCfg::new(channels(1280), 1);
    let x = conv_bn(b, &UnitNames::sequential("features.8"), x, head, ConvInit::KaimingFanOut, 1e-5, SILU)?;
    let dropout = Some(("classifier.0", 0.2));
    let logits = pooled_classifier(b, x, "avgpool", dropout, "classifier.1", opts.classes, LinearInit::UniformByOutputs)?;
    b.output(logits, 1.0, false);
    graph.finish()
}
