//! The [`Driver`] of real NVIDIA GPUs, over cudarc's thin driver-API wrappers with the CUDA
//! library loaded at run time (a machine without it still runs everything else).
//!
//! Each kernel module is loaded on first use from the PTX build.rs embedded. When the driver
//! rejects that PTX (a driver older than the NVRTC that produced it) or the build had no NVRTC,
//! the embedded source is compiled at run time with the machine's NVRTC for the device's exact
//! architecture. All queued work (launches, memsets, device copies, uploads from pinned memory,
//! events) goes to a compute stream the driver creates, which a graph capture can record (the
//! legacy stream cannot be captured), except the uploads a caller puts on the copy stream so they
//! overlap the compute stream's work. Both are blocking streams, so the synchronous copies, which
//! run on the legacy stream, still wait for them.

use crate::device::driver::{DevPtr, Driver, EventId, GraphId, KernelArg, LaunchConfig, PinnedId, Stream};
use crate::device::modules::{self, PtxSource};
use crate::error::{Error, Result};
use cudarc::driver::result::{self as cu, DriverError};
use cudarc::driver::sys::{self, CUdevice_attribute, CUresult};
use std::borrow::Cow;
use std::collections::HashMap;
use std::ffi::{c_void, CString};
use std::sync::Mutex;

/// Whether the CUDA driver library (libcuda) can be loaded. Every entry point checks this first:
/// cudarc panics on any driver call when the library is absent.
pub fn driver_library_present() -> bool {
    // SAFETY: only tries to dlopen the library by its usual names.
    unsafe { sys::is_culib_present() }
}

/// One CUDA device as `ferronet devices` lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CudaDeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// (major, minor), e.g. (8, 6) for sm_86.
    pub compute_capability: (i32, i32),
    pub total_mem_bytes: usize,
    /// Streaming multiprocessors.
    pub multiprocessors: usize,
}

fn driver_error(what: &str, e: DriverError) -> Error {
    let name = e.error_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|_| format!("{:?}", e.0));
    Error::device(format!("{what} failed: {name}"))
}

/// Initialises the driver API: Ok(None) without the driver library, Ok(Some(device count))
/// otherwise (0 when the driver finds no device).
fn init_driver() -> Result<Option<usize>> {
    if !driver_library_present() {
        return Ok(None);
    }
    match cu::init() {
        Ok(()) => {}
        Err(DriverError(CUresult::CUDA_ERROR_NO_DEVICE)) => return Ok(Some(0)),
        Err(e) => return Err(driver_error("initialising the CUDA driver", e)),
    }
    let count = cu::device::get_count().map_err(|e| driver_error("counting CUDA devices", e))?;
    Ok(Some(count.max(0) as usize))
}

fn device_info(ordinal: usize) -> Result<(sys::CUdevice, CudaDeviceInfo)> {
    let dev = cu::device::get(ordinal as i32).map_err(|e| driver_error("opening the CUDA device", e))?;
    let name = cu::device::get_name(dev).map_err(|e| driver_error("reading the device name", e))?;
    // SAFETY: `dev` came from device::get.
    let (major, minor, sms, total) = unsafe {
        let attr = |a| cu::device::get_attribute(dev, a).map_err(|e| driver_error("reading a device attribute", e));
        (
            attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
            attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
            cu::device::total_mem(dev).map_err(|e| driver_error("reading the device memory size", e))?,
        )
    };
    // A driver reporting no SM would make every grid-filling launcher divide by zero.
    let multiprocessors = usize::try_from(sms).unwrap_or(0).max(1);
    Ok((dev, CudaDeviceInfo { ordinal, name, compute_capability: (major, minor), total_mem_bytes: total, multiprocessors }))
}

/// The CUDA devices of this machine: None when no CUDA driver is installed.
pub fn list_devices() -> Result<Option<Vec<CudaDeviceInfo>>> {
    let Some(count) = init_driver()? else {
        return Ok(None);
    };
    (0..count).map(|i| device_info(i).map(|(_, info)| info)).collect::<Result<Vec<_>>>().map(Some)
}

