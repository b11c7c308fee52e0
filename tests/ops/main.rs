//! Each op's GPU kernels (a real GPU when present, else the PTX simulator) against the CPU f64
//! reference (also through cudarc and the emulated CUDA driver: through_cuda_driver), and the
//! finite-difference gradient checks of every op on the CPU.
//! One binary per layer (see README, Tests), so the crate is linked a handful of times, not once per file.

mod gpu_activation;
mod gpu_channel;
mod gpu_conv;
mod gpu_conv_tc;
mod gpu_dropout;
mod gpu_elementwise;
mod gpu_gemm;
mod gpu_gemm_tc;
mod gpu_layout;
mod gpu_linear;
mod gpu_loss;
mod gpu_norm;
mod gpu_optim;
mod gpu_pool;
mod gpu_precision;
mod gpu_reduce;
mod gradcheck_cpu;
mod through_cuda_driver;
