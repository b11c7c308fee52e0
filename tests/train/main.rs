//! Training end to end: the default run, resume, errors, non-finite losses, Fashion-MNIST, lr-find, and
//! the reliability of the `ferronet` binary (kill, lock, numerical faults, out of memory).
//! One binary per layer (see README, Tests), so the crate is linked a handful of times, not once per file.

mod reliability_kill;
mod reliability_lock;
mod reliability_numerical;
mod reliability_oom;
mod train_data_parallel;
mod train_data_parallel_nccl;
mod train_default;
mod train_errors;
mod train_fashion_mnist;
mod train_graph;
mod train_lr_find;
mod train_nonfinite;
mod train_precision;
mod train_resume;
