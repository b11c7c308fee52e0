//! The op configurations the gradient checker covers, and how each runs forward and backward on
//! any backend. A case's result is its forward output and the gradient of <output, dy> with
//! respect to each differentiable input, all computed by the backend's own backward methods.

use crate::element::Element;
use crate::error::Result;
use crate::ops::{
    Activation, AdaptivePoolGeom, Backend, BatchNormGeom, ChannelBroadcast, ConvGeom, LinearGeom, PoolGeom,
};
use crate::rng::Rng;

#[derive(Clone, Debug)]
pub enum CaseKind {
    Conv { g: ConvGeom, bias: bool },
    Depthwise { g: ConvGeom, bias: bool },
    MaxPool(PoolGeom),
    AvgPool(PoolGeom),
    AdaptiveAvgPool(AdaptivePoolGeom),
    BatchNorm(BatchNormGeom),
    Linear { g: LinearGeom, bias: bool },
    Act(Activation),
    Add,
    AddChannel(ChannelBroadcast),
    Mul,
    MulChannel(ChannelBroadcast),
    Concat { channels: Vec<usize>, n: usize, hw: usize },
    Shuffle { n: usize, c: usize, hw: usize, groups: usize },
    Dropout { p: f64, seed: u64 },
    SoftmaxCe { n: usize, classes: usize, smoothing: f64, labels: Vec<u32> },
    Flatten,
}

/// One op in one configuration with fixed input values and output weights `dy`.
#[derive(Clone, Debug)]
pub struct Case {
    pub op: &'static str,
    pub config: String,
    pub kind: CaseKind,
    /// The differentiable inputs, in the order `run` takes them.
    pub inputs: Vec<Vec<f64>>,
    /// Weights of the scalar <output, dy> whose gradient is checked.
    pub dy: Vec<f64>,
}

/// Values in (-1, 1) kept at least `gap` away from each point in `kinks`, so a finite-difference
/// step never crosses a point where the derivative jumps.
fn away_from(rng: &mut Rng, len: usize, scale: f64, kinks: &[f64], gap: f64) -> Vec<f64> {
    (0..len)
        .map(|_| loop {
            let v = rng.uniform_range(-scale, scale);
            if kinks.iter().all(|k| (v - k).abs() > gap) {
                break v;
            }
        })
        .collect()
}

fn randn(rng: &mut Rng, len: usize) -> Vec<f64> {
    (0..len).map(|_| rng.uniform_range(-1.0, 1.0)).collect()
}

/// Distinct values spaced >= 0.01 apart in random order: max pooling has no ties for a
/// finite-difference step to break.
fn distinct(rng: &mut Rng, len: usize) -> Vec<f64> {
    let mut v: Vec<f64> = (0..len).map(|i| (i as f64 - len as f64 / 2.0) * 0.01).collect();
    rng.shuffle(&mut v);
    v
}

struct Builder {
    rng: Rng,
    cases: Vec<Case>,
}

impl Builder {
    fn push(&mut self, op: &'static str, config: String, kind: CaseKind, inputs: Vec<Vec<f64>>, out_len: usize) {
        let dy = randn(&mut self.rng, out_len);
        self.cases.push(Case { op, config, kind, inputs, dy });
    }

    #[allow(clippy::too_many_arguments)]
    fn conv(&mut self, op: &'static str, n: usize, c: usize, hw: (usize, usize), co: usize, k: usize, s: usize, p: usize, d: usize, groups: usize, bias: bool) {
        let g = ConvGeom::new(n, c, hw, co, (k, k), (s, s), (p, p), (d, d), groups).expect("gradcheck conv configs are valid");
        let config = format!(
            "n={n} c_in={c} {}x{} c_out={co} k={k} s={s} p={p} d={d} groups={groups} bias={bias}",
            hw.0, hw.1
        );
        let mut inputs = vec![randn(&mut self.rng, g.x_len()), randn(&mut self.rng, g.weight_len())];
        if bias {
            inputs.push(randn(&mut self.rng, co));
        }
        let kind = if op == "depthwise_conv2d" { CaseKind::Depthwise { g, bias } } else { CaseKind::Conv { g, bias } };
        self.push(op, config, kind, inputs, g.y_len());
    }

    #[allow(clippy::too_many_arguments)]
    fn pool(&mut self, op: &'static str, n: usize, c: usize, hw: (usize, usize), k: usize, s: usize, p: usize, ceil: bool, include_pad: bool) {
        let g = PoolGeom::new(n, c, hw, (k, k), (s, s), (p, p), ceil, include_pad).expect("gradcheck pool configs are valid");
        let (kind, x, config) = if op == "max_pool2d" {
            let x = distinct(&mut self.rng, g.x_len());
            (CaseKind::MaxPool(g), x, format!("n={n} c={c} {}x{} k={k} s={s} p={p} ceil={ceil}", hw.0, hw.1))
        } else {
            let x = randn(&mut self.rng, g.x_len());
            let config = format!("n={n} c={c} {}x{} k={k} s={s} p={p} ceil={ceil} count_include_pad={include_pad}", hw.0, hw.1);
            (CaseKind::AvgPool(g), x, config)
        };
        self.push(op, config, kind, vec![x], g.y_len());
    }
}

