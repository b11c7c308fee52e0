//! GPU dropout: kernels/dropout.cu hashes each element index exactly as `dropout_uniform`.

use super::DropoutOps;
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::gpu::driver::KernelArg;
use crate::gpu::grid::{int, per_element};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::ElementwiseOps;

/// 2^24: `dropout_uniform` is (hash >> 40) / 2^24.
const UNIFORM_STEPS: f64 = 16_777_216.0;

/// The smallest 24-bit hash value that is kept: k / 2^24 >= p  <=>  k >= ceil(p * 2^24), exact in
/// f64 (p * 2^24 only shifts the exponent).
fn keep_threshold(p: f64) -> u32 {
    (p * UNIFORM_STEPS).ceil() as u32
}

impl DropoutOps<f32> for GpuBackend {
    fn dropout_forward(&self, x: &GpuBuf<f32>, p: f64, seed: u64) -> Result<(GpuBuf<f32>, GpuBuf<f32>)> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::config(format!("dropout probability must be in [0, 1), got {p}")));
        }
        let n = int(x.len(), "the element count of the dropout input")?;
        let y = self.alloc::<f32>(x.len())?;
        let mask = self.alloc::<f32>(x.len())?;
        let args = [
            x.arg(),
            y.arg(),
            mask.arg(),
            KernelArg::U64(seed),
            KernelArg::U32(keep_threshold(p)),
            KernelArg::F32((1.0 / (1.0 - p)) as f32),
            n,
        ];
        self.launch("dropout", "dropout_forward", per_element(x.len(), "dropout_forward")?, &args)?;
        Ok((y, mask))
    }

    fn dropout_backward(&self, dy: &GpuBuf<f32>, mask: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        self.mul(dy, mask)
    }
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
