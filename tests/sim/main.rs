//! The PTX simulator: NVRTC-compiled test kernels (sim_kernels/) and the project's modules run
//! on it, its arithmetic, sanitizer, runtime features and throughput counters, and the barrier
//! sweep of kernels/ (each __syncthreads() deleted in turn must be reported as a race).
//! One binary per layer (see README, Tests), so the crate is linked a handful of times, not once per file.

mod barrier_sweep;
mod sim_arith;
mod sim_async;
mod sim_conversions;
mod sim_exec;
mod sim_gaps;
mod sim_grid_sync;
mod sim_modules;
mod sim_runtime;
mod sim_sampling;
mod sim_sanitizer;
mod sim_tensor_cores;
mod sim_throughput;
