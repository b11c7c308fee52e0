//! One benchmarked kernel call: its geometry, the operands it needs, how to run it on any
//! backend, its algorithmic FLOPs and bytes, and how loosely an f32 result may differ from the
//! f64 reference.

use crate::cpu::CpuBackend;
use crate::device::Device;
use crate::element::Element;
use crate::error::Result;
use crate::ops::{AdamParams, AdaptivePoolGeom, Backend, BatchNormGeom, BatchNormSaved, ConvGeom, GemmSpec, PoolGeom, SgdParams};
use crate::rng::Rng;

/// The op of a benchmark case at one shape.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KernelOp {
    Gemm { trans_a: bool, trans_b: bool, m: usize, n: usize, k: usize },
    /// im2col of the whole batch.
    Im2col(ConvGeom),
    /// col2im of the whole batch.
    Col2im(ConvGeom),
    /// Convolution forward (the depthwise kernels when the geometry is depthwise), no bias.
    ConvForward(ConvGeom),
    ConvBackwardData(ConvGeom),
    ConvBackwardFilter(ConvGeom),
    MaxPoolForward(PoolGeom),
    MaxPoolBackward(PoolGeom),
    AvgPoolForward(PoolGeom),
    AvgPoolBackward(PoolGeom),
    AdaptiveAvgPoolForward(AdaptivePoolGeom),
    AdaptiveAvgPoolBackward(AdaptivePoolGeom),
    BatchNormForwardTrain(BatchNormGeom),
    BatchNormBackward(BatchNormGeom),
    SoftmaxCrossEntropy { n: usize, classes: usize },
    /// SGD with momentum 0.9, weight decay 5e-4 (the usual CNN recipe), after the first step.
    Sgd { len: usize },
    /// Adam with PyTorch's defaults and weight decay 1e-4, step 10.
    Adam { len: usize },
}

/// The device buffers one call reads and writes.
pub struct Operands<E: Element, B: Device<E>> {
    pub bufs: Vec<B::Buf>,
    pub idx: Option<B::IdxBuf>,
}

/// Host values of every operand, drawn once and uploaded to each device, so every device (and
/// the f64 reference, by exact widening) computes on the very same inputs.
pub struct HostOperands {
    pub values: Vec<Vec<f32>>,
    pub idx: Option<Vec<u32>>,
}

const SGD: SgdParams = SgdParams { lr: 0.1, momentum: 0.9, dampening: 0.0, nesterov: false, weight_decay: 5e-4 };
const ADAM: AdamParams = AdamParams { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4, decoupled: false };
const ADAM_STEP: u64 = 10;
const BN_MOMENTUM: f64 = 0.1;

impl KernelOp {
    /// (length, low, high) of each f32 operand, uniform in [low, high).
    fn operand_ranges(&self) -> Vec<(usize, f64, f64)> {
        let sym = |len: usize| (len, -1.0, 1.0);
        match *self {
            KernelOp::Gemm { m, n, k, .. } => vec![sym(m * k), sym(k * n), sym(m * n)],
            KernelOp::Im2col(g) => vec![sym(g.x_len()), sym(g.col_rows() * g.col_cols(g.n))],
            KernelOp::Col2im(g) => vec![sym(g.col_rows() * g.col_cols(g.n)), sym(g.x_len())],
            KernelOp::ConvForward(g) => vec![sym(g.x_len()), sym(g.weight_len())],
            KernelOp::ConvBackwardData(g) => vec![sym(g.y_len()), sym(g.weight_len())],
            KernelOp::ConvBackwardFilter(g) => vec![sym(g.x_len()), sym(g.y_len())],
            KernelOp::MaxPoolForward(g) | KernelOp::AvgPoolForward(g) => vec![sym(g.x_len())],
            KernelOp::MaxPoolBackward(g) | KernelOp::AvgPoolBackward(g) => vec![sym(g.y_len())],
            KernelOp::AdaptiveAvgPoolForward(g) => vec![sym(g.x_len())],
            KernelOp::AdaptiveAvgPoolBackward(g) => vec![sym(g.y_len())],
            // x, gamma, beta, running mean, running var.
            KernelOp::BatchNormForwardTrain(g) => {
                vec![sym(g.len()), (g.c, 0.5, 1.5), sym(g.c), sym(g.c), (g.c, 0.5, 1.5)]
            }
            // dy, x, gamma, saved mean, saved invstd.
            KernelOp::BatchNormBackward(g) => {
                vec![sym(g.len()), sym(g.len()), (g.c, 0.5, 1.5), (g.c, -0.5, 0.5), (g.c, 0.5, 2.0)]
            }
            KernelOp::SoftmaxCrossEntropy { n, classes } => vec![(n * classes, -4.0, 4.0)],
            // param, grad, momentum buffer.
            KernelOp::Sgd { len } => vec![sym(len), sym(len), sym(len)],
            // param, grad, m, v (v is a running mean of squares: non-negative).
            KernelOp::Adam { len } => vec![sym(len), sym(len), (len, -0.1, 0.1), (len, 0.0, 0.01)],
        }
    }

