//! Optimiser benchmark cases: one SGD-with-momentum and one Adam step over a tensor of
//! ResNet-18's parameter count; the simulator updates a 1/16 slice of it.

use super::{AdamParams, SgdParams};
use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{BenchCases, BenchKernel, FamilyCases, Operands, RunKernel};
use crate::ops::Backend;

/// The ResNet-18 parameter count: the optimiser cases update a tensor of this many values.
const RESNET18_PARAMS: usize = 11_689_512;
/// The optimiser cases simulate this fraction of it.
const OPTIM_SIM_DIVISOR: usize = 16;

/// The usual CNN recipe: momentum 0.9, weight decay 5e-4.
const SGD: SgdParams = SgdParams { lr: 0.1, momentum: 0.9, dampening: 0.0, nesterov: false, weight_decay: 5e-4 };
/// PyTorch's defaults and weight decay 1e-4.
const ADAM: AdamParams = AdamParams { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-4, decoupled: false };
const ADAM_STEP: u64 = 10;

pub struct Cases;

impl FamilyCases for Cases {
    fn bench_cases(&self, cases: &mut BenchCases) -> Result<()> {
        let sim_len = RESNET18_PARAMS.div_ceil(OPTIM_SIM_DIVISOR);
        let scale = RESNET18_PARAMS as f64 / sim_len as f64;
        cases.add("sgd_momentum resnet18 params".into(), OptimKernel::Sgd { len: RESNET18_PARAMS }, OptimKernel::Sgd { len: sim_len }, scale);
        cases.add("adam resnet18 params".into(), OptimKernel::Adam { len: RESNET18_PARAMS }, OptimKernel::Adam { len: sim_len }, scale);
        Ok(())
    }
}

#[derive(Clone, Copy)]
pub(crate) enum OptimKernel {
    /// SGD with [`SGD`]'s settings, after the first step.
    Sgd { len: usize },
    /// Adam with [`ADAM`]'s settings at step [`ADAM_STEP`].
    Adam { len: usize },
}

impl BenchKernel for OptimKernel {
    fn operand_ranges(&self) -> Vec<(usize, f64, f64)> {
        let sym = |len: usize| (len, -1.0, 1.0);
        match *self {
            // param, grad, momentum buffer.
            OptimKernel::Sgd { len } => vec![sym(len), sym(len), sym(len)],
            // param, grad, m, v (v is a running mean of squares: non-negative).
            OptimKernel::Adam { len } => vec![sym(len), sym(len), (len, -0.1, 0.1), (len, 0.0, 0.01)],
        }
    }
    fn written_operands(&self) -> &'static [usize] {
        match self {
            OptimKernel::Sgd { .. } => &[0, 2],
            OptimKernel::Adam { .. } => &[0, 2, 3],
        }
    }
    fn flops(&self) -> f64 {
        match *self {
            OptimKernel::Sgd { len } => 5.0 * len as f64,
            OptimKernel::Adam { len } => 14.0 * len as f64,
        }
    }
    fn min_bytes(&self) -> f64 {
        match *self {
            OptimKernel::Sgd { len } => 4.0 * (5 * len) as f64,
            OptimKernel::Adam { len } => 4.0 * (7 * len) as f64,
        }
    }
    fn describe(&self) -> String {
        match self {
            OptimKernel::Sgd { len } | OptimKernel::Adam { len } => format!("{len} values"),
        }
    }
}

impl RunKernel for OptimKernel {
    fn execute<E: Element, B: Backend<E>>(&self, b: &B, ops: &mut Operands<E, B>) -> Result<Vec<B::Buf>> {
        let (param, rest) = ops.bufs.split_at_mut(1);
        let (grad, state) = rest.split_at_mut(1);
        match self {
            OptimKernel::Sgd { .. } => b.sgd_step(&mut param[0], &grad[0], &mut state[0], &SGD, false)?,
            OptimKernel::Adam { .. } => {
                let (m, v) = state.split_at_mut(1);
                b.adam_step(&mut param[0], &grad[0], &mut m[0], &mut v[0], &ADAM, ADAM_STEP)?
            }
        }
        Ok(vec![])
    }
}
