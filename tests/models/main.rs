//! The model zoo: parameter counts, summaries, forward/backward on the CPU and the simulator,
//! and short synthetic training runs.
//! One binary per layer (see README, Tests), so the crate is linked a handful of times, not once per file.

mod models_exec;
mod models_params;
mod models_sim;
mod models_train_synthetic;
mod models_weights;