    /// Draws the operands from `seed`: uniform values, class labels for the loss, and for max-pool
    /// backward the argmax indices of a random input (from the CPU reference's forward).
    pub fn host_operands(&self, seed: u64) -> Result<HostOperands> {
        let mut rng = Rng::new(seed);
        let values = self
            .operand_ranges()
            .into_iter()
            .map(|(len, lo, hi)| (0..len).map(|_| rng.uniform_range(lo, hi) as f32).collect())
            .collect();
        let idx = match *self {
            KernelOp::SoftmaxCrossEntropy { n, classes } => Some((0..n).map(|_| rng.below(classes as u64) as u32).collect()),
            KernelOp::MaxPoolBackward(g) => {
                let cpu = CpuBackend::new();
                let x: Vec<f32> = (0..g.x_len()).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
                let (_, indices) = crate::ops::PoolOps::<f32>::max_pool2d_forward(&cpu, &cpu.upload(&x)?, &g)?;
                Some(indices.to_vec())
            }
            _ => None,
        };
        Ok(HostOperands { values, idx })
    }

    /// Runs the op once. Returns the buffers it created; operands listed by `written_operands`
    /// were updated in place.
    pub fn execute<E: Element, B: Backend<E>>(&self, b: &B, ops: &mut Operands<E, B>) -> Result<Vec<B::Buf>> {
        let v = &mut ops.bufs;
        let idx = ops.idx.as_ref();
        Ok(match *self {
            KernelOp::Gemm { trans_a, trans_b, m, n, k } => {
                let (a, rest) = v.split_at_mut(1);
                let (bm, c) = rest.split_at_mut(1);
                b.gemm(&GemmSpec::new(trans_a, trans_b, m, n, k), &a[0], &bm[0], &mut c[0])?;
                vec![]
            }
            KernelOp::Im2col(g) => {
                let (x, cols) = v.split_at_mut(1);
                b.im2col(&x[0], &g, 0, g.n, &mut cols[0])?;
                vec![]
            }
            KernelOp::Col2im(g) => {
                let (cols, dx) = v.split_at_mut(1);
                b.col2im(&cols[0], &g, 0, g.n, &mut dx[0])?;
                vec![]
            }
            KernelOp::ConvForward(g) if g.is_depthwise() => vec![b.depthwise_conv2d_forward(&v[0], &v[1], None, &g)?],
            KernelOp::ConvForward(g) => vec![b.conv2d_forward(&v[0], &v[1], None, &g)?],
            KernelOp::ConvBackwardData(g) if g.is_depthwise() => vec![b.depthwise_conv2d_backward_data(&v[0], &v[1], &g)?],
            KernelOp::ConvBackwardData(g) => vec![b.conv2d_backward_data(&v[0], &v[1], &g)?],
            KernelOp::ConvBackwardFilter(g) if g.is_depthwise() => {
                vec![b.depthwise_conv2d_backward_filter(&v[0], &v[1], &g)?]
            }
            KernelOp::ConvBackwardFilter(g) => vec![b.conv2d_backward_filter(&v[0], &v[1], &g)?],
            KernelOp::MaxPoolForward(g) => {
                let (y, _indices) = b.max_pool2d_forward(&v[0], &g)?;
                vec![y]
            }
            KernelOp::MaxPoolBackward(g) => vec![b.max_pool2d_backward(&v[0], expect_idx(idx), &g)?],
            KernelOp::AvgPoolForward(g) => vec![b.avg_pool2d_forward(&v[0], &g)?],
            KernelOp::AvgPoolBackward(g) => vec![b.avg_pool2d_backward(&v[0], &g)?],
            KernelOp::AdaptiveAvgPoolForward(g) => vec![b.adaptive_avg_pool2d_forward(&v[0], &g)?],
            KernelOp::AdaptiveAvgPoolBackward(g) => vec![b.adaptive_avg_pool2d_backward(&v[0], &g)?],
            KernelOp::BatchNormForwardTrain(g) => {
                let (inputs, running) = v.split_at_mut(3);
                let (mean, var) = running.split_at_mut(1);
                let (y, saved) =
                    b.batch_norm2d_forward_train(&inputs[0], &inputs[1], &inputs[2], &mut mean[0], &mut var[0], BN_MOMENTUM, &g)?;
                vec![y, saved.mean, saved.invstd]
            }
            KernelOp::BatchNormBackward(g) => {
                // The saved statistics are operands 3 and 4; lend them to the op and take them back.
                let invstd = v.pop().expect("five operands");
                let mean = v.pop().expect("five operands");
                let saved = BatchNormSaved { mean, invstd };
                let result = b.batch_norm2d_backward(&v[0], &v[1], &v[2], &saved, &g);
                v.push(saved.mean);
                v.push(saved.invstd);
                let (dx, dgamma, dbeta) = result?;
                vec![dx, dgamma, dbeta]
            }
            KernelOp::SoftmaxCrossEntropy { n, classes } => {
                let (loss, dlogits) = b.softmax_cross_entropy(&v[0], expect_idx(idx), n, classes, 0.0)?;
                vec![loss, dlogits]
            }
            KernelOp::Sgd { .. } => {
                let (param, rest) = v.split_at_mut(1);
                let (grad, momentum) = rest.split_at_mut(1);
                b.sgd_step(&mut param[0], &grad[0], &mut momentum[0], &SGD, false)?;
                vec![]
            }
            KernelOp::Adam { .. } => {
                let (param, rest) = v.split_at_mut(1);
                let (grad, rest) = rest.split_at_mut(1);
                let (m, var) = rest.split_at_mut(1);
                b.adam_step(&mut param[0], &grad[0], &mut m[0], &mut var[0], &ADAM, ADAM_STEP)?;
                vec![]
            }
        })
    }