/// Every configuration, deterministic (seeded): kernels 1/3/5/7/11, strides 1/2/4, padding 0/1/2,
/// dilation 1/2, groups 1/2/C, odd spatial sizes, batch 1 and > 1, overlapping pooling windows.
pub fn all_cases() -> Vec<Case> {
    let mut b = Builder { rng: Rng::new(0x6772_6164), cases: Vec::new() };
    for &(n, c, hw, co, k, s, p, d, g, bias) in &[
        (2, 3, (7, 7), 4, 3, 1, 1, 1, 1, true),
        (1, 2, (9, 8), 3, 1, 1, 0, 1, 1, false),
        (2, 4, (9, 9), 4, 5, 2, 2, 1, 2, true),
        (1, 2, (13, 13), 2, 7, 1, 0, 1, 1, true),
        (1, 1, (15, 15), 2, 11, 4, 2, 1, 1, true),
        (2, 2, (9, 7), 3, 3, 1, 2, 2, 1, true),
        (2, 4, (8, 8), 4, 3, 2, 1, 1, 4, false),
        (3, 3, (6, 5), 2, 3, 4, 1, 1, 1, true),
    ] {
        b.conv("conv2d", n, c, hw, co, k, s, p, d, g, bias);
    }
    for &(n, c, hw, co, k, s, p, d, bias) in &[
        (2, 4, (7, 7), 4, 3, 1, 1, 1, false),
        (1, 3, (8, 9), 6, 3, 2, 1, 1, true),
        (1, 2, (11, 11), 2, 5, 1, 4, 2, true),
        (2, 3, (5, 6), 3, 5, 2, 2, 1, false),
    ] {
        b.conv("depthwise_conv2d", n, c, hw, co, k, s, p, d, c, bias);
    }
    for &(n, c, hw, k, s, p, ceil) in &[
        (2, 3, (7, 7), 3, 2, 1, false),
        (1, 2, (6, 6), 3, 2, 0, true),
        (1, 2, (8, 8), 2, 2, 0, false),
        (2, 1, (9, 7), 3, 1, 1, false),
        (1, 2, (5, 5), 2, 2, 1, true),
    ] {
        b.pool("max_pool2d", n, c, hw, k, s, p, ceil, true);
    }
    for &(n, c, hw, k, s, p, ceil, inc) in &[
        (2, 3, (7, 7), 3, 2, 1, false, true),
        (2, 3, (7, 7), 3, 2, 1, false, false),
        (1, 2, (6, 6), 3, 2, 0, true, true),
        (1, 2, (8, 8), 2, 2, 0, false, true),
        (1, 1, (5, 7), 3, 1, 1, false, false),
    ] {
        b.pool("avg_pool2d", n, c, hw, k, s, p, ceil, inc);
    }
    for &(n, c, hw, out) in &[(2, 3, (7, 7), (1, 1)), (1, 2, (7, 7), (3, 3)), (2, 1, (5, 6), (2, 4)), (1, 2, (4, 4), (4, 4))] {
        let g = AdaptivePoolGeom::new(n, c, hw, out).expect("valid");
        let x = randn(&mut b.rng, g.x_len());
        let config = format!("n={n} c={c} {}x{} -> {}x{}", hw.0, hw.1, out.0, out.1);
        b.push("adaptive_avg_pool2d", config, CaseKind::AdaptiveAvgPool(g), vec![x], g.y_len());
    }
    for &(n, c, hw) in &[(2, 3, 20), (1, 2, 9), (4, 1, 1), (3, 4, 4)] {
        let g = BatchNormGeom::new(n, c, hw, 1e-5).expect("valid");
        let x = randn(&mut b.rng, g.len());
        let gamma = (0..c).map(|_| b.rng.uniform_range(0.5, 1.5)).collect();
        let beta = randn(&mut b.rng, c);
        b.push("batch_norm2d", format!("n={n} c={c} hw={hw} training"), CaseKind::BatchNorm(g), vec![x, gamma, beta], g.len());
    }
    for &(n, fi, fo, bias) in &[(2, 5, 3, true), (1, 7, 4, false), (4, 16, 10, true)] {
        let g = LinearGeom::new(n, fi, fo).expect("valid");
        let mut inputs = vec![randn(&mut b.rng, n * fi), randn(&mut b.rng, fo * fi)];
        if bias {
            inputs.push(randn(&mut b.rng, fo));
        }
        b.push("linear", format!("n={n} in={fi} out={fo} bias={bias}"), CaseKind::Linear { g, bias }, inputs, n * fo);
    }
    for act in Activation::ALL {
        let (kinks, scale): (&[f64], f64) = match act {
            Activation::Relu => (&[0.0], 2.0),
            Activation::Relu6 => (&[0.0, 6.0], 8.0),
            Activation::Hardswish => (&[-3.0, 3.0], 5.0),
            Activation::Sigmoid | Activation::Silu => (&[], 6.0),
        };
        for len in [37, 2 * 3 * 5 * 5] {
            let x = away_from(&mut b.rng, len, scale, kinks, 1e-3);
            b.push(act.name(), format!("len={len} range=±{scale}"), CaseKind::Act(act), vec![x], len);
        }
    }
    for len in [1, 60] {
        let inputs = vec![randn(&mut b.rng, len), randn(&mut b.rng, len)];
        b.push("add", format!("same shape len={len}"), CaseKind::Add, inputs.clone(), len);
        b.push("mul", format!("same shape len={len}"), CaseKind::Mul, inputs, len);
    }
    for &(n, c, hw, per_sample) in &[(2, 3, 5, true), (2, 3, 5, false), (1, 4, 9, true)] {
        let g = ChannelBroadcast { n, c, hw, per_sample };
        let inputs = vec![randn(&mut b.rng, g.x_len()), randn(&mut b.rng, g.operand_len())];
        let config = format!("channel broadcast n={n} c={c} hw={hw} per_sample={per_sample}");
        b.push("add", config.clone(), CaseKind::AddChannel(g), inputs.clone(), g.x_len());
        b.push("mul", config, CaseKind::MulChannel(g), inputs, g.x_len());
    }
    for (channels, n, hw) in [(vec![2, 3, 1], 2, 6), (vec![4, 4], 1, 1), (vec![1], 3, 5)] {
        let inputs: Vec<Vec<f64>> = channels.iter().map(|c| randn(&mut b.rng, n * c * hw)).collect();
        let total: usize = channels.iter().sum();
        let config = format!("channels={channels:?} n={n} hw={hw}");
        b.push("concat", config, CaseKind::Concat { channels, n, hw }, inputs, n * total * hw);
    }
    for &(n, c, hw, groups) in &[(2, 6, 4, 2), (1, 12, 3, 3), (1, 8, 1, 4)] {
        let x = randn(&mut b.rng, n * c * hw);
        b.push("channel_shuffle", format!("n={n} c={c} hw={hw} groups={groups}"), CaseKind::Shuffle { n, c, hw, groups }, vec![x], n * c * hw);
    }
    for &(p, seed, len) in &[(0.5, 7u64, 100), (0.2, 3, 64), (0.0, 1, 10)] {
        let x = randn(&mut b.rng, len);
        b.push("dropout", format!("p={p} seed={seed} len={len}"), CaseKind::Dropout { p, seed }, vec![x], len);
    }
    for &(n, classes, smoothing) in &[(4, 5, 0.0), (3, 10, 0.1), (1, 2, 0.0), (5, 3, 0.2)] {
        let logits: Vec<f64> = (0..n * classes).map(|_| b.rng.uniform_range(-3.0, 3.0)).collect();
        let labels: Vec<u32> = (0..n).map(|_| b.rng.below(classes as u64) as u32).collect();
        let config = format!("n={n} classes={classes} label_smoothing={smoothing}");
        b.push("softmax_cross_entropy", config, CaseKind::SoftmaxCe { n, classes, smoothing, labels }, vec![logits], 1);
    }
    for len in [2 * 3 * 2 * 2, 5] {
        let x = randn(&mut b.rng, len);
        b.push("flatten", format!("[N, C, H, W] with {len} elements -> [N, C*H*W]"), CaseKind::Flatten, vec![x], len);
    }
    b.cases
}