/// A loaded module and the kernels looked up in it so far.
struct LoadedModule {
    module: sys::CUmodule,
    functions: HashMap<String, sys::CUfunction>,
}

pub struct CudaDriver {
    device: sys::CUdevice,
    ctx: sys::CUcontext,
    info: CudaDeviceInfo,
    modules: Mutex<HashMap<&'static str, LoadedModule>>,
    events: Mutex<Vec<sys::CUevent>>,
    /// Pinned host blocks (cuMemHostAlloc) by address, with their sizes.
    pinned: Mutex<HashMap<u64, usize>>,
    stream: sys::CUstream,
    /// [`Stream::Copy`]: uploads that overlap the work on `stream`.
    copy_stream: sys::CUstream,
    /// Captured graphs and their executable forms, by id.
    graphs: Mutex<HashMap<u64, (sys::CUgraph, sys::CUgraphExec)>>,
    next_graph: std::sync::atomic::AtomicU64,
}

// SAFETY: the raw handles are only used through driver-API calls, which are thread-safe once the
// context is made current on the calling thread (every method does so first); the module and
// event tables are behind mutexes.
unsafe impl Send for CudaDriver {}
unsafe impl Sync for CudaDriver {}

impl CudaDriver {
    /// Opens CUDA device `ordinal` with its primary context.
    pub fn new(ordinal: usize) -> Result<Self> {
        let count = init_driver()?.ok_or_else(|| {
            Error::device("no CUDA driver (libcuda.so) is installed on this machine; use --device cpu or --device sim")
        })?;
        if ordinal >= count {
            return Err(Error::device(format!(
                "cuda:{ordinal} does not exist: this machine has {count} CUDA device(s); `ferronet devices` lists them"
            )));
        }
        let (device, info) = device_info(ordinal)?;
        // SAFETY: `device` came from device::get; the context is released in Drop.
        let ctx = unsafe { cu::primary_ctx::retain(device) }.map_err(|e| driver_error("creating the CUDA context", e))?;
        // SAFETY: the context was just retained; the streams are destroyed in Drop.
        let (stream, copy_stream) = unsafe { cu::ctx::set_current(ctx) }
            .and_then(|()| Ok((cu::stream::create(cu::stream::StreamKind::Default)?, cu::stream::create(cu::stream::StreamKind::Default)?)))
            .map_err(|e| driver_error("creating a CUDA stream", e))?;
        Ok(CudaDriver {
            device,
            ctx,
            info,
            modules: Mutex::new(HashMap::new()),
            events: Mutex::new(Vec::new()),
            pinned: Mutex::new(HashMap::new()),
            stream,
            copy_stream,
            graphs: Mutex::new(HashMap::new()),
            next_graph: std::sync::atomic::AtomicU64::new(1),
        })
    }

    pub fn info(&self) -> &CudaDeviceInfo {
        &self.info
    }

    fn bind(&self) -> Result<()> {
        // SAFETY: the primary context stays retained for the driver's lifetime.
        unsafe { cu::ctx::set_current(self.ctx) }.map_err(|e| driver_error("making the CUDA context current", e))
    }

    /// Loads `name` from its embedded PTX, or from its source compiled for this device when there
    /// is no PTX or the driver rejects it.
    fn load_module(&self, name: &str) -> Result<sys::CUmodule> {
        let cc = self.info.compute_capability;
        let ptx = modules::ptx(name, cc, PtxSource::EmbeddedFirst)?;
        match load_ptx(&ptx) {
            Ok(m) => Ok(m),
            Err(DriverError(
                CUresult::CUDA_ERROR_UNSUPPORTED_PTX_VERSION
                | CUresult::CUDA_ERROR_INVALID_PTX
                | CUresult::CUDA_ERROR_NO_BINARY_FOR_GPU,
            // Borrowed is the embedded PTX: a fresh compile for this device may still load.
            )) if matches!(ptx, Cow::Borrowed(_)) => {
                let ptx = modules::ptx(name, cc, PtxSource::CompiledNow)?;
                load_ptx(&ptx).map_err(|e| driver_error(&format!("loading kernel module {name} compiled at run time"), e))
            }
            Err(e) => Err(driver_error(&format!("loading kernel module {name}"), e)),
        }
    }

