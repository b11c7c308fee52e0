//! ShuffleNetV2 0.5x and 1.0x as torchvision: each unit splits its channels (stride 1) or feeds
//! both branches (stride 2), concatenates and shuffles the two halves. PyTorch's default
//! initialisation throughout (torchvision sets none for this family).

use super::layers::{conv_bn, pooled_classifier, ConvInit, LinearInit, UnitNames};
use super::ModelOptions;
use crate::error::Result;
use crate::graph::{ConvCfg, Graph, GraphBuilder, NodeId};
use crate::ops::Activation;

const RELU: Option<Activation> = Some(Activation::Relu);

/// Conv, BN and optional ReLU named as positions `first`, `first + 1`, `first + 2` of a Sequential.
fn seq_unit(b: &mut GraphBuilder, seq: &str, first: usize, x: NodeId, cfg: ConvCfg, act: Option<Activation>) -> Result<NodeId> {
    let names = UnitNames {
        conv: format!("{seq}.{first}"),
        bn: format!("{seq}.{}", first + 1),
        act: format!("{seq}.{}", first + 2),
    };
    conv_bn(b, &names, x, cfg, ConvInit::Default, 1e-5, act)
}

/// 1x1 - BN - ReLU, 3x3 depthwise (stride) - BN, 1x1 - BN - ReLU.
fn branch2(b: &mut GraphBuilder, prefix: &str, x: NodeId, width: usize, stride: usize) -> Result<NodeId> {
    let seq = format!("{prefix}.branch2");
    let y = seq_unit(b, &seq, 0, x, ConvCfg::new(width, 1), RELU)?;
    let y = seq_unit(b, &seq, 3, y, ConvCfg::new(width, 3).stride(stride).padding(1).groups(width), None)?;
    seq_unit(b, &seq, 5, y, ConvCfg::new(width, 1), RELU)
}

fn unit(b: &mut GraphBuilder, prefix: &str, x: NodeId, out: usize, stride: usize) -> Result<NodeId> {
    let half = out / 2;
    let (left, right) = if stride == 1 {
        let inp = b.channels(x);
        let left = b.slice_channels(&format!("{prefix}.split0"), x, 0, inp / 2)?;
        let right = b.slice_channels(&format!("{prefix}.split1"), x, inp / 2, inp - inp / 2)?;
        (left, branch2(b, prefix, right, half, 1)?)
    } else {
        let inp = b.channels(x);
        let seq = format!("{prefix}.branch1");
        let y = seq_unit(b, &seq, 0, x, ConvCfg::new(inp, 3).stride(stride).padding(1).groups(inp), None)?;
        let left = seq_unit(b, &seq, 2, y, ConvCfg::new(half, 1), RELU)?;
        (left, branch2(b, prefix, x, half, stride)?)
    };
    let joined = b.concat(&format!("{prefix}.concat"), &[left, right])?;
    b.channel_shuffle(&format!("{prefix}.shuffle"), joined, 2)
}

fn shufflenet_v2(name: &str, stage_channels: [usize; 5], opts: &ModelOptions) -> Result<Graph> {
    let mut b = GraphBuilder::new(name, &opts.input);
    // The branches split channels in halves: every stage width must stay even.
    let width = |c: usize| (opts.width(c) / 2 * 2).max(2);
    let stem_cfg = if opts.cifar_stem { ConvCfg::new(width(stage_channels[0]), 3).padding(1) } else {
        ConvCfg::new(width(stage_channels[0]), 3).stride(2).padding(1)
    };
    let input = b.input();
    let mut x = seq_unit(&mut b, "conv1", 0, input, stem_cfg, RELU)?;
    if !opts.cifar_stem {
        x = b.max_pool2d("maxpool", x, 3, 2, 1, false)?;
    }
    for (stage, repeats) in [4, 8, 4].into_iter().enumerate() {
        let out = width(stage_channels[stage + 1]);
        for i in 0..repeats {
            x = unit(&mut b, &format!("stage{}.{i}", stage + 2), x, out, if i == 0 { 2 } else { 1 })?;
        }
    }
    let x = seq_unit(&mut b, "conv5", 0, x, ConvCfg::new(opts.width(stage_channels[4]), 1), RELU)?;
    let logits = pooled_classifier(&mut b, x, "mean", None, "fc", opts.classes, LinearInit::Default)?;
    b.output(logits, 1.0, false);
    b.finish()
}

pub fn shufflenet_v2_x0_5(opts: &ModelOptions) -> Result<Graph> {
    shufflenet_v2("shufflenet_v2_x0_5", [24, 48, 96, 192, 1024], opts)
}
pub fn shufflenet_v2_x1_0(opts: &ModelOptions) -> Result<Graph> {
    shufflenet_v2("shufflenet_v2_x1_0", [24, 116, 232, 464, 1024], opts)
}
