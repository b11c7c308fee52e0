//! An emulated CUDA driver: `libcuda.so` built from ferronet, whose kernels run on ferronet's PTX
//! simulator. cudarc (and any program using the driver API) loads it like the real driver when
//! its directory is first on `LD_LIBRARY_PATH`, so `--device cuda` runs the real CUDA code path
//! on machines without a GPU. The devices are configured by environment variables (config.rs).
//!
//! It is strict where the real driver is: the same error codes for a missing current context,
//! an uninitialised driver, invalid or freed pointers, launches over the device's limits, and
//! kernel faults, which become the context's sticky error. Work on created streams runs late and
//! in an adversarial order (queue.rs). A call it does not implement returns
//! CUDA_ERROR_NOT_SUPPORTED and names itself once on stderr; no entry point unwinds into its
//! caller.
//!
//! Entry points by area: `device` (init, device queries), `context`, `module`, `launch`,
//! `memory`, `stream` (streams and events), `graph` (capture and graphs), `errors` (error
//! names), `unsupported`; `state` holds the handles and `queue` runs work on the simulator.
//! `nccl` (with its socket transport `nccl_link`) is a test double of NCCL over this emulator,
//! loaded as libnccl.so.2 by tests of data-parallel training on CUDA ranks.

mod config;
mod context;
mod device;
mod errors;
mod graph;
mod launch;
mod memory;
mod module;
mod nccl;
mod nccl_link;
mod queue;
mod state;
mod stream;
mod unsupported;
