//! Subcommands of the `ferronet` binary. Each `run` returns the process exit code on success
//! (0, or 1 when checks failed) and an [`crate::Error`] for anything the user must fix.

pub mod bench;
pub mod compare;
pub mod devices;
pub mod eval;
pub mod export;
pub mod gradcheck;
pub mod lr_find;
pub mod predict;
pub mod summary;
pub mod train;
