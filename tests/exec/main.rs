//! The graph executor: autograd against finite differences, its memory plan, dropout,
//! optimisers, and the GPU backend against the CPU reference.
//! One binary per layer (see README, Tests), so the crate is linked a handful of times, not once per file.

mod exec_allocator;
mod exec_dropout;
mod exec_fold;
mod exec_fuse;
mod exec_gpu;
mod exec_grad_buckets;
mod exec_layout;
mod exec_graph;
mod exec_gradcheck;
mod exec_memory;
mod exec_optim;
mod exec_precision;
mod exec_staging;
mod exec_sync_bn;
