//! Benchmarks: kernel microbenchmarks (validated against the f64 CPU reference, timed on the CPU
//! and on CUDA devices, and predicted for other GPUs from the PTX simulator's counters) and the
//! model training/inference throughput behind `ferronet bench`.

pub mod args;
pub mod cases;
pub mod cuda;
pub mod kernels;
pub mod model;
pub mod predict;
pub mod report;
pub mod resources;
pub mod tensor_core;
pub mod timing;
pub mod validate;
