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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// A buffer owned by a device; it knows its length in elements.
pub trait Buffer: Send + Sync {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The im2col workspace a backend gets when none is configured (MiB): the upper bound on the
/// column buffer of one convolution call.
pub const DEFAULT_WORKSPACE_MB: usize = 256;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes held in buffers right now.
    pub current_bytes: usize,
    /// The most bytes held at once since the last `reset_peak`.
    pub peak_bytes: usize,
}

pub trait Device<E: Element>: Send + Sync {
    /// A buffer of `E`.
    type Buf: Buffer;
    /// A buffer of `u32` (class labels, max-pool argmax indices).
    type IdxBuf: Buffer;

    /// Short name for messages: "cpu", "cuda:0 (NVIDIA ...)", "sim".
    fn name(&self) -> String;
    fn zeros(&self, len: usize) -> Result<Self::Buf>;
    fn upload(&self, host: &[E]) -> Result<Self::Buf>;
    fn download(&self, buf: &Self::Buf) -> Result<Vec<E>>;
    fn upload_idx(&self, host: &[u32]) -> Result<Self::IdxBuf>;
    fn download_idx(&self, buf: &Self::IdxBuf) -> Result<Vec<u32>>;
    fn copy_buf(&self, buf: &Self::Buf) -> Result<Self::Buf>;
    /// Wait until all queued work is finished (a no-op on the CPU).
    fn synchronize(&self) -> Result<()>;
    fn memory(&self) -> MemoryStats;
    /// Upper bound on the im2col buffer of one convolution call, in bytes: what memory plans
    /// must reserve for it on this device.
    fn workspace_bytes(&self) -> usize;
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
        }
    }
    pub fn reset_peak(&self) {
        self.peak.store(self.current.load(Ordering::Relaxed), Ordering::Relaxed);
    }
}
