//! AlexNet: torchvision's single-tower version, and the batch-normalised variant of the seed study.

use super::layers::{conv, linear, ConvInit, LinearInit};
use super::ModelOptions;
use crate::error::Result;
use crate::graph::{ConvCfg, Graph, GraphBuilder, NodeId};
use crate::ops::Activation;

/// Dropout 0.5, dense, ReLU, dropout 0.5, dense, ReLU, dense N: torchvision's classifier
/// (`classifier.1`, `classifier.4`, `classifier.6`), PyTorch's default initialisation.
fn classifier(b: &mut GraphBuilder, x: NodeId, hidden: usize, classes: usize) -> Result<NodeId> {
    let x = b.flatten("flatten", x);
    let x = b.dropout("classifier.0", x, 0.5)?;
    let x = linear(b, "classifier.1", x, hidden, LinearInit::Default)?;
    let x = b.activation("classifier.2", x, Activation::Relu);
    let x = b.dropout("classifier.3", x, 0.5)?;
    let x = linear(b, "classifier.4", x, hidden, LinearInit::Default)?;
    let x = b.activation("classifier.5", x, Activation::Relu);
    linear(b, "classifier.6", x, classes, LinearInit::Default)
}

/// torchvision's AlexNet: 64-192-384-256-256 convs, adaptive 6x6 average pool, 4096-4096 dense.
pub fn alexnet(opts: &ModelOptions) -> Result<Graph> {
    let mut b = GraphBuilder::new("alexnet", &opts.input);
    let w = |c| opts.width(c);
    let relu = |b: &mut GraphBuilder, i: usize, x| b.activation(&format!("features.{i}"), x, Activation::Relu);
    let input = b.input();
    let x = conv(&mut b, "features.0", input, ConvCfg::new(w(64), 11).stride(4).padding(2), ConvInit::Default)?;
    let x = relu(&mut b, 1, x);
    let x = b.max_pool2d("features.2", x, 3, 2, 0, false)?;
    let x = conv(&mut b, "features.3", x, ConvCfg::new(w(192), 5).padding(2), ConvInit::Default)?;
    let x = relu(&mut b, 4, x);
    let x = b.max_pool2d("features.5", x, 3, 2, 0, false)?;
    let x = conv(&mut b, "features.6", x, ConvCfg::new(w(384), 3).padding(1), ConvInit::Default)?;
    let x = relu(&mut b, 7, x);
    let x = conv(&mut b, "features.8", x, ConvCfg::new(w(256), 3).padding(1), ConvInit::Default)?;
    let x = relu(&mut b, 9, x);
    let x = conv(&mut b, "features.10", x, ConvCfg::new(w(256), 3).padding(1), ConvInit::Default)?;
    let x = relu(&mut b, 11, x);
    let x = b.max_pool2d("features.12", x, 3, 2, 0, false)?;
    let x = b.adaptive_avg_pool2d("avgpool", x, (6, 6))?;
    let logits = classifier(&mut b, x, w(4096), opts.classes)?;
    b.output(logits, 1.0, false);
    b.finish()
}

/// The seed study's AlexNet-BN for 227x227 inputs: conv 96 11x11/4 - BN - ReLU - maxpool 3/2;
/// conv 256 5x5 p2 - BN - ReLU - pool; conv 384 3x3 p1 - BN - ReLU (twice); conv 256 3x3 p1 - BN -
/// ReLU - pool (6x6x256 = 9216); dense 4096, 4096 with dropout 0.5; dense N. The convs keep their
/// biases and there is no batch norm in the classifier: that is what gives exactly 58,304,581
/// trainable and 2,752 running-statistic parameters for 5 classes.
pub fn alexnet_bn(opts: &ModelOptions) -> Result<Graph> {
    let mut b = GraphBuilder::new("alexnet_bn", &opts.input);
    let w = |c| opts.width(c);
    // (out channels, kernel, stride, padding, max-pool after)
    let convs = [(96, 11, 4, 0, true), (256, 5, 1, 2, true), (384, 3, 1, 1, false), (384, 3, 1, 1, false), (256, 3, 1, 1, true)];
    let mut x = b.input();
    let mut index = 0;
    let mut next_name = || {
        index += 1;
        format!("features.{}", index - 1)
    };
    for (out, k, s, p, pool) in convs {
        x = conv(&mut b, &next_name(), x, ConvCfg::new(w(out), k).stride(s).padding(p), ConvInit::Default)?;
        x = b.batch_norm2d(&next_name(), x, 1e-5, 0.1)?;
        x = b.activation(&next_name(), x, Activation::Relu);
        if pool {
            x = b.max_pool2d(&next_name(), x, 3, 2, 0, false)?;
        }
    }
    let logits = classifier(&mut b, x, w(4096), opts.classes)?;
    b.output(logits, 1.0, false);
    b.finish()
}
