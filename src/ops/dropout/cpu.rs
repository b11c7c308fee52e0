//! Inverted dropout on the CPU with the counter-based mask shared by every device.

use super::{check_probability, dropout_hash, keep_threshold, mask_seed, step_seed_of, DropoutOps};
use crate::cpu::par::{zip_map, CHUNK};
use crate::cpu::{CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::Result;
use crate::ops::check::expect_len;
use rayon::prelude::*;

impl<E: Element> DropoutOps<E> for CpuBackend {
    fn dropout_forward(&self, x: &CpuBuf<E>, p: f64, step_seed: &CpuBuf<u32>, node: u64) -> Result<(CpuBuf<E>, CpuBuf<E>)> {
        check_probability(p)?;
        let seed = mask_seed(step_seed_of(step_seed)?, node);
        let keep_scale: E = E::from_f64(1.0 / (1.0 - p));
        // Comparing the hash's top 24 bits with keep_threshold(p) gives the mask of
        // `dropout_uniform >= p` without converting every hash to floating point, which costs
        // several times the hash itself.
        let threshold = u64::from(keep_threshold(p));
        // Indexed by the keep decision rather than branched on it: a branch would be mispredicted
        // for about min(p, 1 - p) of the elements.
        let mask_values = [E::zero(), keep_scale];
        let mut mask = vec![E::zero(); x.len()];
        mask.par_chunks_mut(CHUNK)
            .enumerate()
            .for_each(|(chunk, mc)| {
                let first = (chunk * CHUNK) as u64;
                for (i, m) in mc.iter_mut().enumerate() {
                    let keep = dropout_hash(seed, first + i as u64) >> 40 >= threshold;
                    *m = mask_values[usize::from(keep)];
                }
            });
        let y = zip_map(x, &mask, |x, m| x * m);
        Ok((self.wrap(y), self.wrap(mask)))
    }

    fn dropout_backward(&self, dy: &CpuBuf<E>, mask: &CpuBuf<E>) -> Result<CpuBuf<E>> {
        expect_len("dropout backward", "mask", mask.len(), dy.len())?;
        Ok(self.wrap(zip_map(dy, mask, |dy, m| dy * m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testutil::{buf, error_text, random};
    use crate::ops::dropout::{dropout_uniform, step_seed_words};

    /// Dropout as node 0 of a step seeded `step_seed`.
    fn forward<E: Element>(cpu: &CpuBackend, x: &CpuBuf<E>, p: f64, step_seed: u64) -> Result<(CpuBuf<E>, CpuBuf<E>)> {
        cpu.dropout_forward(x, p, &cpu.wrap(step_seed_words(step_seed).to_vec()), 0)
    }

    #[test]
    fn keeps_about_one_minus_p_and_scales_the_kept() {
        let cpu = CpuBackend::new();
        let len = 40_000;
        let x = buf(&cpu, &vec![2.0; len]);
        // 0.25 lies on the 2^-24 grid of the uniforms, 0.5 + 2^-30 between two grid points.
        for p in [0.1, 0.25, 0.5 + 2f64.powi(-30), 0.8] {
            let (y, mask) = forward(&cpu, &x, p, 42).unwrap();
            let kept = mask.iter().filter(|&&m| m != 0.0).count();
            let rate = kept as f64 / len as f64;
            // Binomial standard deviation is at most 0.0025 here; allow four of them.
            assert!((rate - (1.0 - p)).abs() < 0.01, "p {p}: kept {rate}");
            for (i, (&m, &y)) in mask.iter().zip(y.iter()).enumerate() {
                let keep = f64::from(dropout_uniform(mask_seed(42, 0), i as u64)) >= p;
                assert_eq!(
                    m,
                    if keep { 1.0 / (1.0 - p) } else { 0.0 },
                    "mask[{i}] for p {p}"
                );
                assert_eq!(y, 2.0 * m);
            }
        }
    }

    #[test]
    fn zero_probability_keeps_everything_unscaled() {
        let cpu = CpuBackend::new();
        let x = random(1000, 3);
        let (y, mask) = forward(&cpu, &buf(&cpu, &x), 0.0, 9).unwrap();
        assert_eq!(y.to_vec(), x);
        assert!(mask.iter().all(|&m| m == 1.0));
    }

    #[test]
    fn mask_depends_on_seed_only_and_matches_between_f32_and_f64() {
        let cpu = CpuBackend::new();
        let len = 3 * CHUNK + 17;
        let (_, a) = forward(&cpu, &cpu.wrap(vec![1.0f32; len]), 0.3, 5).unwrap();
        let (_, b) = forward(&cpu, &buf(&cpu, &vec![1.0; len]), 0.3, 5).unwrap();
        let (_, c) = forward(&cpu, &buf(&cpu, &vec![1.0; len]), 0.3, 6).unwrap();
        let kept = |m: &[f64]| m.iter().map(|&v| v != 0.0).collect::<Vec<_>>();
        let a64: Vec<f64> = a.iter().map(|&v| v as f64).collect();
        assert_eq!(kept(&a64), kept(&b));
        assert_ne!(kept(&b), kept(&c));
    }

    #[test]
    fn backward_applies_the_mask() {
        let cpu = CpuBackend::new();
        let mask = buf(&cpu, &[2.0, 0.0, 2.0]);
        let dx = cpu
            .dropout_backward(&buf(&cpu, &[1.0, 5.0, -3.0]), &mask)
            .unwrap();
        assert_eq!(dx.to_vec(), vec![2.0, 0.0, -6.0]);
        assert_eq!(
            error_text(cpu.dropout_backward(&buf(&cpu, &[1.0; 2]), &mask)),
            "shape error: dropout backward: mask has 3 elements but 2 are needed"
        );
    }

    #[test]
    fn probability_outside_zero_to_one_is_an_error() {
        let cpu = CpuBackend::new();
        let x = buf(&cpu, &[1.0; 4]);
        for p in [1.0, -0.1, f64::NAN] {
            let err = error_text(forward(&cpu, &x, p, 1));
            assert!(
                err.starts_with("invalid configuration: dropout probability must be in [0, 1)"),
                "{err}"
            );
        }
    }
}
