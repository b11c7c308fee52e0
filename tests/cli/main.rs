//! The command line as a user runs it (models, bench, compare, --weights and --init-from, --no-aux, ONNX export in onnxruntime), the PyTorch reference script and the
//! ptxas resource gate of the kernels.
//! One binary per layer (see README, Tests), so the crate is linked a handful of times, not once per file.

mod aux_cli;
mod bench_pytorch_script;
mod bench_smoke;
mod compare_cli;
mod cuda_emu;
mod datasets_cli;
mod models_cli;
mod onnx_cli;
mod ptxas_gate;
mod weights_cli;
