//! The benchmarked kernel calls of every op family (each written in `src/ops/<family>/cases.rs`):
//! GEMM square and skinny, convolution at ResNet-18 CIFAR shapes, MobileNetV2's
//! pointwise and depthwise convolutions, pooling, batch norm, softmax-cross-entropy and the
//! optimisers.

use crate::error::{Error, Result};
use crate::ops::cases::BenchCases;
use crate::ops::families;
pub use crate::ops::cases::BenchCase;

/// Every case with the batch-dependent shapes at `batch` images, family by family.
pub fn kernel_cases(batch: usize) -> Result<Vec<BenchCase>> {
    if batch == 0 {
        return Err(Error::config("--batch must be at least 1"));
    }
    let mut cases = BenchCases::new(batch);
    for family in families() {
        cases.set_family(family.name);
        family.cases.bench_cases(&mut cases)?;
    }
    Ok(cases.into_cases())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_the_sim_scale_matches_the_flop_ratio() {
        let cases = kernel_cases(8).unwrap();
        let mut names: Vec<&str> = cases.iter().map(|c| c.name.as_str()).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), cases.len());
        for c in &cases {
            let (full, sim) = (c.full.flops(), c.sim.flops());
            if full > 0.0 {
                assert!((full / sim - c.sim_scale).abs() < 1e-9 * c.sim_scale, "{}: {full} / {sim} vs {}", c.name, c.sim_scale);
            }
        }
        assert!(kernel_cases(0).is_err());
    }
}
