//! The GPU op tests (the `gpu_*` modules) again, through ferronet's real CUDA path: cudarc, the
//! CUDA driver backend (src/gpu/cuda_driver.rs) and the emulated libcuda over the PTX simulator,
//! so every CI run executes the code a GPU user runs. The loader path must be set before a
//! process starts, so this test runs its own binary again with the emulated driver on it.

use ferronet_test_support::emulated_driver::run_own_tests;

#[test]
fn the_op_tests_pass_through_cudarc_and_the_emulated_driver() {
    // Every test whose path contains `gpu_` (this one's does not, so the child does not recurse).
    run_own_tests("cuda", &["gpu_"]);
}
