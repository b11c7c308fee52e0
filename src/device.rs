//! What every device provides before any op: buffers, transfers, memory accounting.
//!
//! A device implements [`Device<E>`] for each element type it supports (the CPU: f32 and f64;
//! GPU devices: f32), and the op-family traits in `crate::ops` on top of it. The sum of all of
//! them is [`crate::ops::Backend`].

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