    fn function(&self, module: &str, kernel: &str) -> Result<sys::CUfunction> {
        let mut modules = self.modules.lock().map_err(|_| Error::device("CUDA module table poisoned"))?;
        let entry = match modules.get_mut(module) {
            Some(entry) => entry,
            None => {
                let loaded = self.load_module(module)?;
                let key = modules::module(module, self.info.compute_capability)?.name;
                modules.entry(key).or_insert(LoadedModule { module: loaded, functions: HashMap::new() })
            }
        };
        if let Some(&f) = entry.functions.get(kernel) {
            return Ok(f);
        }
        let cname = CString::new(kernel).map_err(|_| Error::device(format!("invalid kernel name {kernel:?}")))?;
        // SAFETY: the module is loaded and stays loaded until Drop.
        let f = unsafe { cu::module::get_function(entry.module, cname) }
            .map_err(|e| driver_error(&format!("finding kernel {module}::{kernel}"), e))?;
        entry.functions.insert(kernel.to_string(), f);
        Ok(f)
    }
}

fn load_ptx(ptx: &str) -> std::result::Result<sys::CUmodule, DriverError> {
    let image = CString::new(ptx).map_err(|_| DriverError(CUresult::CUDA_ERROR_INVALID_PTX))?;
    // SAFETY: a NUL-terminated PTX string that outlives the call.
    unsafe { cu::module::load_data(image.as_ptr() as *const c_void) }
}

/// One kernel parameter in an 8-byte slot; the driver reads the parameter's own size from it.
fn arg_slot(arg: &KernelArg) -> [u8; 8] {
    let mut slot = [0u8; 8];
    let mut put = |bytes: &[u8]| slot[..bytes.len()].copy_from_slice(bytes);
    match *arg {
        KernelArg::Ptr(p) => put(&p.to_ne_bytes()),
        KernelArg::I32(v) => put(&v.to_ne_bytes()),
        KernelArg::U32(v) => put(&v.to_ne_bytes()),
        KernelArg::I64(v) => put(&v.to_ne_bytes()),
        KernelArg::U64(v) => put(&v.to_ne_bytes()),
        KernelArg::F32(v) => put(&v.to_ne_bytes()),
        KernelArg::F64(v) => put(&v.to_ne_bytes()),
    }
    slot
}

impl Driver for CudaDriver {
    fn compute_capability(&self) -> (i32, i32) {
        self.info.compute_capability
    }

    fn name(&self) -> String {
        let (major, minor) = self.info.compute_capability;
        format!(
            "cuda:{} {} (sm_{major}{minor}, {} GiB)",
            self.info.ordinal,
            self.info.name,
            (self.info.total_mem_bytes as f64 / (1u64 << 30) as f64).round()
        )
    }

    /// The emulated driver's device names always say "emulated" (src/libcuda/config.rs), which no
    /// NVIDIA device name does.
    fn simulated(&self) -> bool {
        self.info.name.contains("emulated")
    }

    fn alloc(&self, bytes: usize) -> Result<DevPtr> {
        self.bind()?;
        // SAFETY: plain device allocation in the bound context.
        match unsafe { cu::malloc_sync(bytes) } {
            Ok(ptr) => Ok(ptr),
            Err(DriverError(CUresult::CUDA_ERROR_OUT_OF_MEMORY)) => Err(Error::OutOfMemory {
                requested: bytes,
                free: cu::mem_get_info().map(|(free, _)| free).unwrap_or(0),
                hint: "lower the batch size (--batch-size for train, --batch for bench)".into(),
            }),
            Err(e) => Err(driver_error(&format!("allocating {bytes} bytes"), e)),
        }
    }

    fn free(&self, ptr: DevPtr) {
        // A failed free (a context already torn down at exit) leaves nothing to recover.
        if self.bind().is_ok() {
            // SAFETY: `ptr` came from alloc and GpuBuf frees it once.
            let _ = unsafe { cu::free_sync(ptr) };
        }
    }

    fn copy_htod(&self, dst: DevPtr, src: &[u8]) -> Result<()> {
        self.bind()?;
        // SAFETY: GpuBackend passes a live allocation at least `src.len()` bytes long.
        unsafe { cu::memcpy_htod_sync(dst, src) }.map_err(|e| driver_error("copying to the GPU", e))
    }

