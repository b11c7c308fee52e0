//! Inception v3 as torchvision (for 299x299 inputs), with its auxiliary classifier after
//! Mixed_6e (loss weight 0.3) unless `aux_logits` is off. Every conv is a `BasicConv2d`: bias-free conv, BN(eps 0.001), ReLU.
//! Convs and dense weights draw from a truncated normal of std 0.1 (0.01 for the auxiliary conv1,
//! 0.001 for its fc); dense biases keep PyTorch's default; BN 1/0.

use super::layers::{conv_bn, linear, pooled_classifier, ConvInit, LinearInit, UnitNames};
use super::ModelOptions;
use crate::error::{Error, Result};
use crate::graph::{ConvCfg, Graph, GraphBuilder, NodeId};
use crate::ops::Activation;

const STD: f64 = 0.1;

/// The graph under construction and the options its blocks read.
struct Net<'a> {
    b: GraphBuilder,
    opts: &'a ModelOptions,
}

impl Net<'_> {
    /// BasicConv2d named `prefix.conv` / `prefix.bn`, its width reduced by the width divisor.
    fn basic(&mut self, prefix: &str, x: NodeId, cfg: ConvCfg) -> Result<NodeId> {
        self.basic_std(prefix, x, cfg, STD)
    }
    fn basic_std(&mut self, prefix: &str, x: NodeId, mut cfg: ConvCfg, std: f64) -> Result<NodeId> {
        cfg.out_channels = self.opts.width(cfg.out_channels);
        conv_bn(&mut self.b, &UnitNames::basic(prefix), x, cfg, ConvInit::TruncNormal(std), 1e-3, Some(Activation::Relu))
    }
    /// `k` x `k` conv with padding `p` (stride 1).
    fn square(&mut self, prefix: &str, x: NodeId, out: usize, k: usize, p: usize) -> Result<NodeId> {
        self.basic(prefix, x, ConvCfg::new(out, k).padding(p))
    }
    /// 1 x n (`wide`) or n x 1 conv with "same" padding.
    fn line(&mut self, prefix: &str, x: NodeId, out: usize, n: usize, wide: bool) -> Result<NodeId> {
        let cfg = if wide {
            ConvCfg::new(out, 1).kernel_hw(1, n).padding_hw(0, n / 2)
        } else {
            ConvCfg::new(out, 1).kernel_hw(n, 1).padding_hw(n / 2, 0)
        };
        self.basic(prefix, x, cfg)
    }
    /// 3x3 stride-1 pad-1 average pool then a 1x1 conv (the pooling branch of A, C and E).
    fn pool_branch(&mut self, prefix: &str, x: NodeId, out: usize) -> Result<NodeId> {
        let pooled = self.b.avg_pool2d(&format!("{prefix}.avg_pool"), x, 3, 1, 1, false, true)?;
        self.square(&format!("{prefix}.branch_pool"), pooled, out, 1, 0)
    }

    fn inception_a(&mut self, p: &str, x: NodeId, pool_features: usize) -> Result<NodeId> {
        let b1 = self.square(&format!("{p}.branch1x1"), x, 64, 1, 0)?;
        let b5 = self.square(&format!("{p}.branch5x5_1"), x, 48, 1, 0)?;
        let b5 = self.square(&format!("{p}.branch5x5_2"), b5, 64, 5, 2)?;
        let b3 = self.square(&format!("{p}.branch3x3dbl_1"), x, 64, 1, 0)?;
        let b3 = self.square(&format!("{p}.branch3x3dbl_2"), b3, 96, 3, 1)?;
        let b3 = self.square(&format!("{p}.branch3x3dbl_3"), b3, 96, 3, 1)?;
        let bp = self.pool_branch(p, x, pool_features)?;
        self.b.concat(&format!("{p}.concat"), &[b1, b5, b3, bp])
    }

    fn inception_b(&mut self, p: &str, x: NodeId) -> Result<NodeId> {
        let b3 = self.basic(&format!("{p}.branch3x3"), x, ConvCfg::new(384, 3).stride(2))?;
        let bd = self.square(&format!("{p}.branch3x3dbl_1"), x, 64, 1, 0)?;
        let bd = self.square(&format!("{p}.branch3x3dbl_2"), bd, 96, 3, 1)?;
        let bd = self.basic(&format!("{p}.branch3x3dbl_3"), bd, ConvCfg::new(96, 3).stride(2))?;
        let bp = self.b.max_pool2d(&format!("{p}.max_pool"), x, 3, 2, 0, false)?;
        self.b.concat(&format!("{p}.concat"), &[b3, bd, bp])
    }

    fn inception_c(&mut self, p: &str, x: NodeId, c7: usize) -> Result<NodeId> {
        let b1 = self.square(&format!("{p}.branch1x1"), x, 192, 1, 0)?;
        let b7 = self.square(&format!("{p}.branch7x7_1"), x, c7, 1, 0)?;
        let b7 = self.line(&format!("{p}.branch7x7_2"), b7, c7, 7, true)?;
        let b7 = self.line(&format!("{p}.branch7x7_3"), b7, 192, 7, false)?;
        let bd = self.square(&format!("{p}.branch7x7dbl_1"), x, c7, 1, 0)?;
        let bd = self.line(&format!("{p}.branch7x7dbl_2"), bd, c7, 7, false)?;
        let bd = self.line(&format!("{p}.branch7x7dbl_3"), bd, c7, 7, true)?;
        let bd = self.line(&format!("{p}.branch7x7dbl_4"), bd, c7, 7, false)?;
        let bd = self.line(&format!("{p}.branch7x7dbl_5"), bd, 192, 7, true)?;
        let bp = self.pool_branch(p, x, 192)?;
        self.b.concat(&format!("{p}.concat"), &[b1, b7, bd, bp])
    }

    fn inception_d(&mut self, p: &str, x: NodeId) -> Result<NodeId> {
        let b3 = self.square(&format!("{p}.branch3x3_1"), x, 192, 1, 0)?;
        let b3 = self.basic(&format!("{p}.branch3x3_2"), b3, ConvCfg::new(320, 3).stride(2))?;
        let b7 = self.square(&format!("{p}.branch7x7x3_1"), x, 192, 1, 0)?;
        let b7 = self.line(&format!("{p}.branch7x7x3_2"), b7, 192, 7, true)?;
        let b7 = self.line(&format!("{p}.branch7x7x3_3"), b7, 192, 7, false)?;
        let b7 = self.basic(&format!("{p}.branch7x7x3_4"), b7, ConvCfg::new(192, 3).stride(2))?;
        let bp = self.b.max_pool2d(&format!("{p}.max_pool"), x, 3, 2, 0, false)?;
        self.b.concat(&format!("{p}.concat"), &[b3, b7, bp])
    }

    fn inception_e(&mut self, p: &str, x: NodeId) -> Result<NodeId> {
        let b1 = self.square(&format!("{p}.branch1x1"), x, 320, 1, 0)?;
        let b3 = self.square(&format!("{p}.branch3x3_1"), x, 384, 1, 0)?;
        let b3a = self.line(&format!("{p}.branch3x3_2a"), b3, 384, 3, true)?;
        let b3b = self.line(&format!("{p}.branch3x3_2b"), b3, 384, 3, false)?;
        let bd = self.square(&format!("{p}.branch3x3dbl_1"), x, 448, 1, 0)?;
        let bd = self.square(&format!("{p}.branch3x3dbl_2"), bd, 384, 3, 1)?;
        let bda = self.line(&format!("{p}.branch3x3dbl_3a"), bd, 384, 3, true)?;
        let bdb = self.line(&format!("{p}.branch3x3dbl_3b"), bd, 384, 3, false)?;
        let bp = self.pool_branch(p, x, 192)?;
        self.b.concat(&format!("{p}.concat"), &[b1, b3a, b3b, bda, bdb, bp])
    }

    /// avg-pool 5/3, 1x1 conv 128, 5x5 conv 768, global pool, fc.
    fn aux(&mut self, x: NodeId) -> Result<NodeId> {
        let y = self.b.avg_pool2d("AuxLogits.avg_pool", x, 5, 3, 0, false, true)?;
        let y = self.basic("AuxLogits.conv0", y, ConvCfg::new(128, 1))?;
        let y = self.basic_std("AuxLogits.conv1", y, ConvCfg::new(768, 5), 0.01)?;
        let y = self.b.adaptive_avg_pool2d("AuxLogits.avgpool", y, (1, 1))?;
        let y = self.b.flatten("AuxLogits.flatten", y);
        linear(&mut self.b, "AuxLogits.fc", y, self.opts.classes, LinearInit::TruncNormal(0.001))
    }
}

