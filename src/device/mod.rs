//! The device layer, below everything that computes: what every device provides before any op
//! (buffers, transfers, memory accounting, its convolution workspace), the [`driver::Driver`]
//! trait the CUDA driver and the PTX simulator implement, the embedded kernel modules and the one
//! NVRTC compile path, and the `--device` request.
//!
//! A device implements [`Device<E>`] for each element type it supports (the CPU: f32 and f64;
//! GPU devices: f32); the op families (the `ops` layer above) add their traits on top of it.

pub mod driver;
pub mod modules;
pub mod nvrtc;
pub mod request;

pub use request::DeviceRequest;

use crate::element::Element;
use crate::error::Result;
use crate::precision::Precision;
use crate::shape::Layout;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A buffer owned by a device; it knows its length in elements and the bytes they take (a GPU
/// may store f32 values in 16 bits).
pub trait Buffer: Send + Sync {
    fn len(&self) -> usize;
    fn bytes(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The im2col workspace a backend gets when none is configured (MiB): the upper bound on the
/// column buffer of one convolution call.
pub const DEFAULT_WORKSPACE_MB: usize = 256;

/// What a backend's convolutions hold while they run, for memory plans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvWorkspace {
    /// Every pass builds im2col column buffers of at most `limit_bytes` (the CPU).
    Columns { limit_bytes: usize },
    /// A GPU: the convolution GEMMs read their operands in place (no columns in any pass) and
    /// split K as planned for `gemm_sms` SMs, holding the partial products.
    ImplicitGemm { gemm_sms: usize },
    /// A GPU whose convolution GEMMs run on the tensor cores (bf16/fp16/tf32 on compute
    /// capability 8.0+, fp16 on 7.5): the same implicit GEMMs, pointwise convolutions among them.
    TensorCores { gemm_sms: usize },
}

impl ConvWorkspace {
    /// Column buffers of at most `limit_bytes` for every pass (the CPU's way).
    pub fn columns(limit_bytes: usize) -> ConvWorkspace {
        ConvWorkspace::Columns { limit_bytes }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes held in buffers right now.
    pub current_bytes: usize,
    /// The most bytes held at once since the last `reset_peak`.
    pub peak_bytes: usize,
    /// Bytes a caching allocator keeps in freed blocks for reuse (not in `current_bytes`); 0
    /// on devices without one.
    pub cached_bytes: usize,
    /// The most bytes obtained from the driver at once (live buffers, their rounding and the
    /// cache) since the device was opened; 0 on devices without a driver.
    pub peak_reserved_bytes: usize,
}

/// What reaches a GPU driver, counted since the device was opened: the cost of a training step
/// that kernel time alone does not show. All zero on the CPU, which has no driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeviceCounters {
    /// Kernel launches the host queued.
    pub kernel_launches: u64,
    /// CUDA graph launches (each replays many kernels with one host call).
    pub graph_launches: u64,
    /// Device memsets and device-to-device copies (queued like kernels).
    pub memsets: u64,
    pub d2d_copies: u64,
    /// Calls to the driver's allocate (cuMemAlloc, and cuMemHostAlloc for pinned staging) and
    /// free (cuMemFree, which synchronises the device, and cuMemFreeHost).
    pub allocations: u64,
    pub frees: u64,
    /// Calls on which the host waits for the device: explicit synchronisations and every
    /// device-to-host copy (it returns when the data is on the host).
    pub host_syncs: u64,
    /// Of `host_syncs`: the explicit synchronisations.
    pub synchronizes: u64,
    /// Copies in each direction; host-to-device ones go through pinned staging and are queued
    /// without a host synchronisation.
    pub h2d_copies: u64,
    pub d2h_copies: u64,
    pub h2d_bytes: u64,
    pub d2h_bytes: u64,
}

impl DeviceCounters {
    /// The counts from `earlier` to `self` (both from the same device).
    pub fn since(&self, earlier: &DeviceCounters) -> DeviceCounters {
        DeviceCounters {
            kernel_launches: self.kernel_launches - earlier.kernel_launches,
            graph_launches: self.graph_launches - earlier.graph_launches,
            memsets: self.memsets - earlier.memsets,
            d2d_copies: self.d2d_copies - earlier.d2d_copies,
            allocations: self.allocations - earlier.allocations,
            frees: self.frees - earlier.frees,
            host_syncs: self.host_syncs - earlier.host_syncs,
            synchronizes: self.synchronizes - earlier.synchronizes,
            h2d_copies: self.h2d_copies - earlier.h2d_copies,
            d2h_copies: self.d2h_copies - earlier.d2h_copies,
            h2d_bytes: self.h2d_bytes - earlier.h2d_bytes,
            d2h_bytes: self.d2h_bytes - earlier.d2h_bytes,
        }
    }
}

pub trait Device<E: Element>: Send + Sync {
    /// A buffer of `E`.
    type Buf: Buffer;
    /// A buffer of `u32` (class labels, max-pool argmax indices).
    type IdxBuf: Buffer;

    /// Short name for messages: "cpu", "cuda:0 (NVIDIA ...)", "sim".
    fn name(&self) -> String;
    /// Whether GPU kernels run on ferronet's PTX simulator (`Driver::simulated`): host timings
    /// of this device are then the simulator's, not a GPU's.
    fn simulated(&self) -> bool;
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    fn upload(&self, host: &[E]) -> Result<Self::Buf>;
    fn download(&self, buf: &Self::Buf) -> Result<Vec<E>>;
    fn upload_idx(&self, host: &[u32]) -> Result<Self::IdxBuf>;
    fn download_idx(&self, buf: &Self::IdxBuf) -> Result<Vec<u32>>;
    fn copy_buf(&self, buf: &Self::Buf) -> Result<Self::Buf>;
    /// Overwrites `buf` (same length) with `host`, queued after the work already queued: the
    /// way to feed a buffer whose address a captured graph has recorded.
    fn overwrite(&self, buf: &mut Self::Buf, host: &[E]) -> Result<()>;
    fn overwrite_idx(&self, buf: &mut Self::IdxBuf, host: &[u32]) -> Result<()>;
    /// `overwrite`, with the copy from the host made on the device's copy stream so that it
    /// overlaps the work already queued: it lands in `landing` (allocated on first use, kept by
    /// the caller for the next call and used for nothing else), and only a device-side copy from
    /// there into `buf` is queued after that work. How a resident batch is refilled while the
    /// step before runs. Devices without a copy stream (the CPU) overwrite `buf` directly.
    fn overwrite_through(&self, buf: &mut Self::Buf, _landing: &mut Option<Self::Buf>, host: &[E]) -> Result<()> {
        self.overwrite(buf, host)
    }
    fn overwrite_idx_through(&self, buf: &mut Self::IdxBuf, _landing: &mut Option<Self::IdxBuf>, host: &[u32]) -> Result<()> {
        self.overwrite_idx(buf, host)
    }
    /// Wait until all queued work is finished (a no-op on the CPU).
    fn synchronize(&self) -> Result<()>;
    fn memory(&self) -> MemoryStats;
    /// What this device's convolutions hold while they run: what memory plans must reserve.
    fn conv_workspace(&self) -> ConvWorkspace;
    fn reset_peak(&self);
    /// Device memory still free for allocations, in bytes; None where memory is the host's
    /// (the CPU), which a run does not plan against.
    fn free_memory(&self) -> Result<Option<usize>> {
        Ok(None)
    }
    /// Names of the kernels launched since the last call, in launch order, deduplicated
    /// ("module::kernel"); empty on devices that run no kernels.
    fn take_kernel_log(&self) -> Vec<String> {
        Vec::new()
    }
    /// What has reached a GPU driver since the device was opened (launches, allocations, host
    /// synchronisations, transfers); all zero on devices without one (the CPU).
    fn counters(&self) -> DeviceCounters {
        DeviceCounters::default()
    }
    /// Data parallelism in device memory: gradient buckets whose sums over the ranks of `comm`
    /// NCCL runs on a stream beside backward's. Only CUDA GPUs have them.
    fn nccl_buckets<'a>(
        &'a self,
        comm: &'a crate::dist::nccl::NcclComm,
        bucket_values: usize,
    ) -> Result<Box<dyn crate::dist::DeviceBuckets<Self::Buf> + 'a>> {
        let _ = (comm, bucket_values);
        Err(crate::error::Error::config(format!(
            "{} cannot all-reduce gradients with NCCL (CUDA GPUs can); give --dist-backend mpi",
            self.name()
        )))
    }
    /// Whether `begin_capture` can record this device's work (GPU devices).
    fn can_capture(&self) -> bool {
        false
    }
    /// The memory order of image tensors when a run does not choose one (`--layout`): channels
    /// first here; GPU devices take channels last, PREDICTED faster there (benches/RESULTS.md),
    /// where the CPU's channels-last ops reorder around its channels-first references.
    fn default_layout(&self) -> Layout {
        Layout::Nchw
    }
    /// The numeric format a run takes when it does not choose one (`--precision`): fp32 here;
    /// GPUs of compute capability 8.0 and newer take bf16, Turing (7.5) fp16 (16-bit activations
    /// on the tensor cores, PREDICTED faster: benches/RESULTS.md).
    fn default_precision(&self) -> Precision {
        Precision::Fp32
    }
    /// `Ok` when this device runs `precision`, else why not and what to choose instead, in one
    /// line: every device emulates every format but GPUs, whose tensor cores must take it.
    fn check_precision(&self, _precision: Precision) -> Result<()> {
        Ok(())
    }
    /// Starts recording the work this device queues into a graph instead of running it (CUDA
    /// graphs); until `end_capture`, nothing may wait for the device.
    fn begin_capture(&self) -> Result<()> {
        Err(crate::error::Error::config(format!("{} cannot capture CUDA graphs; a GPU device (cuda, sim) can", self.name())))
    }
    /// Ends the capture: the recorded work, to replay with one launch. An error abandons it.
    fn end_capture(&self) -> Result<CapturedGraph> {
        Err(crate::error::Error::config(format!("{} cannot capture CUDA graphs", self.name())))
    }
}

