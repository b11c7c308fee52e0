//! Batch-norm cases: gradient checks of training-mode normalisation, and the benchmarked forward
//! and backward after the ResNet-18 CIFAR convolutions (the first and the last stage).

use super::{BatchNormGeom, BatchNormSaved};
use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{BenchCases, BenchKernel, FamilyCases, GradCases, GradOp, Operands, RunKernel};
use crate::ops::{Activation, Backend};

const BN_MOMENTUM: f64 = 0.1;

pub struct Cases;

impl FamilyCases for Cases {
    fn grad_cases(&self, cases: &mut GradCases) {
        // hw a multiple of 4 (20, 4) reduces 4 values per load. hw = 1 with many images
        // (channels-last activations) reduces along channels: C = 7 puts several rows in a warp,
        // and 150 rows are two ranges of images.
        for &(n, c, hw) in &[(2, 3, 20), (1, 2, 9), (4, 1, 1), (3, 4, 4), (150, 7, 1), (40, 33, 1)] {
            let g = BatchNormGeom::new(n, c, hw, 1e-5).expect("gradcheck batch-norm configs are valid");
            let x = cases.symmetric(g.len());
            let gamma = cases.uniform(c, 0.5, 1.5);
            let beta = cases.symmetric(c);
            cases.push("batch_norm2d", format!("n={n} c={c} hw={hw} training"), BatchNormGrad(g), vec![x, gamma, beta], g.len());
        }
        // The fused batch norm -> (residual add) -> activation, for every activation, per channel
        // (one value per load, and 4: hw = 8) and along channels (hw = 1).
        let shapes = [(2, 3, 6), (2, 2, 8), (130, 2, 1)].map(|(n, c, hw)| BatchNormGeom::new(n, c, hw, 1e-5).expect("the gradcheck batch_norm_act configs are valid"));
        for (g, activation) in shapes.into_iter().flat_map(|g| Activation::ALL.into_iter().map(move |a| (g, a))) {
            for residual in [false, true] {
                let mut inputs = vec![cases.symmetric(g.len())];
                if residual {
                    inputs.push(cases.symmetric(g.len()));
                }
                inputs.extend([cases.uniform(g.c, 0.5, 1.5), cases.symmetric(g.c)]);
                let add = if residual { " +add" } else { "" };
                let name = format!("n={} c={} hw={}{add} +{} training", g.n, g.c, g.hw, activation.name());
                cases.push("batch_norm_act", name, BatchNormActGrad { g, activation, residual }, inputs, g.len());
            }
        }
    }

    fn bench_cases(&self, cases: &mut BenchCases) -> Result<()> {
        let batch = cases.batch();
        for (c, hw) in [(64, 32), (256, 8)] {
            let (full, sim) = (BatchNormGeom::new(batch, c, hw * hw, 1e-5)?, BatchNormGeom::new(1, c, hw * hw, 1e-5)?);
            let shape = format!("{c}x{hw}x{hw}");
            cases.add(format!("bn_fwd_train {shape}"), BatchNormKernel::ForwardTrain(full), BatchNormKernel::ForwardTrain(sim), batch as f64);
            cases.add(format!("bn_bwd {shape}"), BatchNormKernel::Backward(full), BatchNormKernel::Backward(sim), batch as f64);
        }
        Ok(())
    }
}

/// Inputs x, gamma and beta through training-mode forward and backward.
struct BatchNormGrad(BatchNormGeom);

impl GradOp for BatchNormGrad {
    fn run<E: Element, B: Backend<E>>(&self, b: &B, inputs: &[B::Buf], dy: &B::Buf, _dy_host: &[E]) -> Result<(B::Buf, Vec<B::Buf>)> {
        let g = &self.0;
        // Fresh running statistics each call: the checked function is the normalisation alone.
        let mut running_mean = b.zeros(g.c)?;
        let mut running_var = b.upload(&vec![E::one(); g.c])?;
        let (y, saved) =
            b.batch_norm2d_forward_train(&inputs[0], &inputs[1], &inputs[2], &mut running_mean, &mut running_var, BN_MOMENTUM, g)?;
        let (dx, dgamma, dbeta) = b.batch_norm2d_backward(dy, &inputs[0], &inputs[1], &saved, g)?;
        Ok((y, vec![dx, dgamma, dbeta]))
    }
    /// x; gamma and beta are parameters.
    fn stored_inputs(&self) -> usize {
        1
    }
}

/// Inputs x, (residual,) gamma and beta through the fused training forward and backward.
struct BatchNormActGrad {
    g: BatchNormGeom,
    activation: Activation,
    residual: bool,
}