pub fn inception_v3(opts: &ModelOptions) -> Result<Graph> {
    let mut net = Net { b: GraphBuilder::new("inception_v3", &opts.input), opts };
    let x = net.b.input();
    let x = net.basic("Conv2d_1a_3x3", x, ConvCfg::new(32, 3).stride(2))?;
    let x = net.square("Conv2d_2a_3x3", x, 32, 3, 0)?;
    let x = net.square("Conv2d_2b_3x3", x, 64, 3, 1)?;
    let x = net.b.max_pool2d("maxpool1", x, 3, 2, 0, false)?;
    let x = net.square("Conv2d_3b_1x1", x, 80, 1, 0)?;
    let x = net.square("Conv2d_4a_3x3", x, 192, 3, 0)?;
    let x = net.b.max_pool2d("maxpool2", x, 3, 2, 0, false)?;
    let x = net.inception_a("Mixed_5b", x, 32)?;
    let x = net.inception_a("Mixed_5c", x, 64)?;
    let x = net.inception_a("Mixed_5d", x, 64)?;
    let x = net.inception_b("Mixed_6a", x)?;
    let x = net.inception_c("Mixed_6b", x, 128)?;
    let x = net.inception_c("Mixed_6c", x, 160)?;
    let x = net.inception_c("Mixed_6d", x, 160)?;
    let x = net.inception_c("Mixed_6e", x, 192)?;
    let aux = if opts.aux_logits {
        let aux = net.aux(x).map_err(|e| match e {
            Error::Shape(m) => Error::shape(format!(
                "{m} (the auxiliary classifier needs at least 299x299 inputs; turn it off for smaller ones with --no-aux)"
            )),
            other => other,
        })?;
        Some(aux)
    } else {
        None
    };
    let x = net.inception_d("Mixed_7a", x)?;
    let x = net.inception_e("Mixed_7b", x)?;
    let x = net.inception_e("Mixed_7c", x)?;
    let dropout = Some(("dropout", 0.5));
    let logits = pooled_classifier(&mut net.b, x, "avgpool", dropout, "fc", opts.classes, LinearInit::TruncNormal(STD))?;
    net.b.output(logits, 1.0, false);
    if let Some(aux) = aux {
        net.b.output(aux, 0.3, true);
    }
    net.b.finish()
}
