//! The GPU device over any [`Driver`]: buffers, transfers, memory accounting and the launch helper
//! every op family's `cuda.rs` uses.

use crate::device::driver::{DevPtr, Driver, KernelArg, LaunchConfig};
use crate::device::{Buffer, Device, MemoryStats, MemoryTracker, DEFAULT_WORKSPACE_MB};
use crate::error::{Error, Result};
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

/// `len` elements of `T` in device memory, freed on drop.
pub struct GpuBuf<T> {
    ptr: DevPtr,
    len: usize,
    driver: Arc<dyn Driver>,
    tracker: Arc<MemoryTracker>,
    _elem: PhantomData<T>,
}

impl<T> GpuBuf<T> {
    /// The device address of element 0.
    pub fn ptr(&self) -> DevPtr {
        self.ptr
    }
    /// The device address of element `i` (for launches on a sub-range).
    pub fn ptr_at(&self, i: usize) -> DevPtr {
        self.ptr + (i * std::mem::size_of::<T>()) as u64
    }
    pub fn arg(&self) -> KernelArg {
        KernelArg::Ptr(self.ptr)
    }
}

impl<T> Drop for GpuBuf<T> {
    fn drop(&mut self) {
        if self.ptr != 0 {
            self.driver.free(self.ptr);
        }
        self.tracker.sub(self.len * std::mem::size_of::<T>());
    }
}

impl<T: Send + Sync> Buffer for GpuBuf<T> {
    fn len(&self) -> usize {
        self.len
    }
}

#[derive(Clone)]
pub struct GpuBackend {
    driver: Arc<dyn Driver>,
    tracker: Arc<MemoryTracker>,
    kernel_log: Arc<Mutex<Vec<String>>>,
    /// Upper bound on the im2col buffer of one convolution call, in bytes.
    pub workspace_bytes: usize,
}

impl GpuBackend {
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        GpuBackend {
            driver,
            tracker: MemoryTracker::new(),
            kernel_log: Arc::new(Mutex::new(Vec::new())),
            workspace_bytes: DEFAULT_WORKSPACE_MB << 20,
        }
    }
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// An uninitialised buffer of `len` elements (the kernel that follows writes all of it).
    pub fn alloc<T>(&self, len: usize) -> Result<GpuBuf<T>> {
        let bytes = len * std::mem::size_of::<T>();
        let ptr = if bytes == 0 { 0 } else { self.driver.alloc(bytes)? };
        self.tracker.add(bytes);
        Ok(GpuBuf { ptr, len, driver: self.driver.clone(), tracker: self.tracker.clone(), _elem: PhantomData })
    }

    pub fn alloc_zeroed<T>(&self, len: usize) -> Result<GpuBuf<T>> {
        let buf = self.alloc::<T>(len)?;
        if len > 0 {
            self.driver.memset(buf.ptr, 0, len * std::mem::size_of::<T>())?;
        }
        Ok(buf)
    }

    pub fn upload_slice<T: bytemuck::Pod>(&self, host: &[T]) -> Result<GpuBuf<T>> {
        let buf = self.alloc::<T>(host.len())?;
        if !host.is_empty() {
            self.driver.copy_htod(buf.ptr, bytemuck::cast_slice(host))?;
        }
        Ok(buf)
    }

    pub fn download_slice<T: bytemuck::Pod + Default>(&self, buf: &GpuBuf<T>) -> Result<Vec<T>> {
        let mut host = vec![T::default(); buf.len];
        if buf.len > 0 {
            self.driver.copy_dtoh(bytemuck::cast_slice_mut(&mut host), buf.ptr)?;
        }
        Ok(host)
    }

    /// Launches `module::kernel` and records its name for `take_kernel_log`.
    pub fn launch(&self, module: &str, kernel: &str, cfg: LaunchConfig, args: &[KernelArg]) -> Result<()> {
        {
            let mut log = self.kernel_log.lock().map_err(|_| Error::device("kernel log poisoned"))?;
            let name = format!("{module}::{kernel}");
            if !log.contains(&name) {
                log.push(name);
            }
        }
        self.driver.launch(module, kernel, &cfg, args)
    }
}

impl Device<f32> for GpuBackend {
    type Buf = GpuBuf<f32>;
    type IdxBuf = GpuBuf<u32>;

    fn name(&self) -> String {
        self.driver.name()
    }
    fn zeros(&self, len: usize) -> Result<GpuBuf<f32>> {
        self.alloc_zeroed(len)
    }
    fn upload(&self, host: &[f32]) -> Result<GpuBuf<f32>> {
        self.upload_slice(host)
    }
    fn download(&self, buf: &GpuBuf<f32>) -> Result<Vec<f32>> {
        self.download_slice(buf)
    }
    fn upload_idx(&self, host: &[u32]) -> Result<GpuBuf<u32>> {
        self.upload_slice(host)
    }
    fn download_idx(&self, buf: &GpuBuf<u32>) -> Result<Vec<u32>> {
        self.download_slice(buf)
    }
    fn copy_buf(&self, buf: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        let out = self.alloc::<f32>(buf.len)?;
        if buf.len > 0 {
            self.driver.copy_dtod(out.ptr, buf.ptr, buf.len * 4)?;
        }
        Ok(out)
    }
    fn synchronize(&self) -> Result<()> {
        self.driver.synchronize()
    }
    fn memory(&self) -> MemoryStats {
        self.tracker.stats()
    }
    fn workspace_bytes(&self) -> usize {
        self.workspace_bytes
    }
    fn free_memory(&self) -> Result<Option<usize>> {
        self.driver.mem_info().map(|(free, _)| Some(free))
    }
    fn reset_peak(&self) {
        self.tracker.reset_peak()
    }
    fn take_kernel_log(&self) -> Vec<String> {
        self.kernel_log.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default()
    }
}