    fn copy_dtoh(&self, dst: &mut [u8], src: DevPtr) -> Result<()> {
        self.bind()?;
        // SAFETY: as above, for `dst.len()` bytes.
        unsafe { cu::memcpy_dtoh_sync(dst, src) }.map_err(|e| driver_error("copying from the GPU", e))
    }

    fn copy_dtod(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: both are live allocations of at least `bytes` bytes.
        unsafe { cu::memcpy_dtod_async(dst, src, bytes, self.stream) }.map_err(|e| driver_error("copying on the GPU", e))
    }

    fn memset(&self, dst: DevPtr, value: u8, bytes: usize) -> Result<()> {
        self.bind()?;
        // SAFETY: a live allocation of at least `bytes` bytes.
        unsafe { cu::memset_d8_async(dst, value, bytes, self.stream) }.map_err(|e| driver_error("clearing GPU memory", e))
    }

    fn launch(&self, module: &str, kernel: &str, cfg: &LaunchConfig, args: &[KernelArg]) -> Result<()> {
        self.bind()?;
        let f = self.function(module, kernel)?;
        let mut slots: Vec<[u8; 8]> = args.iter().map(arg_slot).collect();
        let mut params: Vec<*mut c_void> = slots.iter_mut().map(|s| s.as_mut_ptr() as *mut c_void).collect();
        // SAFETY: `f` is a live kernel whose signature the op launchers match argument by argument;
        // the parameter slots outlive the call, which copies them.
        unsafe { cu::launch_kernel(f, cfg.grid, cfg.block, cfg.shared_mem_bytes, self.stream, &mut params) }
            .map_err(|e| driver_error(&format!("launching {module}::{kernel}"), e))
    }

    fn synchronize(&self) -> Result<()> {
        self.bind()?;
        cu::ctx::synchronize().map_err(|e| driver_error("waiting for the GPU", e))
    }

    fn mem_info(&self) -> Result<(usize, usize)> {
        self.bind()?;
        cu::mem_get_info().map_err(|e| driver_error("reading GPU memory use", e))
    }

    fn multiprocessor_count(&self) -> usize {
        self.info.multiprocessors
    }

    fn cuda_stream(&self, stream: Stream) -> Option<u64> {
        Some(self.cu_stream(stream) as u64)
    }

