//! The rayon CPU device: the reference every GPU kernel is checked against (in f64) and the
//! fallback when no GPU exists (in f32). Op implementations live beside their families in
//! `ops::<family>::cpu` (the layer above).

pub mod layout;
pub mod par;
#[cfg(test)]
pub(crate) mod testutil;

use crate::device::{Buffer, ConvWorkspace, Device, MemoryStats, MemoryTracker, DEFAULT_WORKSPACE_MB};
use crate::element::Element;
use crate::error::Result;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

/// A host buffer whose bytes count toward the CPU device's memory statistics.
pub struct CpuBuf<T> {
    data: Vec<T>,
    tracker: Arc<MemoryTracker>,
}

impl<T> Drop for CpuBuf<T> {
    fn drop(&mut self) {
        self.tracker.sub(self.data.len() * std::mem::size_of::<T>());
    }
}

impl<T> Deref for CpuBuf<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        &self.data
    }
}

impl<T> DerefMut for CpuBuf<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.data
    }
}

impl<T: Send + Sync> Buffer for CpuBuf<T> {
    fn len(&self) -> usize {
        self.data.len()
    }
    fn bytes(&self) -> usize {
        std::mem::size_of_val(self.data.as_slice())
    }
}

#[derive(Clone)]
pub struct CpuBackend {
    tracker: Arc<MemoryTracker>,
    /// Upper bound on the im2col buffer of one convolution call, in bytes.
    pub workspace_bytes: usize,
}

impl Default for CpuBackend {
    fn default() -> Self {
        Self::new()
    }
}

impl CpuBackend {
    pub fn new() -> Self {
        CpuBackend { tracker: MemoryTracker::new(), workspace_bytes: DEFAULT_WORKSPACE_MB << 20 }
    }
    /// Takes ownership of a host vector as a device buffer.
    pub fn wrap<T>(&self, data: Vec<T>) -> CpuBuf<T> {
        self.tracker.add(data.len() * std::mem::size_of::<T>());
        CpuBuf { data, tracker: self.tracker.clone() }
    }
    pub fn threads(&self) -> usize {
        rayon::current_num_threads()
    }
}

fn overwrite_slice<T: Copy>(buf: &mut [T], host: &[T]) -> Result<()> {
    if buf.len() != host.len() {
        return Err(crate::error::Error::shape(format!("{} values written to a buffer of {}", host.len(), buf.len())));
    }
    buf.copy_from_slice(host);
    Ok(())
}

impl<E: Element> Device<E> for CpuBackend {
    type Buf = CpuBuf<E>;
    type IdxBuf = CpuBuf<u32>;

    fn name(&self) -> String {
        "cpu".to_string()
    }
    fn simulated(&self) -> bool {
        false
    }
    fn zeros(&self, len: usize) -> Result<CpuBuf<E>> {
        Ok(self.wrap(vec![E::zero(); len]))
    }
    fn upload(&self, host: &[E]) -> Result<CpuBuf<E>> {
        Ok(self.wrap(host.to_vec()))
    }
    fn download(&self, buf: &CpuBuf<E>) -> Result<Vec<E>> {
        Ok(buf.to_vec())
    }
    fn upload_idx(&self, host: &[u32]) -> Result<CpuBuf<u32>> {
        Ok(self.wrap(host.to_vec()))
    }
    fn download_idx(&self, buf: &CpuBuf<u32>) -> Result<Vec<u32>> {
        Ok(buf.to_vec())
    }
    fn copy_buf(&self, buf: &CpuBuf<E>) -> Result<CpuBuf<E>> {
        Ok(self.wrap(buf.to_vec()))
    }
    fn overwrite(&self, buf: &mut CpuBuf<E>, host: &[E]) -> Result<()> {
        overwrite_slice(buf, host)
    }
    fn overwrite_idx(&self, buf: &mut CpuBuf<u32>, host: &[u32]) -> Result<()> {
        overwrite_slice(buf, host)
    }
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    fn memory(&self) -> MemoryStats {
        self.tracker.stats()
    }
    fn conv_workspace(&self) -> ConvWorkspace {
        ConvWorkspace::columns(self.workspace_bytes)
    }
    fn reset_peak(&self) {
        self.tracker.reset_peak()
    }
}
