//! The GPU device over any [`Driver`]: buffers from the caching allocator, transfers, memory
//! accounting, the count of what reaches the driver, and the launch helper every op family's
//! `cuda.rs` uses.

use super::accounting::{Accounting, DriverCall};
use super::allocator::{CachingAllocator, GraphPoolId};
use super::copy_stream::CopyStreamUploads;
use super::graph::GpuGraph;
use super::nccl_buckets::{NcclBuckets, NcclEvents};
use crate::dist::nccl::NcclComm;
use crate::dist::DeviceBuckets;
use super::staging::PinnedStaging;
use crate::device::driver::{DevPtr, Driver, KernelArg, LaunchConfig, Stream};
use crate::device::{Buffer, CapturedGraph, ConvWorkspace, Device, DeviceCounters, MemoryStats};
use crate::error::{Error, Result};
use crate::precision::{Precision, StoredFormat};
use crate::shape::Layout;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex};

/// `len` elements of `T` in device memory; on drop its block goes back to the allocator's cache.
/// A buffer of f32 values may hold them in 16 bits (`stored`): a bf16 or fp16 run's activations.
pub struct GpuBuf<T> {
    ptr: DevPtr,
    len: usize,
    /// F32: elements of `T` itself; Bf16/F16: 16-bit values of a `GpuBuf<f32>`.
    stored: StoredFormat,
    allocator: Arc<CachingAllocator>,
    _elem: PhantomData<T>,
}

impl<T> GpuBuf<T> {
    /// The device address of element 0.
    pub fn ptr(&self) -> DevPtr {
        self.ptr
    }
    /// The device address of element `i` (for launches on a sub-range).
    pub fn ptr_at(&self, i: usize) -> DevPtr {
        self.ptr + (i * self.elem_bytes()) as u64
    }
    /// The pointer argument of a kernel that reads the elements as `T` itself.
    pub fn arg(&self) -> KernelArg {
        assert_eq!(self.stored, StoredFormat::F32, "a 16-bit buffer passed to a kernel that reads f32 (give it stored_arg and format_arg)");
        KernelArg::Ptr(self.ptr)
    }
    /// The pointer argument of a kernel that reads any stored format, with `format_arg`.
    pub fn stored_arg(&self) -> KernelArg {
        KernelArg::Ptr(self.ptr)
    }
    /// The format the elements are stored in.
    pub fn stored(&self) -> StoredFormat {
        self.stored
    }
    /// The stored format as the kernel argument that reads or writes this buffer's values
    /// (kernels/stored.cuh).
    pub fn format_arg(&self) -> KernelArg {
        KernelArg::I32(self.stored.code())
    }
    /// Bytes per element as stored.
    pub fn elem_bytes(&self) -> usize {
        match self.stored {
            StoredFormat::F32 => std::mem::size_of::<T>(),
            narrow => narrow.bytes(),
        }
    }
    /// Bytes of device memory the elements take.
    pub fn bytes(&self) -> usize {
        self.len * self.elem_bytes()
    }
}

impl<T> Drop for GpuBuf<T> {
    fn drop(&mut self) {
        self.allocator.release(self.ptr, self.bytes());
    }
}

impl<T: Send + Sync> Buffer for GpuBuf<T> {
    fn len(&self) -> usize {
        self.len
    }
    fn bytes(&self) -> usize {
        GpuBuf::bytes(self)
    }
}

#[derive(Clone)]
pub struct GpuBackend {
    driver: Arc<dyn Driver>,
    allocator: Arc<CachingAllocator>,
    staging: Arc<PinnedStaging>,
    copy_stream: Arc<CopyStreamUploads>,
    accounting: Arc<Accounting>,
    kernel_log: Arc<Mutex<Vec<String>>>,
    /// The allocator pool of the graph being captured.
    capture: Arc<Mutex<Option<GraphPoolId>>>,
    /// The events NCCL gradient buckets order their streams with, made by the first.
    pub(crate) nccl_events: Arc<Mutex<Option<NcclEvents>>>,
    /// The format the operands of the convolution and linear GEMMs are stored in (the run's
    /// `--precision`): at reduced precision they run on the tensor cores (`ops::gemm::tc_train`).
    gemm_operand_format: Arc<Mutex<Precision>>,
}

