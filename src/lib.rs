//! ferronet: a deep-learning engine for CNN training with hand-written CUDA kernels, a rayon CPU
//! reference backend and a PTX simulator that runs the kernels where no GPU exists.

pub mod bench;
pub mod cli;
pub mod cpu;
pub mod data;
pub mod device;
pub mod dist;
pub mod element;
pub mod error;
pub mod exec;
pub mod gpu;
pub mod gradcheck;
pub mod graph;
#[cfg(test)]
mod layering;
pub mod models;
pub mod ops;
pub mod precision;
pub mod rng;
pub mod select;
pub mod shape;
pub mod sim;
pub mod study;
pub mod tolerance;
pub mod train;
pub mod weights;

pub use error::{Error, Result};