    /// Operands the op updates in place, checked like its outputs.
    pub fn written_operands(&self) -> &'static [usize] {
        match self {
            KernelOp::Gemm { .. } => &[2],
            KernelOp::Im2col(_) | KernelOp::Col2im(_) => &[1],
            KernelOp::BatchNormForwardTrain(_) => &[3, 4],
            KernelOp::Sgd { .. } => &[0, 2],
            KernelOp::Adam { .. } => &[0, 2, 3],
            _ => &[],
        }
    }

    /// Floating-point operations of one call as the algorithm needs them (an FMA is 2; a
    /// comparison or an exp counts 1), independent of how a kernel implements it.
    pub fn flops(&self) -> f64 {
        let f = |v: usize| v as f64;
        match *self {
            KernelOp::Gemm { m, n, k, .. } => 2.0 * f(m) * f(n) * f(k),
            KernelOp::Im2col(_) | KernelOp::Col2im(_) => 0.0,
            KernelOp::ConvForward(g) | KernelOp::ConvBackwardData(g) | KernelOp::ConvBackwardFilter(g) => 2.0 * g.macs() as f64,
            KernelOp::MaxPoolForward(g) | KernelOp::AvgPoolForward(g) => f(g.y_len() * g.kh * g.kw),
            KernelOp::MaxPoolBackward(g) => f(g.y_len()),
            KernelOp::AvgPoolBackward(g) => f(g.y_len() * g.kh * g.kw),
            KernelOp::AdaptiveAvgPoolForward(g) | KernelOp::AdaptiveAvgPoolBackward(g) => f(g.x_len()),
            // Sum, sum of squares, then one FMA per element.
            KernelOp::BatchNormForwardTrain(g) => 5.0 * f(g.len()),
            // Two per-channel dot products, then x-hat and the FMA chain of dx.
            KernelOp::BatchNormBackward(g) => 8.0 * f(g.len()),
            // Max, exp, sum, and the gradient.
            KernelOp::SoftmaxCrossEntropy { n, classes } => 5.0 * f(n * classes),
            KernelOp::Sgd { len } => 5.0 * f(len),
            KernelOp::Adam { len } => 14.0 * f(len),
        }
    }

    /// Bytes one call must move at least: every input read once, every output written once.
    pub fn min_bytes(&self) -> f64 {
        let words = |v: usize| 4.0 * v as f64;
        match *self {
            KernelOp::Gemm { m, n, k, .. } => words(m * k + k * n + m * n),
            KernelOp::Im2col(g) | KernelOp::Col2im(g) => words(g.x_len() + g.col_rows() * g.col_cols(g.n)),
            KernelOp::ConvForward(g) | KernelOp::ConvBackwardData(g) | KernelOp::ConvBackwardFilter(g) => {
                words(g.x_len() + g.weight_len() + g.y_len())
            }
            // y, the argmax indices and x.
            KernelOp::MaxPoolForward(g) => words(g.x_len() + 2 * g.y_len()),
            KernelOp::MaxPoolBackward(g) => words(g.x_len() + 2 * g.y_len()),
            KernelOp::AvgPoolForward(g) | KernelOp::AvgPoolBackward(g) => words(g.x_len() + g.y_len()),
            KernelOp::AdaptiveAvgPoolForward(g) | KernelOp::AdaptiveAvgPoolBackward(g) => words(g.x_len() + g.y_len()),
            KernelOp::BatchNormForwardTrain(g) => words(2 * g.len()),
            KernelOp::BatchNormBackward(g) => words(3 * g.len()),
            KernelOp::SoftmaxCrossEntropy { n, classes } => words(2 * n * classes + n),
            KernelOp::Sgd { len } => words(5 * len),
            KernelOp::Adam { len } => words(7 * len),
        }
    }

    /// The longest sum that forms one output value: f32 rounding grows with it.
    fn reduction_len(&self) -> usize {
        match *self {
            KernelOp::Gemm { k, .. } => k,
            KernelOp::Col2im(g) => g.kh * g.kw,
            KernelOp::ConvForward(g) => g.c_in_per_group() * g.kh * g.kw,
            KernelOp::ConvBackwardData(g) => g.c_out_per_group() * g.kh * g.kw,
            KernelOp::ConvBackwardFilter(g) => g.n * g.oh * g.ow,
            KernelOp::MaxPoolBackward(g) | KernelOp::AvgPoolForward(g) | KernelOp::AvgPoolBackward(g) => g.kh * g.kw,
            KernelOp::AdaptiveAvgPoolForward(g) => g.h.div_ceil(g.oh) * g.w.div_ceil(g.ow),
            KernelOp::BatchNormForwardTrain(g) | KernelOp::BatchNormBackward(g) => g.count(),
            KernelOp::SoftmaxCrossEntropy { n, classes } => n.max(classes),
            _ => 1,
        }
    }

    /// (absolute, relative) tolerance of an f32 result against the f64 reference: |got - want|
    /// <= atol + rtol * |want|. Rounding of a sum of r terms of size ~1 grows about like r * eps
    /// at worst, so atol grows with the reduction length; a wrong kernel misses by O(1) or more.
    pub fn tolerance(&self) -> (f64, f64) {
        (1e-5 + 1e-6 * self.reduction_len() as f64, 1e-4)
    }
}