impl GpuBackend {
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        let accounting = Arc::new(Accounting::default());
        let staging = Arc::new(PinnedStaging::new(driver.clone(), accounting.clone()));
        GpuBackend {
            allocator: Arc::new(CachingAllocator::new(driver.clone(), accounting.clone())),
            copy_stream: Arc::new(CopyStreamUploads::new(driver.clone(), staging.clone(), accounting.clone())),
            staging,
            accounting,
            driver,
            kernel_log: Arc::new(Mutex::new(Vec::new())),
            capture: Arc::new(Mutex::new(None)),
            nccl_events: Arc::new(Mutex::new(None)),
            gemm_operand_format: Arc::new(Mutex::new(Precision::Fp32)),
        }
    }

    /// Declares the format the convolution and linear GEMMs' operands are stored in from now on.
    pub fn set_gemm_operand_format(&self, precision: Precision) {
        if let Ok(mut format) = self.gemm_operand_format.lock() {
            *format = precision;
        }
    }

    /// The format declared by `set_gemm_operand_format` (fp32 until then).
    pub fn gemm_operand_format(&self) -> Precision {
        self.gemm_operand_format.lock().map_or(Precision::Fp32, |format| *format)
    }
    /// The driver itself; calls made on it directly are not counted in `counters`.
    pub fn driver(&self) -> &Arc<dyn Driver> {
        &self.driver
    }

    /// An uninitialised buffer of `len` elements (the kernel that follows writes all of it).
    pub fn alloc<T>(&self, len: usize) -> Result<GpuBuf<T>> {
        let ptr = self.allocator.acquire(len * std::mem::size_of::<T>())?;
        Ok(GpuBuf { ptr, len, stored: StoredFormat::F32, allocator: self.allocator.clone(), _elem: PhantomData })
    }

    /// An uninitialised buffer of `len` f32 values stored in `stored` (16 bits each for bf16
    /// and fp16): what an op allocates for an output it writes in its input's format.
    pub fn alloc_stored(&self, len: usize, stored: StoredFormat) -> Result<GpuBuf<f32>> {
        let ptr = self.allocator.acquire(len * stored.bytes())?;
        Ok(GpuBuf { ptr, len, stored, allocator: self.allocator.clone(), _elem: PhantomData })
    }

    pub fn alloc_zeroed<T>(&self, len: usize) -> Result<GpuBuf<T>> {
        let buf = self.alloc::<T>(len)?;
        if len > 0 {
            let bytes = len * std::mem::size_of::<T>();
            self.accounting.record(DriverCall::Memset { bytes });
            self.driver.memset(buf.ptr, 0, bytes)?;
        }
        Ok(buf)
    }

    /// A device copy of `host`, queued through pinned staging: returns without waiting.
    pub fn upload_slice<T: bytemuck::Pod>(&self, host: &[T]) -> Result<GpuBuf<T>> {
        let buf = self.alloc::<T>(host.len())?;
        self.staging.upload(Stream::Compute, buf.ptr, bytemuck::cast_slice(host))?;
        Ok(buf)
    }

    /// Overwrites `buf` (stored as `T`) with `host`, queued through pinned staging like
    /// `upload_slice`.
    pub fn upload_into<T: bytemuck::Pod>(&self, buf: &GpuBuf<T>, host: &[T]) -> Result<()> {
        check_overwrite_len(buf, host)?;
        self.staging.upload(Stream::Compute, buf.ptr, bytemuck::cast_slice(host))
    }

    /// Overwrites `buf` with `host` through the copy stream and `landing` (allocated on first
    /// use): see [`Device::overwrite_through`].
    pub fn upload_through<T: bytemuck::Pod>(&self, buf: &GpuBuf<T>, landing: &mut Option<GpuBuf<T>>, host: &[T]) -> Result<()> {
        check_overwrite_len(buf, host)?;
        let landing = match landing {
            Some(landing) if landing.len == buf.len => landing,
            _ => {
                let fresh = self.alloc::<T>(buf.len)?;
                self.copy_stream.new_landing()?;
                landing.insert(fresh)
            }
        };
        self.copy_stream.overwrite(buf.ptr, landing.ptr, bytemuck::cast_slice(host))
    }

    /// The elements of a buffer stored as `T` (see `download_values` for any f32 buffer).
    pub fn download_slice<T: bytemuck::Pod + Default>(&self, buf: &GpuBuf<T>) -> Result<Vec<T>> {
        if buf.stored != StoredFormat::F32 {
            return Err(Error::device(format!("a buffer stored as {:?} read back as 32-bit values", buf.stored)));
        }
        let mut host = vec![T::default(); buf.len];
        if buf.len > 0 {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut host);
            self.accounting.record(DriverCall::CopyD2H { bytes: bytes.len() });
            self.driver.copy_dtoh(bytes, buf.ptr)?;
        }
        Ok(host)
    }

    /// The values of an f32 buffer in any stored format, widened exactly on the host.
    pub fn download_values(&self, buf: &GpuBuf<f32>) -> Result<Vec<f32>> {
        let widen: fn(u16) -> f32 = match buf.stored {
            StoredFormat::F32 => return self.download_slice(buf),
            StoredFormat::Bf16 => |bits| half::bf16::from_bits(bits).to_f32(),
            StoredFormat::F16 => |bits| half::f16::from_bits(bits).to_f32(),
        };
        let mut bits = vec![0u16; buf.len];
        if buf.len > 0 {
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut bits);
            self.accounting.record(DriverCall::CopyD2H { bytes: bytes.len() });
            self.driver.copy_dtoh(bytes, buf.ptr)?;
        }
        Ok(bits.into_iter().map(widen).collect())
    }

    /// Returns every cached block to the driver (after waiting for queued work).
    pub fn empty_cache(&self) -> Result<()> {
        self.allocator.empty_cache()
    }

    /// Starts keeping the driver calls in order, for [`GpuBackend::take_trace`].
    pub fn start_trace(&self) {
        self.accounting.start_trace()
    }

    /// The driver calls since `start_trace`, in order; stops keeping them.
    pub fn take_trace(&self) -> Vec<DriverCall> {
        self.accounting.take_trace()
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
        self.accounting.record(DriverCall::Launch);
        self.driver.launch(module, kernel, &cfg, args)
    }
}

