//! The GPU backend: launch geometry and argument marshalling for every op, written once over the
//! [`driver::Driver`] trait so a real GPU (cudarc) and the PTX simulator run the same code.

pub mod backend;
pub mod nvrtc_locate;
pub mod driver;
pub mod modules;

pub use backend::{GpuBackend, GpuBuf};
