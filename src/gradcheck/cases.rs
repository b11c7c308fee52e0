//! The gradient checks of every op family (each written in `src/ops/<family>/cases.rs`), drawn
//! from one seeded stream so that every configuration has fixed values.

use crate::ops::cases::GradCases;
use crate::ops::families;
pub use crate::ops::cases::GradCase;

/// The seed of the stream every case's inputs and output weights are drawn from.
const SEED: u64 = 0x6772_6164;

/// Every configuration, deterministic (seeded), family by family: kernels 1/3/5/7/11, strides
/// 1/2/4, padding 0/1/2, dilation 1/2, groups 1/2/C, odd spatial sizes, batch 1 and > 1,
/// overlapping pooling windows.
pub fn all_cases() -> Vec<GradCase> {
    let mut cases = GradCases::new(SEED);
    for family in families() {
        family.cases.grad_cases(&mut cases);
    }
    cases.into_cases()
}

/// Every op name the cases cover, as `--op` spells them, in case order.
pub fn op_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    for case in all_cases() {
        if !names.contains(&case.op) {
            names.push(case.op);
        }
    }
    names
}
