//! Launch-geometry and argument checks shared by the op launchers in `crate::ops::*::cuda`: the
//! kernels index with 32-bit ints, so every size that reaches them is checked to fit first.

use super::driver::{KernelArg, LaunchConfig};
use crate::error::{Error, Result};

/// Threads per block of the one-thread-per-element kernels.
pub const ELEMENT_BLOCK: u32 = 256;

/// A 1-D launch with one thread per element of a `total`-element tensor (`what` names it in the
/// error when it is too large for 32-bit indexing).
pub fn per_element(total: usize, what: &str) -> Result<LaunchConfig> {
    int(total, &format!("the element count of {what}"))?;
    Ok(LaunchConfig::linear(total, ELEMENT_BLOCK))
}

/// `v` as a kernel's `int` argument.
pub fn int(v: usize, what: &str) -> Result<KernelArg> {
    i32::try_from(v).map(KernelArg::I32).map_err(|_| {
        Error::shape(format!("{what} is {v}, more than the GPU kernels' 32-bit indexing allows"))
    })
}

/// A clear error when a buffer does not hold exactly the elements a geometry needs.
pub fn expect_len(got: usize, want: usize, what: &str) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::shape(format!("{what} has {got} elements, the geometry needs {want}")))
    }
}