/// Whether training steps replay a captured CUDA graph (`--cuda-graph`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum CudaGraphMode {
    /// A graph on GPU devices when the run allows one; if capture fails, one line says why
    /// and the steps run without.
    Auto,
    /// A graph, or an error saying why there cannot be one.
    On,
    /// Every step queues its kernels from the host.
    Off,
}

/// Work recorded once by [`Device::begin_capture`]/[`Device::end_capture`].
pub trait GraphReplay: Send + Sync {
    /// Queues all of the recorded work again, with one call.
    fn launch(&self) -> Result<()>;
}

/// A captured graph; dropping it releases what it holds on the device.
pub struct CapturedGraph(pub Box<dyn GraphReplay>);

impl CapturedGraph {
    pub fn launch(&self) -> Result<()> {
        self.0.launch()
    }
}

/// Byte counter shared by a device and its buffers: current and peak.
#[derive(Debug, Default)]
pub struct MemoryTracker {
    current: AtomicUsize,
    peak: AtomicUsize,
}

impl MemoryTracker {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn add(&self, bytes: usize) {
        let now = self.current.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.peak.fetch_max(now, Ordering::Relaxed);
    }
    pub fn sub(&self, bytes: usize) {
        self.current.fetch_sub(bytes, Ordering::Relaxed);
    }
    pub fn stats(&self) -> MemoryStats {
        MemoryStats {
            current_bytes: self.current.load(Ordering::Relaxed),
            peak_bytes: self.peak.load(Ordering::Relaxed),
            ..MemoryStats::default()
        }
    }
    pub fn reset_peak(&self) {
        self.peak.store(self.current.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}