fn check_overwrite_len<T>(buf: &GpuBuf<T>, host: &[T]) -> Result<()> {
    if buf.stored != StoredFormat::F32 {
        return Err(Error::device(format!("32-bit values written to a buffer stored as {:?}", buf.stored)));
    }
    if host.len() != buf.len {
        return Err(Error::device(format!("{} values written to a buffer of {}", host.len(), buf.len)));
    }
    Ok(())
}

impl Device<f32> for GpuBackend {
    type Buf = GpuBuf<f32>;
    type IdxBuf = GpuBuf<u32>;

    fn name(&self) -> String {
        self.driver.name()
    }
    fn simulated(&self) -> bool {
        self.driver.simulated()
    }
    fn zeros(&self, len: usize) -> Result<GpuBuf<f32>> {
        self.alloc_zeroed(len)
    }
    fn upload(&self, host: &[f32]) -> Result<GpuBuf<f32>> {
        self.upload_slice(host)
    }
    fn download(&self, buf: &GpuBuf<f32>) -> Result<Vec<f32>> {
        self.download_values(buf)
    }
    fn upload_idx(&self, host: &[u32]) -> Result<GpuBuf<u32>> {
        self.upload_slice(host)
    }
    fn download_idx(&self, buf: &GpuBuf<u32>) -> Result<Vec<u32>> {
        self.download_slice(buf)
    }
    fn overwrite(&self, buf: &mut GpuBuf<f32>, host: &[f32]) -> Result<()> {
        self.upload_into(buf, host)
    }
    fn overwrite_idx(&self, buf: &mut GpuBuf<u32>, host: &[u32]) -> Result<()> {
        self.upload_into(buf, host)
    }
    fn overwrite_through(&self, buf: &mut GpuBuf<f32>, landing: &mut Option<GpuBuf<f32>>, host: &[f32]) -> Result<()> {
        self.upload_through(buf, landing, host)
    }
    fn overwrite_idx_through(&self, buf: &mut GpuBuf<u32>, landing: &mut Option<GpuBuf<u32>>, host: &[u32]) -> Result<()> {
        self.upload_through(buf, landing, host)
    }
    fn copy_buf(&self, buf: &GpuBuf<f32>) -> Result<GpuBuf<f32>> {
        let out = self.alloc_stored(buf.len, buf.stored)?;
        if buf.len > 0 {
            self.accounting.record(DriverCall::CopyD2D { bytes: buf.bytes() });
            self.driver.copy_dtod(out.ptr, buf.ptr, buf.bytes())?;
        }
        Ok(out)
    }
    fn synchronize(&self) -> Result<()> {
        self.accounting.record(DriverCall::Synchronize);
        self.driver.synchronize()
    }
    fn memory(&self) -> MemoryStats {
        MemoryStats {
            cached_bytes: self.allocator.cached_bytes(),
            peak_reserved_bytes: self.allocator.peak_reserved_bytes(),
            ..self.allocator.tracker().stats()
        }
    }
    fn counters(&self) -> DeviceCounters {
        self.accounting.counters()
    }
    fn nccl_buckets<'a>(&'a self, comm: &'a NcclComm, bucket_values: usize) -> Result<Box<dyn DeviceBuckets<GpuBuf<f32>> + 'a>> {
        Ok(Box::new(NcclBuckets::new(self, comm, bucket_values)?))
    }
    fn can_capture(&self) -> bool {
        true
    }
    fn default_layout(&self) -> Layout {
        Layout::Nhwc
    }
    /// bf16 from compute capability 8.0 (bf16 tensor cores came with Ampere); fp16 on Turing
    /// (7.5), whose tensor cores take f16 only (with dynamic loss scaling, `train::loss_scale`).
    fn default_precision(&self) -> Precision {
        if Precision::Bf16.has_tensor_cores_on(self.driver.compute_capability()) {
            Precision::Bf16
        } else {
            Precision::Fp16
        }
    }
    fn check_precision(&self, precision: Precision) -> Result<()> {
        match precision.missing_tensor_cores(self.driver.compute_capability()) {
            Some(why) => Err(Error::config(format!(
                "--precision {} {why}: choose --precision {} or fp32",
                precision.name(),
                self.default_precision().name()
            ))),
            None => Ok(()),
        }
    }
    fn begin_capture(&self) -> Result<()> {
        let mut capture = self.capture.lock().map_err(|_| Error::device("graph capture state poisoned"))?;
        if capture.is_some() {
            return Err(Error::device("a graph capture is already under way"));
        }
        *capture = Some(GpuGraph::begin(&self.driver, &self.allocator, &self.staging, &self.accounting)?);
        Ok(())
    }
    fn end_capture(&self) -> Result<CapturedGraph> {
        let pool = self.capture.lock().map_err(|_| Error::device("graph capture state poisoned"))?.take();
        let pool = pool.ok_or_else(|| Error::device("no graph capture to end"))?;
        let graph = GpuGraph::end(self.driver.clone(), self.allocator.clone(), self.staging.clone(), self.accounting.clone(), pool)?;
        Ok(CapturedGraph(Box::new(graph)))
    }
    fn conv_workspace(&self) -> ConvWorkspace {
        let gemm_sms = self.driver.multiprocessor_count();
        if self.training_tc_input().is_some() {
            ConvWorkspace::TensorCores { gemm_sms }
        } else {
            ConvWorkspace::ImplicitGemm { gemm_sms }
        }
    }
    /// The driver's free memory plus what this device holds from it beyond the bytes of live
    /// buffers (cached blocks, and the rounding of live ones), so that free memory plus
    /// `current_bytes` is what the device has for this backend, as the memory plans count it.
    fn free_memory(&self) -> Result<Option<usize>> {
        let held = self.allocator.reserved_bytes().saturating_sub(self.allocator.tracker().stats().current_bytes);
        self.driver.mem_info().map(|(free, _)| Some(free + held))
    }
    fn reset_peak(&self) {
        self.allocator.tracker().reset_peak()
    }
    fn take_kernel_log(&self) -> Vec<String> {
        self.kernel_log.lock().map(|mut l| std::mem::take(&mut *l)).unwrap_or_default()
    }
}
