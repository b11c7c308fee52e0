//! Dropout cases: gradient checks at several drop rates, p = 0 included (the mask is a function
//! of the seed, so forward and backward are deterministic).

use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{FamilyCases, GradCases, GradOp};
use crate::ops::Backend;
use super::step_seed_words;

pub struct Cases;

impl FamilyCases for Cases {
    fn grad_cases(&self, cases: &mut GradCases) {
        for &(p, seed, len) in &[(0.5, 7u64, 100), (0.2, 3, 64), (0.0, 1, 10)] {
            let x = cases.symmetric(len);
            cases.push("dropout", format!("p={p} seed={seed} len={len}"), DropoutGrad { p, seed }, vec![x], len);
        }
    }
}

struct DropoutGrad {
    p: f64,
    seed: u64,
}

impl GradOp for DropoutGrad {
    fn run<E: Element, B: Backend<E>>(&self, b: &B, inputs: &[B::Buf], dy: &B::Buf, _dy_host: &[E]) -> Result<(B::Buf, Vec<B::Buf>)> {
        let step_seed = b.upload_idx(&step_seed_words(self.seed))?;
        let (y, mask) = b.dropout_forward(&inputs[0], self.p, &step_seed, 0)?;
        Ok((y, vec![b.dropout_backward(dy, &mask)?]))
    }
    fn stored_inputs(&self) -> usize {
        1
    }
}
