//! Dataset readers and the input pipeline, the real Fashion-MNIST files, and fuzzing of every
//! reader (and checkpoints) with damaged files.
//! One binary per layer (see README, Tests), so the crate is linked a handful of times, not once per file.

mod data_fashion_mnist;
mod data_pipeline;
mod data_readers;
mod data_resize;
mod fuzz_checkpoint;
mod fuzz_cifar;
mod fuzz_folder;
mod fuzz_idx;
