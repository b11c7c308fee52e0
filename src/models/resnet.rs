//! ResNet-18/34 (basic blocks) and ResNet-50 (bottlenecks, stride on the 3x3 conv as torchvision's
//! v1.5), with torchvision's names and initialisation (Kaiming fan-out convs, BN 1/0, default fc).

use super::layers::{conv_bn, pooled_classifier, ConvInit, LinearInit, UnitNames};
use super::ModelOptions;
use crate::error::Result;
use crate::graph::{ConvCfg, Graph, GraphBuilder, NodeId};
use crate::ops::Activation;

#[derive(Clone, Copy, PartialEq)]
enum Block {
    Basic,
    Bottleneck,
}

impl Block {
    fn expansion(self) -> usize {
        match self {
            Block::Basic => 1,
            Block::Bottleneck => 4,
        }
    }
}

fn unit(prefix: &str, n: usize) -> UnitNames {
    UnitNames { conv: format!("{prefix}.conv{n}"), bn: format!("{prefix}.bn{n}"), act: format!("{prefix}.relu{n}") }
}

/// One residual block; `planes` is the (already width-reduced) inner width.
fn block(b: &mut GraphBuilder, prefix: &str, x: NodeId, kind: Block, planes: usize, stride: usize) -> Result<NodeId> {
    let relu = Some(Activation::Relu);
    let out_channels = planes * kind.expansion();
    let body = match kind {
        Block::Basic => {
            let y = conv_bn(b, &unit(prefix, 1), x, ConvCfg::new(planes, 3).stride(stride).padding(1), ConvInit::KaimingFanOut, 1e-5, relu)?;
            conv_bn(b, &unit(prefix, 2), y, ConvCfg::new(planes, 3).padding(1), ConvInit::KaimingFanOut, 1e-5, None)?
        }
        Block::Bottleneck => {
            let y = conv_bn(b, &unit(prefix, 1), x, ConvCfg::new(planes, 1), ConvInit::KaimingFanOut, 1e-5, relu)?;
            let y = conv_bn(b, &unit(prefix, 2), y, ConvCfg::new(planes, 3).stride(stride).padding(1), ConvInit::KaimingFanOut, 1e-5, relu)?;
            conv_bn(b, &unit(prefix, 3), y, ConvCfg::new(out_channels, 1), ConvInit::KaimingFanOut, 1e-5, None)?
        }
    };
    let shortcut = if stride != 1 || b.channels(x) != out_channels {
        let names = UnitNames::sequential(&format!("{prefix}.downsample"));
        conv_bn(b, &names, x, ConvCfg::new(out_channels, 1).stride(stride), ConvInit::KaimingFanOut, 1e-5, None)?
    } else {
        x
    };
    let sum = b.add(&format!("{prefix}.add"), body, shortcut)?;
    Ok(b.activation(&format!("{prefix}.relu"), sum, Activation::Relu))
}

fn resnet(name: &str, kind: Block, layers: [usize; 4], opts: &ModelOptions) -> Result<Graph> {
    let mut b = GraphBuilder::new(name, &opts.input);
    let stem = UnitNames { conv: "conv1".into(), bn: "bn1".into(), act: "relu".into() };
    let stem_cfg = if opts.cifar_stem {
        ConvCfg::new(opts.width(64), 3).padding(1)
    } else {
        ConvCfg::new(opts.width(64), 7).stride(2).padding(3)
    };
    let input = b.input();
    let mut x = conv_bn(&mut b, &stem, input, stem_cfg, ConvInit::KaimingFanOut, 1e-5, Some(Activation::Relu))?;
    if !opts.cifar_stem {
        x = b.max_pool2d("maxpool", x, 3, 2, 1, false)?;
    }
    for (stage, (&blocks, planes)) in layers.iter().zip([64, 128, 256, 512]).enumerate() {
        for i in 0..blocks {
            let stride = if stage > 0 && i == 0 { 2 } else { 1 };
            x = block(&mut b, &format!("layer{}.{i}", stage + 1), x, kind, opts.width(planes), stride)?;
        }
    }
    let logits = pooled_classifier(&mut b, x, "avgpool", None, "fc", opts.classes, LinearInit::Default)?;
    b.output(logits, 1.0, false);
    b.finish()
}

pub fn resnet18(opts: &ModelOptions) -> Result<Graph> {
    resnet("resnet18", Block::Basic, [2, 2, 2, 2], opts)
}
pub fn resnet34(opts: &ModelOptions) -> Result<Graph> {
    resnet("resnet34", Block::Basic, [3, 4, 6, 3], opts)
}
pub fn resnet50(opts: &ModelOptions) -> Result<Graph> {
    resnet("resnet50", Block::Bottleneck, [3, 4, 6, 3], opts)
}
