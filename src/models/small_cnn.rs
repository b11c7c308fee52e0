//! The default model of `ferronet train`: a LeNet-style CNN for small grayscale images (28x28),
//! cheap enough for CPU training yet strong enough for ~90% on Fashion-MNIST in a few epochs.

use super::layers::{conv_bn, ConvInit, UnitNames};
use super::ModelOptions;
use crate::error::Result;
use crate::graph::{ConvCfg, Graph, GraphBuilder};
use crate::ops::Activation;

/// conv 32 3x3 - BN - ReLU - maxpool 2, conv 64 3x3 - BN - ReLU - maxpool 2, dropout 0.25,
/// dense 128 - ReLU, dropout 0.5, dense N. Kaiming fan-out convs as the torchvision CNNs.
pub fn small_cnn(opts: &ModelOptions) -> Result<Graph> {
    let mut b = GraphBuilder::new("small_cnn", &opts.input);
    let mut x = b.input();
    for (i, width) in [32, 64].into_iter().enumerate() {
        let n = i + 1;
        let names = UnitNames { conv: format!("conv{n}"), bn: format!("bn{n}"), act: format!("relu{n}") };
        let cfg = ConvCfg::new(opts.width(width), 3).padding(1);
        x = conv_bn(&mut b, &names, x, cfg, ConvInit::KaimingFanOut, 1e-5, Some(Activation::Relu))?;
        x = b.max_pool2d(&format!("pool{n}"), x, 2, 2, 0, false)?;
    }
    let x = b.dropout("dropout1", x, 0.25)?;
    let x = b.flatten("flatten", x);
    let x = b.linear("fc1", x, opts.width(128), true)?;
    let x = b.activation("relu3", x, Activation::Relu);
    let x = b.dropout("dropout2", x, 0.5)?;
    let logits = b.linear("fc2", x, opts.classes, true)?;
    b.output(logits, 1.0, false);
    b.finish()
}
