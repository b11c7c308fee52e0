//! The GPU backend: launch geometry and argument marshalling for every op, written once over the
//! device layer's [`Driver`](crate::device::driver::Driver) trait so a real GPU (`cuda_driver`,
//! over cudarc) and the PTX simulator (`sim`, a peer of this module) run the same code.
//! Opening one of them for `--device` is `select`'s job.

pub mod accounting;
pub mod allocator;
pub mod backend;
pub mod copy_stream;
pub mod cuda_driver;
pub mod graph;
pub mod grid;
pub mod nccl_buckets;
pub mod staging;

pub use backend::{GpuBackend, GpuBuf};
