//! Argument checks shared by every device's op implementations, so that a mismatch reads the
//! same whichever device caught it.

use crate::error::{Error, Result};

/// An `Error::Shape` naming the op, the operand and both lengths when `got != want`.
pub fn expect_len(op: &str, operand: &str, got: usize, want: usize) -> Result<()> {
    if got == want {
        Ok(())
    } else {
        Err(Error::shape(format!(
            "{op}: {operand} has {got} elements but {want} are needed"
        )))
    }
}
