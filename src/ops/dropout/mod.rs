//! Inverted dropout with a counter-based mask: element i is kept when
//! `dropout_uniform(seed, i) >= p`, and kept elements are scaled by 1/(1-p). The same function in
//! every device's code gives bit-identical masks on the CPU, the simulator and a GPU.

mod cpu;
mod cuda;

use crate::device::Device;
use crate::element::Element;
use crate::error::Result;

/// splitmix64's finaliser of (seed + (i+1) * golden ratio): a well-mixed 64-bit hash.
#[inline]
pub fn dropout_hash(seed: u64, i: u64) -> u64 {
    let mut z = seed.wrapping_add((i.wrapping_add(1)).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) with 24 bits, exactly representable in f32: (hash >> 40) / 2^24.
#[inline]
pub fn dropout_uniform(seed: u64, i: u64) -> f32 {
    (dropout_hash(seed, i) >> 40) as f32 * (1.0 / 16_777_216.0)
}

pub trait DropoutOps<E: Element>: Device<E> {
    /// (y, mask) where mask[i] = 1/(1-p) if kept else 0 and y = x * mask. 0 <= p < 1.
    fn dropout_forward(&self, x: &Self::Buf, p: f64, seed: u64) -> Result<(Self::Buf, Self::Buf)>;
    /// dx = dy * mask
    fn dropout_backward(&self, dy: &Self::Buf, mask: &Self::Buf) -> Result<Self::Buf>;
}
