//! Inverted dropout with a counter-based mask: element i is kept when
//! `dropout_uniform(seed, i) >= p`, and kept elements are scaled by 1/(1-p). The same function in
//! every device's code gives bit-identical masks on the CPU, the simulator and a GPU.
//!
//! A node's mask seed is `mask_seed(step seed, node)`. The step seed is read from device memory
//! (two 32-bit words, [`step_seed_words`]) rather than passed by value, so a training step
//! replayed from a CUDA graph draws a fresh mask each time: the host writes the next step's seed
//! before each launch.

pub mod cases;
mod cpu;
mod node;

pub use node::Dropout;
mod cuda;

use crate::device::Device;
use crate::element::Element;
use crate::error::{Error, Result};

/// splitmix64's finaliser of (seed + (i+1) * golden ratio): a well-mixed 64-bit hash.
#[inline]
pub fn dropout_hash(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add((i.wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The seed of node `node`'s mask in a step whose seed is `step_seed`.
pub fn mask_seed(step_seed: u64, node: u64) -> u64 {
    dropout_hash(step_seed, node)
}

/// A step seed as the two words (low, high) the dropout kernels read.
pub fn step_seed_words(step_seed: u64) -> [u32; 2] {
    [step_seed as u32, (step_seed >> 32) as u32]
}

/// The step seed held in `words` (from [`step_seed_words`]).
pub(crate) fn step_seed_of(words: &[u32]) -> Result<u64> {
    match *words {
        [low, high] => Ok(u64::from(low) | (u64::from(high) << 32)),
        _ => Err(Error::shape(format!("a dropout step seed is 2 words, got {}", words.len()))),
    }
}

/// Uniform in [0, 1) with 24 bits, exactly representable in f32: (hash >> 40) / 2^24.
#[inline]
pub fn dropout_uniform(seed: u64, i: u64) -> f32 {
    (dropout_hash(seed, i) >> 40) as f32 * (1.0 / 16_777_216.0)
}

/// 2^24: `dropout_uniform` is (hash >> 40) / 2^24.
const UNIFORM_STEPS: f64 = 16_777_216.0;

/// The smallest 24-bit hash value that is kept: k / 2^24 >= p  <=>  k >= ceil(p * 2^24), exact in
/// f64 (p * 2^24 only shifts the exponent).
pub(crate) fn keep_threshold(p: f64) -> u32 {
    (p * UNIFORM_STEPS).ceil() as u32
}

/// The drop probability every device accepts: 0 <= p < 1 (p = 1 would scale by 1/0).
pub(crate) fn check_probability(p: f64) -> Result<()> {
    if (0.0..1.0).contains(&p) {
        Ok(())
    } else {
        Err(Error::config(format!("dropout probability must be in [0, 1), got {p}")))
    }
}

pub trait DropoutOps<E: Element>: Device<E> {
    /// (y, mask) where mask[i] = 1/(1-p) if kept else 0 and y = x * mask, 0 <= p < 1, with the
    /// mask of seed `mask_seed(step seed, node)` and the step seed read from `step_seed` (the
    /// words of [`step_seed_words`]) when the work runs.
    fn dropout_forward(&self, x: &Self::Buf, p: f64, step_seed: &Self::IdxBuf, node: u64) -> Result<(Self::Buf, Self::Buf)>;
    /// dx = dy * mask
    fn dropout_backward(&self, dy: &Self::Buf, mask: &Self::Buf) -> Result<Self::Buf>;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threshold is the boundary of `k / 2^24 >= p` over the 24-bit values k.
    #[test]
    fn threshold_is_the_first_kept_uniform() {
        for p in [0.0, 1e-9, 0.1, 0.25, 0.3, 0.5, 0.7, 0.999_999_99] {
            let t = keep_threshold(p);
            assert!(t as f64 / UNIFORM_STEPS >= p, "p={p}: threshold {t} is dropped");
            if t > 0 {
                assert!(((t - 1) as f64 / UNIFORM_STEPS) < p, "p={p}: {} is kept", t - 1);
            }
        }
        assert_eq!(keep_threshold(0.5), 1 << 23);
    }
}