/// Forward output and the gradients of <output, dy> for every input of `case`, on backend `b`.
pub fn run<E: Element, B: Backend<E>>(b: &B, case: &Case, inputs: &[Vec<E>], dy: &[E]) -> Result<(Vec<E>, Vec<Vec<E>>)> {
    let bufs = inputs.iter().map(|v| b.upload(v)).collect::<Result<Vec<_>>>()?;
    let dyb = b.upload(dy)?;
    let opt = |i: usize| bufs.get(i);
    let (out, grads) = match &case.kind {
        CaseKind::Conv { g, bias } => {
            let y = b.conv2d_forward(&bufs[0], &bufs[1], opt(2), g)?;
            let mut grads = vec![b.conv2d_backward_data(&dyb, &bufs[1], g)?, b.conv2d_backward_filter(&bufs[0], &dyb, g)?];
            if *bias {
                grads.push(b.conv2d_backward_bias(&dyb, g)?);
            }
            (y, grads)
        }
        CaseKind::Depthwise { g, bias } => {
            let y = b.depthwise_conv2d_forward(&bufs[0], &bufs[1], opt(2), g)?;
            let mut grads =
                vec![b.depthwise_conv2d_backward_data(&dyb, &bufs[1], g)?, b.depthwise_conv2d_backward_filter(&bufs[0], &dyb, g)?];
            if *bias {
                grads.push(b.conv2d_backward_bias(&dyb, g)?);
            }
            (y, grads)
        }
        CaseKind::MaxPool(g) => {
            let (y, idx) = b.max_pool2d_forward(&bufs[0], g)?;
            (y, vec![b.max_pool2d_backward(&dyb, &idx, g)?])
        }
        CaseKind::AvgPool(g) => (b.avg_pool2d_forward(&bufs[0], g)?, vec![b.avg_pool2d_backward(&dyb, g)?]),
        CaseKind::AdaptiveAvgPool(g) => {
            (b.adaptive_avg_pool2d_forward(&bufs[0], g)?, vec![b.adaptive_avg_pool2d_backward(&dyb, g)?])
        }
        CaseKind::BatchNorm(g) => {
            // Fresh running statistics each call: the checked function is the normalisation alone.
            let mut rm = b.zeros(g.c)?;
            let mut rv = b.upload(&vec![E::one(); g.c])?;
            let (y, saved) = b.batch_norm2d_forward_train(&bufs[0], &bufs[1], &bufs[2], &mut rm, &mut rv, 0.1, g)?;
            let (dx, dgamma, dbeta) = b.batch_norm2d_backward(&dyb, &bufs[0], &bufs[1], &saved, g)?;
            (y, vec![dx, dgamma, dbeta])
        }
        CaseKind::Linear { g, bias } => {
            let y = b.linear_forward(&bufs[0], &bufs[1], opt(2), g)?;
            let mut grads = vec![b.linear_backward_data(&dyb, &bufs[1], g)?, b.linear_backward_weight(&bufs[0], &dyb, g)?];
            if *bias {
                grads.push(b.linear_backward_bias(&dyb, g)?);
            }
            (y, grads)
        }
        CaseKind::Act(kind) => (b.activation_forward(*kind, &bufs[0])?, vec![b.activation_backward(*kind, &bufs[0], &dyb)?]),
        CaseKind::Add => (b.add(&bufs[0], &bufs[1])?, vec![b.copy_buf(&dyb)?, b.copy_buf(&dyb)?]),
        CaseKind::AddChannel(g) => (b.add_channel(&bufs[0], &bufs[1], g)?, vec![b.copy_buf(&dyb)?, b.add_channel_backward(&dyb, g)?]),
        CaseKind::Mul => {
            let (da, db) = b.mul_backward(&bufs[0], &bufs[1], &dyb)?;
            (b.mul(&bufs[0], &bufs[1])?, vec![da, db])
        }
        CaseKind::MulChannel(g) => {
            let (dx, ds) = b.mul_channel_backward(&bufs[0], &bufs[1], &dyb, g)?;
            (b.mul_channel(&bufs[0], &bufs[1], g)?, vec![dx, ds])
        }
        CaseKind::Concat { channels, n, hw } => {
            let refs: Vec<&B::Buf> = bufs.iter().collect();
            (b.concat_channels(&refs, channels, *n, *hw)?, b.split_channels(&dyb, channels, *n, *hw)?)
        }
        CaseKind::Shuffle { n, c, hw, groups } => (
            b.channel_shuffle(&bufs[0], *n, *c, *hw, *groups)?,
            vec![b.channel_shuffle_backward(&dyb, *n, *c, *hw, *groups)?],
        ),
        CaseKind::Dropout { p, seed } => {
            let (y, mask) = b.dropout_forward(&bufs[0], *p, *seed)?;
            (y, vec![b.dropout_backward(&dyb, &mask)?])
        }
        CaseKind::SoftmaxCe { n, classes, smoothing, labels } => {
            let lb = b.upload_idx(labels)?;
            let (loss, mut dlogits) = b.softmax_cross_entropy(&bufs[0], &lb, *n, *classes, *smoothing)?;
            b.scale(dy[0], &mut dlogits)?;
            (loss, vec![dlogits])
        }
        // Flatten is a view: forward and backward move no data; the device copy stands for it.
        CaseKind::Flatten => (b.copy_buf(&bufs[0])?, vec![b.copy_buf(&dyb)?]),
    };
    let out = b.download(&out)?;
    let grads = grads.iter().map(|g| b.download(g)).collect::<Result<Vec<_>>>()?;
    Ok((out, grads))
}
