//! MobileNetV2 as torchvision: inverted residual blocks (1x1 expand - 3x3 depthwise - 1x1 linear
//! projection, ReLU6), channel counts rounded to multiples of 8 after the width multiplier;
//! Kaiming fan-out convs, BN 1/0, N(0, 0.01) classifier with zero bias.

use super::layers::{conv, conv_bn, make_divisible, pooled_classifier, ConvInit, LinearInit, UnitNames};
use super::ModelOptions;
use crate::error::Result;
use crate::graph::{ConvCfg, Graph, GraphBuilder, NodeId};
use crate::ops::Activation;

/// (expansion t, output channels c, repeats n, first stride s), the paper's table 2.
const SETTINGS: [(usize, usize, usize, usize); 7] =
    [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)];

const RELU6: Option<Activation> = Some(Activation::Relu6);

fn inverted_residual(b: &mut GraphBuilder, prefix: &str, x: NodeId, out: usize, stride: usize, expand: usize) -> Result<NodeId> {
    let inp = b.channels(x);
    let hidden = inp * expand;
    let mut y = x;
    let mut index = 0;
    if expand != 1 {
        let names = UnitNames::sequential(&format!("{prefix}.conv.0"));
        y = conv_bn(b, &names, y, ConvCfg::new(hidden, 1), ConvInit::KaimingFanOut, 1e-5, RELU6)?;
        index += 1;
    }
    let names = UnitNames::sequential(&format!("{prefix}.conv.{index}"));
    let depthwise = ConvCfg::new(hidden, 3).stride(stride).padding(1).groups(hidden);
    y = conv_bn(b, &names, y, depthwise, ConvInit::KaimingFanOut, 1e-5, RELU6)?;
    let y = conv(b, &format!("{prefix}.conv.{}", index + 1), y, ConvCfg::new(out, 1).bias(false), ConvInit::KaimingFanOut)?;
    let y = b.batch_norm2d(&format!("{prefix}.conv.{}", index + 2), y, 1e-5, 0.1)?;
    if stride == 1 && inp == out {
        b.add(&format!("{prefix}.add"), x, y)
    } else {
        Ok(y)
    }
}

pub fn mobilenet_v2(opts: &ModelOptions) -> Result<Graph> {
    let mut b = GraphBuilder::new("mobilenet_v2", &opts.input);
    let scale = opts.width_mult / opts.width_divisor as f64;
    let channels = |c: usize| make_divisible(c as f64 * scale, 8);
    let stem_stride = if opts.cifar_stem { 1 } else { 2 };
    let stem = ConvCfg::new(channels(32), 3).stride(stem_stride).padding(1);
    let input = b.input();
    let mut x = conv_bn(&mut b, &UnitNames::sequential("features.0"), input, stem, ConvInit::KaimingFanOut, 1e-5, RELU6)?;
    let mut index = 1;
    for (t, c, n, s) in SETTINGS {
        for i in 0..n {
            let stride = if i == 0 { s } else { 1 };
            x = inverted_residual(&mut b, &format!("features.{index}"), x, channels(c), stride, t)?;
            index += 1;
        }
    }
    // The last conv never narrows below 1280 (torchvision: 1280 * max(1, width_mult)).
    let last = make_divisible(1280.0 * opts.width_mult.max(1.0) / opts.width_divisor as f64, 8);
    let names = UnitNames::sequential(&format!("features.{index}"));
    let x = conv_bn(&mut b, &names, x, ConvCfg::new(last, 1), ConvInit::KaimingFanOut, 1e-5, RELU6)?;
    let dropout = Some(("classifier.0", 0.2));
    let logits = pooled_classifier(&mut b, x, "avgpool", dropout, "classifier.1", opts.classes, LinearInit::Normal(0.01))?;
    b.output(logits, 1.0, false);
    b.finish()
}
