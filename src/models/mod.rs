//! The model zoo: graph builders for the classic image classifiers, with parameter names and
//! initialisation as torchvision's, and a per-layer summary (shapes, parameters, MACs, memory).

mod alexnet;
mod efficientnet;
mod googlenet;
mod inception;
mod lenet;
mod layers;
mod mobilenet;
mod resnet;
mod shufflenet;
mod small_cnn;
pub mod summary;
mod vgg;

use crate::error::{Error, Result};
use crate::graph::Graph;

/// What every builder takes.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelOptions {
    pub classes: usize,
    /// Per-sample input [C, H, W].
    pub input: [usize; 3],
    /// CIFAR stem for resnet, mobilenet_v2 and shufflenet: 3x3 stride-1 first conv, no stem max-pool.
    pub cifar_stem: bool,
    /// Every hidden width (channels and hidden dense units) is divided by this, for tiny test
    /// variants of each family; 1 = the published model.
    pub width_divisor: usize,
    /// MobileNetV2's width multiplier (1.0 = the published model).
    pub width_mult: f64,
    /// The auxiliary classifiers of inception_v3 and googlenet (torchvision's `aux_logits`).
    pub aux_logits: bool,
}

impl ModelOptions {
    pub fn new(classes: usize, input: [usize; 3]) -> Self {
        ModelOptions { classes, input, cifar_stem: false, width_divisor: 1, width_mult: 1.0, aux_logits: true }
    }

    /// A hidden width reduced by `width_divisor`, never below one.
    pub(crate) fn width(&self, channels: usize) -> usize {
        (channels / self.width_divisor).max(1)
    }

    fn validate(&self) -> Result<()> {
        if self.classes == 0 {
            return Err(Error::config("the number of classes must be at least 1"));
        }
        if self.input.contains(&0) {
            return Err(Error::config(format!("input {:?} must have non-zero channels, height and width", self.input)));
        }
        if self.width_divisor == 0 {
            return Err(Error::config("width divisor must be at least 1"));
        }
        if !(self.width_mult.is_finite() && self.width_mult > 0.0) {
            return Err(Error::config(format!("width multiplier {} must be a positive number", self.width_mult)));
        }
        Ok(())
    }
}

type Builder = fn(&ModelOptions) -> Result<Graph>;

/// Name, one-line description, builder.
const ZOO: &[(&str, &str, Builder)] = &[
    ("small_cnn", "two conv-BN-ReLU-pool blocks and two dense layers, for 28x28 images (the default)", small_cnn::small_cnn),
    ("lenet5", "LeNet-5 with ReLU and max pooling, no batch norm, for 28x28 images", lenet::lenet5),
    ("alexnet", "AlexNet as torchvision (5 convs, adaptive 6x6 pool, 3 dense layers)", alexnet::alexnet),
    ("alexnet_bn", "AlexNet with batch norm after every conv, 227x227 input (the seed study's)", alexnet::alexnet_bn),
    ("vgg11", "VGG-11 (configuration A)", vgg::vgg11),
    ("vgg13", "VGG-13 (configuration B)", vgg::vgg13),
    ("vgg16", "VGG-16 (configuration D)", vgg::vgg16),
    ("vgg19", "VGG-19 (configuration E)", vgg::vgg19),
    ("vgg11_bn", "VGG-11 with batch norm", vgg::vgg11_bn),
    ("vgg13_bn", "VGG-13 with batch norm", vgg::vgg13_bn),
    ("vgg16_bn", "VGG-16 with batch norm", vgg::vgg16_bn),
    ("vgg19_bn", "VGG-19 with batch norm", vgg::vgg19_bn),
    ("resnet18", "ResNet-18 (basic blocks 2-2-2-2)", resnet::resnet18),
    ("resnet34", "ResNet-34 (basic blocks 3-4-6-3)", resnet::resnet34),
    ("resnet50", "ResNet-50 (bottleneck blocks 3-4-6-3, stride on the 3x3 conv)", resnet::resnet50),
    ("mobilenet_v2", "MobileNetV2 (inverted residuals, ReLU6; width multiplier option)", mobilenet::mobilenet_v2),
    ("shufflenet_v2_x0_5", "ShuffleNetV2 0.5x (channel split and shuffle)", shufflenet::shufflenet_v2_x0_5),
    ("shufflenet_v2_x1_0", "ShuffleNetV2 1.0x (channel split and shuffle)", shufflenet::shufflenet_v2_x1_0),
    ("inception_v3", "Inception v3 with its auxiliary classifier (loss weight 0.3)", inception::inception_v3),
    ("googlenet", "GoogLeNet (Inception v1) with its two auxiliary heads (loss weight 0.3 each)", googlenet::googlenet),
    ("efficientnet_b0", "EfficientNet-B0 (MBConv with squeeze-excitation, SiLU)", efficientnet::efficientnet_b0),
];

/// Every model name, in the order `ferronet models` lists them.
pub fn names() -> Vec<&'static str> {
    ZOO.iter().map(|(name, _, _)| *name).collect()
}

/// Name and one-line description of every model.
pub fn descriptions() -> Vec<(&'static str, &'static str)> {
    ZOO.iter().map(|(name, description, _)| (*name, *description)).collect()
}

/// Parses a model input "C,H,W" (spaces allowed) into three positive numbers.
pub fn parse_input(text: &str) -> Result<[usize; 3]> {
    let bad = || Error::config(format!("--input `{text}` must be three positive numbers C,H,W, e.g. 3,224,224"));
    let dims: Vec<usize> = text.split(',').map(|part| part.trim().parse::<usize>().map_err(|_| bad())).collect::<Result<_>>()?;
    match dims.as_slice() {
        &[c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
        _ => Err(bad()),
    }
}

/// The input a model is usually trained at: 1x28x28 for small_cnn and lenet5, 3x227x227 for alexnet_bn,
/// 3x299x299 for inception_v3, 3x224x224 for the rest.
pub fn default_input(name: &str) -> Result<[usize; 3]> {
    lookup(name)?;
    Ok(match name {
        "small_cnn" | "lenet5" => [1, 28, 28],
        "alexnet_bn" => [3, 227, 227],
        "inception_v3" => [3, 299, 299],
        _ => [3, 224, 224],
    })
}

fn lookup(name: &str) -> Result<Builder> {
    ZOO.iter().find(|(n, _, _)| *n == name).map(|(_, _, builder)| *builder).ok_or_else(|| {
        Error::config(format!("unknown model `{name}`; known models: {}", names().join(", ")))
    })
}

/// Builds the named model; an unknown name lists the known ones, an input the model cannot take
/// names the first layer that does not fit.
pub fn build(name: &str, opts: &ModelOptions) -> Result<Graph> {
    let builder = lookup(name)?;
    opts.validate()?;
    builder(opts).map_err(|e| match e {
        Error::Shape(m) => {
            let [c, h, w] = opts.input;
            // Each geometry layer prefixes its own "shape error: "; one is enough.
            let m = m.replace("shape error: ", "");
            Error::shape(format!("{name} cannot take a {c}x{h}x{w} input: {m}"))
        }
        other => other,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_parsing() {
        assert_eq!(parse_input("3,224,224").unwrap(), [3, 224, 224]);
        assert_eq!(parse_input(" 1, 28 ,28").unwrap(), [1, 28, 28]);
        for bad in ["3,224", "3,224,224,1", "3,0,224", "a,b,c", ""] {
            let err = parse_input(bad).unwrap_err().to_string();
            assert!(err.contains("C,H,W"), "{bad}: {err}");
        }
    }
}
