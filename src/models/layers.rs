//! Building blocks shared by the model builders: convolutions and dense layers with the
//! initialisers torchvision's model code applies, and the conv-BN-activation unit.

use crate::error::Result;
use crate::graph::{ConvCfg, GraphBuilder, Init, NodeId};
use crate::ops::Activation;

/// How a conv weight is initialised (the bias, when there is one, follows the model's rule).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ConvInit {
    /// PyTorch's layer default, U(+-1/sqrt(fan_in)) for weight and bias.
    Default,
    /// kaiming_normal_(mode="fan_out", nonlinearity="relu"): N(0, 2/(C_out*KH*KW)); bias 0.
    KaimingFanOut,
    /// Truncated normal weight (Inception, GoogLeNet); bias keeps the default.
    TruncNormal(f64),
}

/// How a dense layer is initialised.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LinearInit {
    /// PyTorch's layer default, U(+-1/sqrt(fan_in)) for weight and bias.
    Default,
    /// N(0, std^2) weight, zero bias (VGG, MobileNetV2).
    Normal(f64),
    /// Truncated normal weight, default bias (Inception, GoogLeNet).
    TruncNormal(f64),
    /// U(+-1/sqrt(out_features)) weight, zero bias (EfficientNet).
    UniformByOutputs,
}

pub fn conv(b: &mut GraphBuilder, name: &str, x: NodeId, cfg: ConvCfg, init: ConvInit) -> Result<NodeId> {
    let y = b.conv2d(name, x, cfg)?;
    let params = b.node_params(y);
    let (weight, bias) = (params[0], params.get(1).copied());
    match init {
        ConvInit::Default => {}
        ConvInit::KaimingFanOut => {
            let fan_out = cfg.out_channels * cfg.kernel.0 * cfg.kernel.1;
            b.set_init(weight, Init::Normal { std: (2.0 / fan_out as f64).sqrt() });
            if let Some(bias) = bias {
                b.set_init(bias, Init::Const(0.0));
            }
        }
        ConvInit::TruncNormal(std) => b.set_init(weight, Init::TruncatedNormal { std }),
    }
    Ok(y)
}

pub fn linear(b: &mut GraphBuilder, name: &str, x: NodeId, out_features: usize, init: LinearInit) -> Result<NodeId> {
    let y = b.linear(name, x, out_features, true)?;
    let params = b.node_params(y);
    let (weight, bias) = (params[0], params[1]);
    match init {
        LinearInit::Default => {}
        LinearInit::Normal(std) => {
            b.set_init(weight, Init::Normal { std });
            b.set_init(bias, Init::Const(0.0));
        }
        LinearInit::TruncNormal(std) => b.set_init(weight, Init::TruncatedNormal { std }),
        LinearInit::UniformByOutputs => {
            b.set_init(weight, Init::Uniform { bound: 1.0 / (out_features as f64).sqrt() });
            b.set_init(bias, Init::Const(0.0));
        }
    }
    Ok(y)
}

/// Global average pool, flatten, dropout when given (name, p), then the dense classifier: the
/// head of every model that ends in adaptive 1x1 pooling. Returns the logits.
pub fn pooled_classifier(
    b: &mut GraphBuilder,
    x: NodeId,
    pool: &str,
    dropout: Option<(&str, f64)>,
    fc: &str,
    classes: usize,
    init: LinearInit,
) -> Result<NodeId> {
    let x = b.adaptive_avg_pool2d(pool, x, (1, 1))?;
    let mut x = b.flatten("flatten", x);
    if let Some((name, p)) = dropout {
        x = b.dropout(name, x, p)?;
    }
    linear(b, fc, x, classes, init)
}

/// Names of one conv-BN-activation unit's three layers.
pub struct UnitNames {
    pub conv: String,
    pub bn: String,
    pub act: String,
}

impl UnitNames {
    /// torchvision's `Conv2dNormActivation` / Sequential numbering: prefix.0, prefix.1, prefix.2.
    pub fn sequential(prefix: &str) -> Self {
        UnitNames { conv: format!("{prefix}.0"), bn: format!("{prefix}.1"), act: format!("{prefix}.2") }
    }
    /// Inception's `BasicConv2d`: prefix.conv, prefix.bn.
    pub fn basic(prefix: &str) -> Self {
        UnitNames { conv: format!("{prefix}.conv"), bn: format!("{prefix}.bn"), act: format!("{prefix}.relu") }
    }
}

/// Bias-free conv, batch norm (eps, momentum 0.1), then the activation when one is given.
#[allow(clippy::too_many_arguments)]
pub fn conv_bn(
    b: &mut GraphBuilder,
    names: &UnitNames,
    x: NodeId,
    cfg: ConvCfg,
    init: ConvInit,
    eps: f64,
    act: Option<Activation>,
) -> Result<NodeId> {
    let y = conv(b, &names.conv, x, cfg.bias(false), init)?;
    let y = b.batch_norm2d(&names.bn, y, eps, 0.1)?;
    Ok(match act {
        Some(kind) => b.activation(&names.act, y, kind),
        None => y,
    })
}

/// torchvision's `_make_divisible`: the nearest multiple of `divisor` (at least `divisor`), never
/// more than 10% below `v`.
pub fn make_divisible(v: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut rounded = (((v + d / 2.0) / d).floor() * d).max(d) as usize;
    if (rounded as f64) < 0.9 * v {
        rounded += divisor;
    }
    rounded
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn make_divisible_matches_torchvision() {
        assert_eq!(make_divisible(32.0, 8), 32);
        assert_eq!(make_divisible(16.0 * 0.5, 8), 8);
        assert_eq!(make_divisible(24.0 * 0.75, 8), 24); // 18 rounds to 16, < 0.9*18, so 24
        assert_eq!(make_divisible(3.0, 8), 8);
        assert_eq!(make_divisible(1280.0 * 1.4, 8), 1792);
    }
}