    fn record_event(&self, stream: Stream) -> Result<EventId> {
        self.bind()?;
        let event = cu::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT).map_err(|e| driver_error("creating an event", e))?;
        // SAFETY: a freshly created event on one of the driver's streams.
        unsafe { cu::event::record(event, self.cu_stream(stream)) }.map_err(|e| driver_error("recording an event", e))?;
        let mut events = self.events.lock().map_err(|_| Error::device("CUDA event table poisoned"))?;
        events.push(event);
        Ok(EventId(events.len() as u64 - 1))
    }

    fn rerecord_event(&self, stream: Stream, event: EventId) -> Result<()> {
        self.bind()?;
        let event = self.event(event)?;
        // SAFETY: an event created by this driver and not destroyed, on one of its streams.
        unsafe { cu::event::record(event, self.cu_stream(stream)) }.map_err(|e| driver_error("recording an event", e))
    }

    fn wait_event(&self, stream: Stream, event: EventId) -> Result<()> {
        self.bind()?;
        let event = self.event(event)?;
        // SAFETY: as above.
        unsafe { cu::stream::wait_event(self.cu_stream(stream), event, sys::CUevent_wait_flags::CU_EVENT_WAIT_DEFAULT) }
            .map_err(|e| driver_error("making a stream wait for an event", e))
    }

    fn event_done(&self, event: EventId) -> Result<bool> {
        self.bind()?;
        let event = self.event(event)?;
        // SAFETY: as above; cuEventQuery never blocks.
        match unsafe { cu::event::query(event) } {
            Ok(()) => Ok(true),
            Err(DriverError(CUresult::CUDA_ERROR_NOT_READY)) => Ok(false),
            Err(e) => Err(driver_error("querying an event", e)),
        }
    }

    fn elapsed_ms(&self, start: EventId, end: EventId) -> Result<f32> {
        self.bind()?;
        let (s, e) = (self.event(start)?, self.event(end)?);
        // SAFETY: both events were created and recorded by this driver and are not destroyed.
        unsafe {
            cu::event::synchronize(e).map_err(|err| driver_error("waiting for an event", err))?;
            cu::event::elapsed(s, e).map_err(|err| driver_error("timing between events", err))
        }
    }

    fn alloc_pinned(&self, bytes: usize) -> Result<PinnedId> {
        self.bind()?;
        // SAFETY: a plain page-locked allocation; freed once by free_pinned or Drop.
        let ptr = unsafe { cu::malloc_host(bytes, 0) }.map_err(|e| driver_error(&format!("allocating {bytes} bytes of pinned host memory"), e))?;
        self.pinned.lock().map_err(|_| Error::device("pinned memory table poisoned"))?.insert(ptr as u64, bytes);
        Ok(PinnedId(ptr as u64))
    }

    fn free_pinned(&self, pinned: PinnedId) {
        let known = self.pinned.lock().map(|mut blocks| blocks.remove(&pinned.0).is_some()).unwrap_or(false);
        if known && self.bind().is_ok() {
            // SAFETY: allocated by alloc_pinned and removed from the table, so freed once.
            let _ = unsafe { cu::free_host(pinned.0 as *mut c_void) };
        }
    }

    fn write_pinned(&self, pinned: PinnedId, src: &[u8]) -> Result<()> {
        let dst = self.pinned_at(pinned, src.len())?;
        // SAFETY: the block holds at least src.len() bytes and no queued copy reads it (the
        // caller's contract); host memory cannot overlap the borrowed source.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), dst, src.len()) };
        Ok(())
    }

    fn copy_htod_async(&self, stream: Stream, dst: DevPtr, src: PinnedId, bytes: usize) -> Result<()> {
        self.bind()?;
        let src = self.pinned_at(src, bytes)?;
        // SAFETY: the pinned block outlives the copy (it is freed only after its event is done)
        // and dst is a live allocation of at least `bytes` bytes.
        unsafe {
            let host = std::slice::from_raw_parts(src as *const u8, bytes);
            cu::memcpy_htod_async(dst, host, self.cu_stream(stream))
        }
        .map_err(|e| driver_error("queueing a copy to the GPU", e))
    }

    fn begin_capture(&self) -> Result<()> {
        self.bind()?;
        // Relaxed: the caching allocator may still need a cuMemAlloc while the step is captured.
        // SAFETY: the driver's own stream.
        unsafe { cu::stream::begin_capture(self.stream, sys::CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED) }
            .map_err(|e| driver_error("starting a CUDA graph capture", e))
    }

    fn end_capture(&self) -> Result<GraphId> {
        self.bind()?;
        // SAFETY: the stream is capturing (else the driver returns an error); the graph and its
        // executable form are destroyed by destroy_graph or Drop.
        let (graph, exec) = unsafe {
            let graph = cu::stream::end_capture(self.stream).map_err(|e| driver_error("ending a CUDA graph capture", e))?;
            match cu::graph::instantiate(graph, sys::CUgraphInstantiate_flags(0)) {
                Ok(exec) => (graph, exec),
                Err(e) => {
                    let _ = cu::graph::destroy(graph);
                    return Err(driver_error("instantiating a CUDA graph", e));
                }
            }
        };
        let mut graphs = self.graphs.lock().map_err(|_| Error::device("CUDA graph table poisoned"))?;
        // Ids are never reused, so a destroyed graph's id cannot launch another.
        let id = self.next_graph.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        graphs.insert(id, (graph, exec));
        Ok(GraphId(id))
    }

    fn launch_graph(&self, graph: GraphId) -> Result<()> {
        self.bind()?;
        let exec = self.graph_exec(graph)?;
        // SAFETY: an instantiated graph of this context, on the driver's stream.
        unsafe { cu::graph::launch(exec, self.stream) }.map_err(|e| driver_error("launching a CUDA graph", e))
    }

    fn destroy_graph(&self, graph: GraphId) {
        let removed = self.graphs.lock().ok().and_then(|mut graphs| graphs.remove(&graph.0));
        if let (Some((graph, exec)), Ok(())) = (removed, self.bind()) {
            // SAFETY: removed from the table, so destroyed once; no queued launch runs it (the
            // caller's contract).
            unsafe {
                let _ = cu::graph::exec_destroy(exec);
                let _ = cu::graph::destroy(graph);
            }
        }
    }
}