/// The index operand the ops that need one were given by `host_operands`.
fn expect_idx<T>(idx: Option<&T>) -> &T {
    idx.expect("host_operands draws indices for every op that reads them")
}

impl HostOperands {
    /// The operands on `backend`, converted to its element type (exactly, for f64).
    pub fn upload<E: Element, B: Device<E>>(&self, backend: &B) -> Result<Operands<E, B>> {
        let bufs = self
            .values
            .iter()
            .map(|v| backend.upload(&v.iter().map(|&x| E::from_f64(x as f64)).collect::<Vec<E>>()))
            .collect::<Result<Vec<_>>>()?;
        let idx = self.idx.as_ref().map(|i| backend.upload_idx(i)).transpose()?;
        Ok(Operands { bufs, idx })
    }
}

/// Every value an op produced, in a fixed order (created buffers, then written operands), on
/// the host as f64.
pub fn results<E: Element, B: Backend<E>>(op: &KernelOp, b: &B, created: &[B::Buf], ops: &Operands<E, B>) -> Result<Vec<Vec<f64>>> {
    let download = |buf: &B::Buf| b.download(buf).map(|v| v.iter().map(|&x| Element::to_f64(x)).collect::<Vec<f64>>());
    let mut out = created.iter().map(download).collect::<Result<Vec<_>>>()?;
    for &i in op.written_operands() {
        out.push(download(&ops.bufs[i])?);
    }
    Ok(out)
}
