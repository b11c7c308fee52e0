//! Loss cases: gradient checks of softmax-cross-entropy with and without label smoothing, and the
//! benchmarked call over ImageNet's 1000 classes, four rows per image.

use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{BenchCases, BenchKernel, FamilyCases, GradCases, GradOp, Operands, RunKernel};
use crate::ops::Backend;
use crate::rng::Rng;

pub struct Cases;

impl FamilyCases for Cases {
    fn grad_cases(&self, cases: &mut GradCases) {
        for &(n, classes, smoothing) in &[(4, 5, 0.0), (3, 10, 0.1), (1, 2, 0.0), (5, 3, 0.2)] {
            let logits = cases.uniform(n * classes, -3.0, 3.0);
            let labels: Vec<u32> = (0..n).map(|_| cases.rng().below(classes as u64) as u32).collect();
            let config = format!("n={n} classes={classes} label_smoothing={smoothing}");
            cases.push("softmax_cross_entropy", config, SoftmaxCrossEntropyGrad { n, classes, smoothing, labels }, vec![logits], 1);
        }
    }

    fn bench_cases(&self, cases: &mut BenchCases) -> Result<()> {
        let batch = cases.batch();
        let rows = 4 * batch;
        cases.add(
            format!("softmax_ce {rows}x1000"),
            SoftmaxCrossEntropyKernel { n: rows, classes: 1000 },
            SoftmaxCrossEntropyKernel { n: 4, classes: 1000 },
            batch as f64,
        );
        Ok(())
    }
}

/// The mean loss over the rows; the checked input is the logits.
struct SoftmaxCrossEntropyGrad {
    n: usize,
    classes: usize,
    smoothing: f64,
    labels: Vec<u32>,
}

impl GradOp for SoftmaxCrossEntropyGrad {
    fn run<E: Element, B: Backend<E>>(&self, b: &B, inputs: &[B::Buf], _dy: &B::Buf, dy_host: &[E]) -> Result<(B::Buf, Vec<B::Buf>)> {
        let labels = b.upload_idx(&self.labels)?;
        let (loss, mut dlogits) = b.softmax_cross_entropy(&inputs[0], &labels, self.n, self.classes, self.smoothing)?;
        // The op returns the gradient of the loss itself; the output weight scales it.
        b.scale(dy_host[0], &mut dlogits)?;
        Ok((loss, vec![dlogits]))
    }
    /// The loss is log-sum-exp (at most the largest logit plus ln(classes)) minus a logit, and
    /// each gradient (softmax - target) * dy / n, a probability near 1 minus a target of 1.
    fn term_scales(&self, inputs: &[Vec<f64>], dy: &[f64]) -> Vec<f64> {
        let largest = inputs[0].iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let weight = dy.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        vec![2.0 * largest + (self.classes as f64).ln(), weight / self.n as f64]
    }
}

/// Forward and gradient in one call, no label smoothing.
#[derive(Clone, Copy)]
struct SoftmaxCrossEntropyKernel {
    n: usize,
    classes: usize,
}

impl BenchKernel for SoftmaxCrossEntropyKernel {
    fn operand_ranges(&self) -> Vec<(usize, f64, f64)> {
        vec![(self.n * self.classes, -4.0, 4.0)]
    }
    fn index_operand(&self, rng: &mut Rng) -> Result<Option<Vec<u32>>> {
        Ok(Some((0..self.n).map(|_| rng.below(self.classes as u64) as u32).collect()))
    }
    /// Max, exp, sum, and the gradient.
    fn flops(&self) -> f64 {
        5.0 * (self.n * self.classes) as f64
    }
    fn min_bytes(&self) -> f64 {
        4.0 * (2 * self.n * self.classes + self.n) as f64
    }
    fn reduction_len(&self) -> usize {
        self.n.max(self.classes)
    }
    fn describe(&self) -> String {
        format!("N={} classes={}", self.n, self.classes)
    }
}

impl RunKernel for SoftmaxCrossEntropyKernel {
    fn execute<E: Element, B: Backend<E>>(&self, b: &B, ops: &mut Operands<E, B>) -> Result<Vec<B::Buf>> {
        let labels = ops.idx.as_ref().expect("index_operand draws the labels");
        let (loss, dlogits) = b.softmax_cross_entropy(&ops.bufs[0], labels, self.n, self.classes, 0.0)?;
        Ok(vec![loss, dlogits])
    }
}