impl CudaDriver {
    fn cu_stream(&self, stream: Stream) -> sys::CUstream {
        match stream {
            Stream::Compute => self.stream,
            Stream::Copy => self.copy_stream,
        }
    }

    fn graph_exec(&self, graph: GraphId) -> Result<sys::CUgraphExec> {
        let graphs = self.graphs.lock().map_err(|_| Error::device("CUDA graph table poisoned"))?;
        graphs.get(&graph.0).map(|&(_, exec)| exec).ok_or_else(|| Error::device(format!("unknown or destroyed graph {}", graph.0)))
    }

    fn event(&self, id: EventId) -> Result<sys::CUevent> {
        let events = self.events.lock().map_err(|_| Error::device("CUDA event table poisoned"))?;
        events.get(id.0 as usize).copied().ok_or_else(|| Error::device(format!("unknown event {}", id.0)))
    }

    /// The address of pinned block `pinned` after checking it holds `bytes` bytes.
    fn pinned_at(&self, pinned: PinnedId, bytes: usize) -> Result<*mut u8> {
        let blocks = self.pinned.lock().map_err(|_| Error::device("pinned memory table poisoned"))?;
        match blocks.get(&pinned.0) {
            Some(&size) if bytes <= size => Ok(pinned.0 as *mut u8),
            Some(_) => Err(Error::device(format!("{bytes} bytes overrun a pinned host block"))),
            None => Err(Error::device("unknown or freed pinned host block")),
        }
    }
}

impl Drop for CudaDriver {
    fn drop(&mut self) {
        if self.bind().is_err() {
            return;
        }
        // SAFETY: every handle was created by this driver and is released exactly once here;
        // errors at teardown leave nothing to recover.
        unsafe {
            for (pinned, _) in self.pinned.get_mut().map(std::mem::take).unwrap_or_default() {
                let _ = cu::free_host(pinned as *mut c_void);
            }
            for (_, (graph, exec)) in self.graphs.get_mut().map(std::mem::take).unwrap_or_default() {
                let _ = cu::graph::exec_destroy(exec);
                let _ = cu::graph::destroy(graph);
            }
            for event in self.events.get_mut().map(std::mem::take).unwrap_or_default() {
                let _ = cu::event::destroy(event);
            }
            let _ = cu::stream::destroy(self.stream);
            let _ = cu::stream::destroy(self.copy_stream);
            for (_, loaded) in self.modules.get_mut().map(std::mem::take).unwrap_or_default() {
                let _ = cu::module::unload(loaded.module);
            }
            let _ = cu::primary_ctx::release(self.device);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_a_driver_nothing_is_listed_and_opening_fails_clearly() {
        if driver_library_present() {
            // A machine with CUDA: listing works and an absurd ordinal is refused.
            assert!(list_devices().unwrap().is_some());
            let err = CudaDriver::new(1 << 20).err().expect("no machine has a million GPUs").to_string();
            assert!(err.contains("does not exist"), "{err}");
        } else {
            assert_eq!(list_devices().unwrap(), None);
            let err = CudaDriver::new(0).err().expect("no driver, no device").to_string();
            assert!(err.contains("no CUDA driver"), "{err}");
        }
    }

    #[test]
    fn kernel_arguments_fill_their_slot_from_the_start() {
        assert_eq!(arg_slot(&KernelArg::I32(-2)), [0xfe, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
        assert_eq!(arg_slot(&KernelArg::F32(1.0))[..4], 1.0f32.to_ne_bytes());
        assert_eq!(arg_slot(&KernelArg::Ptr(0x1234_5678_9abc)), 0x1234_5678_9abcu64.to_ne_bytes());
    }
}