impl GradOp for BatchNormActGrad {
    fn run<E: Element, B: Backend<E>>(&self, b: &B, inputs: &[B::Buf], dy: &B::Buf, _dy_host: &[E]) -> Result<(B::Buf, Vec<B::Buf>)> {
        let g = &self.g;
        let (x, rest) = inputs.split_first().expect("x comes first");
        let (residual, rest) = if self.residual { (Some(&rest[0]), &rest[1..]) } else { (None, rest) };
        let (gamma, beta) = (&rest[0], &rest[1]);
        let mut running_mean = b.zeros(g.c)?;
        let mut running_var = b.upload(&vec![E::one(); g.c])?;
        let (y, saved) =
            b.batch_norm_act_forward_train(x, residual, gamma, beta, &mut running_mean, &mut running_var, BN_MOMENTUM, self.activation, g)?;
        let grads = b.batch_norm_act_backward(dy, x, residual, gamma, beta, &saved, self.activation, g)?;
        let mut out = vec![grads.dx];
        out.extend(grads.dresidual);
        out.extend([grads.dgamma, grads.dbeta]);
        Ok((y, out))
    }
    /// x and the residual; gamma and beta are parameters.
    fn stored_inputs(&self) -> usize {
        1 + usize::from(self.residual)
    }
}

#[derive(Clone, Copy)]
enum BatchNormKernel {
    ForwardTrain(BatchNormGeom),
    Backward(BatchNormGeom),
}

impl BatchNormKernel {
    fn geom(&self) -> &BatchNormGeom {
        match self {
            BatchNormKernel::ForwardTrain(g) | BatchNormKernel::Backward(g) => g,
        }
    }
}

impl BenchKernel for BatchNormKernel {
    fn operand_ranges(&self) -> Vec<(usize, f64, f64)> {
        let g = self.geom();
        let sym = |len: usize| (len, -1.0, 1.0);
        match self {
            // x, gamma, beta, running mean, running var.
            BatchNormKernel::ForwardTrain(_) => vec![sym(g.len()), (g.c, 0.5, 1.5), sym(g.c), sym(g.c), (g.c, 0.5, 1.5)],
            // dy, x, gamma, saved mean, saved invstd.
            BatchNormKernel::Backward(_) => vec![sym(g.len()), sym(g.len()), (g.c, 0.5, 1.5), (g.c, -0.5, 0.5), (g.c, 0.5, 2.0)],
        }
    }
    fn written_operands(&self) -> &'static [usize] {
        match self {
            BatchNormKernel::ForwardTrain(_) => &[3, 4],
            BatchNormKernel::Backward(_) => &[],
        }
    }
    fn flops(&self) -> f64 {
        let len = self.geom().len() as f64;
        match self {
            // Sum, sum of squares, then one FMA per element.
            BatchNormKernel::ForwardTrain(_) => 5.0 * len,
            // Two per-channel dot products, then x-hat and the FMA chain of dx.
            BatchNormKernel::Backward(_) => 8.0 * len,
        }
    }
    fn min_bytes(&self) -> f64 {
        let words = |v: usize| 4.0 * v as f64;
        let len = self.geom().len();
        match self {
            BatchNormKernel::ForwardTrain(_) => words(2 * len),
            BatchNormKernel::Backward(_) => words(3 * len),
        }
    }
    fn reduction_len(&self) -> usize {
        self.geom().count()
    }
    fn describe(&self) -> String {
        let g = self.geom();
        format!("N={} C={} HW={}", g.n, g.c, g.hw)
    }
}

impl RunKernel for BatchNormKernel {
    fn execute<E: Element, B: Backend<E>>(&self, b: &B, ops: &mut Operands<E, B>) -> Result<Vec<B::Buf>> {
        let v = &mut ops.bufs;
        Ok(match self {
            BatchNormKernel::ForwardTrain(g) => {
                let (inputs, running) = v.split_at_mut(3);
                let (mean, var) = running.split_at_mut(1);
                let (y, saved) =
                    b.batch_norm2d_forward_train(&inputs[0], &inputs[1], &inputs[2], &mut mean[0], &mut var[0], BN_MOMENTUM, g)?;
                vec![y, saved.mean, saved.invstd]
            }
            BatchNormKernel::Backward(g) => {
                // The saved statistics are operands 3 and 4; lend them to the op and take them back.
                let invstd = v.pop().expect("five operands");
                let mean = v.pop().expect("five operands");
                let saved = BatchNormSaved { mean, invstd };
                let result = b.batch_norm2d_backward(&v[0], &v[1], &v[2], &saved, g);
                v.push(saved.mean);
                v.push(saved.invstd);
                let (dx, dgamma, dbeta) = result?;
                vec![dx, dgamma, dbeta]
            }
        })
    }
}
