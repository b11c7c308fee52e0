//! LeNet-5 (LeCun et al. 1998) as it is usually written today: ReLU and max pooling in place of
//! the original's scaled tanh and subsampling, and no batch norm, which makes it the model whose
//! training does not depend on how a batch is split (data-parallel runs equal one process).

use super::layers::{conv, linear, ConvInit, LinearInit};
use super::ModelOptions;
use crate::error::Result;
use crate::graph::{ConvCfg, Graph, GraphBuilder};
use crate::ops::Activation;

/// conv 6 5x5 (padding 2) - ReLU - maxpool 2, conv 16 5x5 - ReLU - maxpool 2, dense 120 - ReLU,
/// dense 84 - ReLU, dense N; PyTorch's default initialisation.
pub fn lenet5(opts: &ModelOptions) -> Result<Graph> {
    let mut b = GraphBuilder::new("lenet5", &opts.input);
    let input = b.input();
    let x = conv(&mut b, "conv1", input, ConvCfg::new(opts.width(6), 5).padding(2), ConvInit::Default)?;
    let x = b.activation("relu1", x, Activation::Relu);
    let x = b.max_pool2d("pool1", x, 2, 2, 0, false)?;
    let x = conv(&mut b, "conv2", x, ConvCfg::new(opts.width(16), 5), ConvInit::Default)?;
    let x = b.activation("relu2", x, Activation::Relu);
    let x = b.max_pool2d("pool2", x, 2, 2, 0, false)?;
    let x = b.flatten("flatten", x);
    let x = linear(&mut b, "fc1", x, opts.width(120), LinearInit::Default)?;
    let x = b.activation("relu3", x, Activation::Relu);
    let x = linear(&mut b, "fc2", x, opts.width(84), LinearInit::Default)?;
    let x = b.activation("relu4", x, Activation::Relu);
    let logits = linear(&mut b, "fc3", x, opts.classes, LinearInit::Default)?;
    b.output(logits, 1.0, false);
    b.finish()
}
