//! The driver trait: the only thing the GPU backend needs from a device. Implemented over cudarc
//! for real GPUs (`gpu::cuda_driver`) and by the PTX simulator (`sim`), two peers above this
//! layer, so the same launch code runs on both.

use crate::error::Result;

/// A device address. 0 is never a valid allocation.
pub type DevPtr = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: (u32, u32, u32),
    pub block: (u32, u32, u32),
    /// Dynamic shared memory (`extern __shared__`) in bytes.
    pub shared_mem_bytes: u32,
}

impl LaunchConfig {
    /// A 1-D launch covering `n` threads with blocks of `block` threads.
    pub fn linear(n: usize, block: u32) -> Self {
        let blocks = n.div_ceil(block as usize).max(1) as u32;
        LaunchConfig { grid: (blocks, 1, 1), block: (block, 1, 1), shared_mem_bytes: 0 }
    }
}

/// One kernel parameter, in the order of the kernel's signature. Pointers are `Ptr`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum KernelArg {
    Ptr(DevPtr),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
}

/// The device's two streams. Work queued on one runs in the order it was queued; between the two,
/// only events order it (recorded on one, waited for on the other).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// A step's work: launches, memsets, device copies, graph launches; what a capture records.
    Compute,
    /// Uploads that overlap the compute stream's work: the next batch while a step runs.
    Copy,
}

/// An opaque event recorded in one of the device's streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EventId(pub u64);

/// A block of page-locked (pinned) host memory from [`Driver::alloc_pinned`]: the device copies
/// from it without the stream synchronisation a copy from pageable memory makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PinnedId(pub u64);

/// A captured graph of stream work, from [`Driver::end_capture`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GraphId(pub u64);

pub trait Driver: Send + Sync {
    /// "cuda:0 NVIDIA GeForce RTX 3090 (sm_86, 24 GiB)", "sim", ...
    fn name(&self) -> String;
    /// Whether kernels run on ferronet's PTX simulator (the simulator device, or a device of the
    /// emulated CUDA driver): then the host's timings are the simulator's, not a GPU's.
    fn simulated(&self) -> bool;
    fn alloc(&self, bytes: usize) -> Result<DevPtr>;
    fn free(&self, ptr: DevPtr);
    /// A caching allocator hands out the block at `ptr` (from `alloc`, at least `bytes` long)
    /// for a new buffer of `bytes` bytes. A checking driver (the simulator) treats it as a fresh
    /// allocation of exactly that size, so its bounds and uninitialised-read checks see the
    /// buffer, not the block; a real driver has nothing to do.
    fn reissue(&self, _ptr: DevPtr, _bytes: usize) -> Result<()> {
        Ok(())
    }
    fn copy_htod(&self, dst: DevPtr, src: &[u8]) -> Result<()>;
    fn copy_dtoh(&self, dst: &mut [u8], src: DevPtr) -> Result<()>;
    fn copy_dtod(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()>;
    /// Sets `bytes` bytes at `dst` to `value`.
    fn memset(&self, dst: DevPtr, value: u8, bytes: usize) -> Result<()>;
    /// Launches `kernel` from the embedded module `module` (a `kernels/<module>.cu` file stem).
    fn launch(&self, module: &str, kernel: &str, cfg: &LaunchConfig, args: &[KernelArg]) -> Result<()>;
    fn synchronize(&self) -> Result<()>;
    /// (free, total) device memory in bytes.
    fn mem_info(&self) -> Result<(usize, usize)>;
    /// Streaming multiprocessors (SMs): how many blocks run at once, for launchers that size a
    /// grid to fill the device (split-K GEMM).
    fn multiprocessor_count(&self) -> usize;
    /// The device's compute capability (major, minor): which kernel modules it loads.
    fn compute_capability(&self) -> (i32, i32);
    /// The CUDA stream behind `stream` (a `CUstream`), for libraries that queue work on it
    /// (NCCL); None where there is no CUDA driver (the simulator).
    fn cuda_stream(&self, _stream: Stream) -> Option<u64> {
        None
    }
    /// Creates an event and records it in `stream`.
    fn record_event(&self, stream: Stream) -> Result<EventId>;
    /// Records `event` again, at the current end of `stream`.
    fn rerecord_event(&self, stream: Stream, event: EventId) -> Result<()>;
    /// Work queued on `stream` from now on starts only after the work queued before `event`'s
    /// latest record has finished. The host does not wait. Not allowed during a capture.
    fn wait_event(&self, stream: Stream, event: EventId) -> Result<()>;
    /// Whether the work queued before `event`'s latest record has finished; never waits for it.
    fn event_done(&self, event: EventId) -> Result<bool>;
    /// Milliseconds between two recorded events (after synchronising on the later one).
    fn elapsed_ms(&self, start: EventId, end: EventId) -> Result<f32>;
    /// Page-locked host memory of `bytes` bytes.
    fn alloc_pinned(&self, bytes: usize) -> Result<PinnedId>;
    /// Releases pinned memory no queued copy still reads.
    fn free_pinned(&self, pinned: PinnedId);
    /// Writes `src` at the start of `pinned` (a host copy; no queued copy may still read it).
    fn write_pinned(&self, pinned: PinnedId, src: &[u8]) -> Result<()>;
    /// Queues a copy of the first `bytes` bytes of `src` to `dst` on `stream` and returns
    /// without waiting for it or for the stream. A capture records only compute-stream copies.
    fn copy_htod_async(&self, stream: Stream, dst: DevPtr, src: PinnedId, bytes: usize) -> Result<()>;
    /// Starts recording the compute stream's work (launches, memsets, device copies, queued uploads)
    /// into a graph instead of running it. Anything that would make the host wait (a
    /// synchronisation, a device-to-host copy) is an error until `end_capture`.
    fn begin_capture(&self) -> Result<()>;
    /// Stops recording and returns the recorded work as a graph ready to launch.
    fn end_capture(&self) -> Result<GraphId>;
    /// Queues the whole graph's work, in its recorded order, with one call. A queued upload in
    /// it reads its pinned block when it runs, not when it was recorded.
    fn launch_graph(&self, graph: GraphId) -> Result<()>;
    /// Releases a graph no queued launch still runs.
    fn destroy_graph(&self, graph: GraphId);
}
