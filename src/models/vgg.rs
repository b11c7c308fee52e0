//! VGG-11/13/16/19, with and without batch norm, as torchvision: `features.<i>` numbered as its
//! Sequential, adaptive 7x7 average pool, 4096-4096 classifier; Kaiming fan-out convs with zero
//! bias, N(0, 0.01) dense layers with zero bias.

use super::layers::{conv, linear, ConvInit, LinearInit};
use super::ModelOptions;
use crate::error::Result;
use crate::graph::{ConvCfg, Graph, GraphBuilder};
use crate::ops::Activation;

/// A 3x3 conv of this many channels, or 0 for a 2x2 max-pool.
const POOL: usize = 0;
const CFG_A: &[usize] = &[64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL];
const CFG_B: &[usize] = &[64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL];
const CFG_D: &[usize] =
    &[64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL];
const CFG_E: &[usize] =
    &[64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL, 512, 512, 512, 512, POOL];

fn vgg(name: &str, cfg: &[usize], batch_norm: bool, opts: &ModelOptions) -> Result<Graph> {
    let mut b = GraphBuilder::new(name, &opts.input);
    let mut x = b.input();
    let mut index = 0;
    let mut next_name = || {
        index += 1;
        format!("features.{}", index - 1)
    };
    for &width in cfg {
        if width == POOL {
            x = b.max_pool2d(&next_name(), x, 2, 2, 0, false)?;
            continue;
        }
        x = conv(&mut b, &next_name(), x, ConvCfg::new(opts.width(width), 3).padding(1), ConvInit::KaimingFanOut)?;
        if batch_norm {
            x = b.batch_norm2d(&next_name(), x, 1e-5, 0.1)?;
        }
        x = b.activation(&next_name(), x, Activation::Relu);
    }
    let x = b.adaptive_avg_pool2d("avgpool", x, (7, 7))?;
    let x = b.flatten("flatten", x);
    let hidden = opts.width(4096);
    let x = linear(&mut b, "classifier.0", x, hidden, LinearInit::Normal(0.01))?;
    let x = b.activation("classifier.1", x, Activation::Relu);
    let x = b.dropout("classifier.2", x, 0.5)?;
    let x = linear(&mut b, "classifier.3", x, hidden, LinearInit::Normal(0.01))?;
    let x = b.activation("classifier.4", x, Activation::Relu);
    let x = b.dropout("classifier.5", x, 0.5)?;
    let logits = linear(&mut b, "classifier.6", x, opts.classes, LinearInit::Normal(0.01))?;
    b.output(logits, 1.0, false);
    b.finish()
}

pub fn vgg11(opts: &ModelOptions) -> Result<Graph> {
    vgg("vgg11", CFG_A, false, opts)
}
pub fn vgg13(opts: &ModelOptions) -> Result<Graph> {
    vgg("vgg13", CFG_B, false, opts)
}
pub fn vgg16(opts: &ModelOptions) -> Result<Graph> {
    vgg("vgg16", CFG_D, false, opts)
}
pub fn vgg19(opts: &ModelOptions) -> Result<Graph> {
    vgg("vgg19", CFG_E, false, opts)
}
pub fn vgg11_bn(opts: &ModelOptions) -> Result<Graph> {
    vgg("vgg11_bn", CFG_A, true, opts)
}
pub fn vgg13_bn(opts: &ModelOptions) -> Result<Graph> {
    vgg("vgg13_bn", CFG_B, true, opts)
}
pub fn vgg16_bn(opts: &ModelOptions) -> Result<Graph> {
    vgg("vgg16_bn", CFG_D, true, opts)
}
pub fn vgg19_bn(opts: &ModelOptions) -> Result<Graph> {
    vgg("vgg19_bn", CFG_E, true, opts)
}
