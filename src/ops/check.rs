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

/// Declares a checked geometry `$geom` wrapping its sizes `$dims`: the sizes read through it
/// (it derefs to them, read-only), but only the family's validating constructor makes one, so
/// every geometry a kernel receives was checked.
macro_rules! checked_geometry {
    ($(#[$meta:meta])* $geom:ident => $dims:ident) => {
        $(#[$meta])*
        pub struct $geom {
            dims: $dims,
        }

        impl std::ops::Deref for $geom {
            type Target = $dims;
            fn deref(&self) -> &$dims {
                &self.dims
            }
        }
    };
}
