//! PREDICTED training-step time on modelled GPUs (RTX 3090, RTX 4090, H100), from one step run on
//! the PTX simulator: the driver calls the step made, in order, replayed on a model of the host
//! and the GPU. Every time here is a prediction, never a measurement.
//!
//! Method:
//! - Kernels: each launch takes its roofline time ([`GpuModel::predict`], the same model as the
//!   kernel benches: the slowest of fp32, issue, shared-memory and DRAM roofs, no cache).
//!   Memsets and device-to-device copies stream their bytes at the DRAM bandwidth.
//! - Host and GPU timelines: the host queues each launch in [`HostCosts::launch_s`]; the GPU runs
//!   queued work in order and idles when the queue is empty, so a kernel shorter than the host's
//!   time to queue the next leaves a gap. A host-to-device copy from pinned staging is queued
//!   like a launch and occupies the GPU for its bytes at [`HostCosts::pinned_copy_bytes_per_s`]
//!   (the bench's step has none: its batch is on the device, as `train`'s is when the copy
//!   stream has uploaded it during the step before).
//!   A synchronisation and a device-to-host copy make the host wait until the GPU has drained
//!   its queue; the host resumes
//!   [`HostCosts::sync_wake_s`] later and the GPU idles until the host has queued the next work.
//!   `cuMemAlloc` costs host time ([`HostCosts::alloc_s`]); `cuMemFree` synchronises the device
//!   first, then costs [`HostCosts::free_s`]; pinned host memory is allocated and freed likewise
//!   ([`HostCosts::host_alloc_s`]). A CUDA graph launch costs the host one launch; its nodes
//!   then run on the GPU in order, each after [`HostCosts::graph_node_s`] of GPU idle time
//!   (charged to launch gaps), with no host work between them.
//! - Breakdown: the step's time is the GPU's busy time (kernels, transfers) plus its idle time,
//!   each idle interval charged to its cause: after a call that drained the queue, the whole
//!   interval to the cause of that call (syncs, or allocs for `cuMemFree`); otherwise to the host
//!   work that overlapped it (launch gaps for queueing, allocs for `cuMemAlloc`). The step starts
//!   with an empty queue and ends when both host and GPU are done, as a timed step that ends
//!   with a synchronisation does.
//! - Batches larger than the simulator can run whole: the step runs at the predicted batch itself,
//!   with at most [`SAMPLED_BLOCKS`] blocks of each launch executed, spread evenly over its grid,
//!   and the launch's counters scaled to the whole grid (`SimOptions::sample_blocks`; the warm-up
//!   steps execute one block per launch, since only their allocations matter). Every launch,
//!   grid, tile choice, split and byte count is the one that batch makes; blocks of one launch
//!   do the same work but for the edges of a grid, which the spread samples in proportion. The
//!   values computed are meaningless (skipped blocks write nothing), which changes no counter of
//!   the kernels here: none branches on data for its amount of work.
use super::model::{ModelBenchOptions, TrainLoop};
use crate::device::{Device, DeviceCounters, MemoryStats};
use crate::error::{Error, Result};
use crate::gpu::accounting::{Accounting, DriverCall};
use crate::gpu::GpuBackend;
use crate::graph::Graph;
use crate::sim::{GpuModel, LaunchPrediction, LaunchStats, Limit, SimDriver, SimOptions, GPU_MODELS};
use serde::Serialize;
use std::sync::Arc;

/// Host-side costs of driver calls, in seconds (one set for every GPU: they are the host's and
/// the driver's, not the GPU's).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostCosts {
    /// Queueing one launch (kernel, memset, device copy).
    pub launch_s: f64,
    /// From the GPU draining its queue to the host returning from a synchronising call.
    pub sync_wake_s: f64,
    /// `cuMemAlloc` of fewer than 4 KiB, and of more.
    pub small_alloc_s: f64,
    pub alloc_s: f64,
    /// `cuMemFree` after its device synchronisation.
    pub free_s: f64,
    /// Copies between pageable host memory and the GPU.
    pub pageable_copy_bytes_per_s: f64,
    /// Copies from pinned host memory to the GPU.
    pub pinned_copy_bytes_per_s: f64,
    /// `cuMemHostAlloc` (pinned staging; only while its cache grows).
    pub host_alloc_s: f64,
    /// The GPU's time between two nodes of a graph (a graph launch itself costs the host one
    /// `launch_s`).
    pub graph_node_s: f64,
}

/// The constants and where they come from:
/// - `launch_s` 3.8 us and `sync_wake_s` 2.9 us: NVIDIA's "Getting Started with CUDA Graphs"
///   (developer blog, 2019) times a 2.9 us kernel at 3.8 us per kernel launched back to back and
///   9.6 us per kernel with a stream synchronisation after each; this model gives max(3.8, 2.9)
///   = 3.8 us and 3.8 + 2.9 + 2.9 = 9.6 us for those two loops.
/// - `small_alloc_s` 1 us and `alloc_s` 50 us: cudaMalloc per call as measured in "Memory
///   Allocation Overhead" (University of Virginia CUDA support pages): under 1 us below 256 B,
///   rising between 2 and 4 KiB to about 50 us, flat up to 512 KiB and higher above (so the
///   model understates large allocations).
/// - `free_s` 2.9 us: no per-call figure was found; taken equal to a synchronisation's wake-up,
///   since the synchronisation `cuMemFree` performs is its main cost.
/// - `pageable_copy_bytes_per_s` 12 GB/s: about half of a PCIe 4.0 x16 link's pinned rate, as
///   NVIDIA's "How to Optimize Data Transfers in CUDA C/C++" shows pageable copies reaching
///   about half of pinned ones.
/// - `pinned_copy_bytes_per_s` 24 GB/s: the pinned rate that pageable figure is half of; an
///   asynchronous copy costs the host one launch and occupies the stream for its bytes.
/// - `host_alloc_s` 1 ms: page-locking is far slower than `cuMemAlloc` (the same NVIDIA post
///   warns against allocating pinned memory often); no per-call figure was found, and a steady
///   step makes none.
/// - `graph_node_s` 0.5 us: the same CUDA Graphs post runs the 2.9 us kernel at 3.4 us per
///   kernel once the loop is a graph.
pub const HOST_COSTS: HostCosts = HostCosts {
    launch_s: 3.8e-6,
    sync_wake_s: 2.9e-6,
    small_alloc_s: 1e-6,
    alloc_s: 50e-6,
    free_s: 2.9e-6,
    pageable_copy_bytes_per_s: 12e9,
    pinned_copy_bytes_per_s: 24e9,
    host_alloc_s: 1e-3,
    graph_node_s: 0.5e-6,
};

impl HostCosts {
    fn alloc_cost(&self, bytes: usize) -> f64 {
        if bytes < 4096 {
            self.small_alloc_s
        } else {
            self.alloc_s
        }
    }
}

/// One PREDICTED training step on one GPU, in milliseconds; the parts add up to the step.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StepPrediction {
    pub gpu: &'static str,
    pub predicted_step_ms: f64,
    /// GPU busy: kernels, memsets and device copies.
    pub predicted_kernels_ms: f64,
    /// GPU busy: copies between host and GPU.
    pub predicted_transfers_ms: f64,
    /// GPU idle while the host queues work.
    pub predicted_launch_gaps_ms: f64,
    /// GPU idle after host synchronisations (explicit, and the waits of copies to and from the
    /// host) until the host has queued work again.
    pub predicted_syncs_ms: f64,
    /// GPU idle during `cuMemAlloc`, and after each `cuMemFree`'s synchronisation.
    pub predicted_allocs_ms: f64,
    /// The kernels that take most of `predicted_kernels_ms`, longest first.
    pub top_kernels: Vec<KernelShare>,
}

/// One kernel's launches in a PREDICTED step, together.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelShare {
    /// "module::kernel".
    pub kernel: String,
    pub launches: usize,
    pub predicted_ms: f64,
    /// The roof of its longest launch.
    pub limit: Limit,
}

/// One kernel's DRAM bytes in a PREDICTED step (no cache), its launches together.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct KernelBytes {
    /// "module::kernel".
    pub kernel: String,
    pub launches: usize,
    pub dram_bytes: u64,
}

/// Every kernel's DRAM bytes over `launches`, most first.
fn dram_by_kernel(launches: &[LaunchStats]) -> Vec<KernelBytes> {
    let mut kernels: Vec<KernelBytes> = Vec::new();
    for launch in launches {
        match kernels.iter_mut().find(|k| k.kernel == launch.kernel) {
            Some(k) => {
                k.launches += 1;
                k.dram_bytes += launch.dram_bytes();
            }
            None => kernels.push(KernelBytes { kernel: launch.kernel.clone(), launches: 1, dram_bytes: launch.dram_bytes() }),
        }
    }
    kernels.sort_by_key(|k| std::cmp::Reverse(k.dram_bytes));
    kernels
}

/// How many kernels [`StepPrediction::top_kernels`] lists.
pub const TOP_KERNELS: usize = 8;

/// The [`TOP_KERNELS`] kernels with the most predicted time over `launches`.
fn top_kernels(launches: &[LaunchStats], predictions: &[LaunchPrediction]) -> Vec<KernelShare> {
    let mut shares: Vec<(KernelShare, f64)> = Vec::new();
    for (launch, p) in launches.iter().zip(predictions) {
        let ms = p.seconds * 1e3;
        match shares.iter_mut().find(|(s, _)| s.kernel == launch.kernel) {
            Some((share, longest)) => {
                share.launches += 1;
                share.predicted_ms += ms;
                if ms > *longest {
                    (share.limit, *longest) = (p.limit, ms);
                }
            }
            None => shares.push((KernelShare { kernel: launch.kernel.clone(), launches: 1, predicted_ms: ms, limit: p.limit }, ms)),
        }
    }
    let mut shares: Vec<KernelShare> = shares.into_iter().map(|(s, _)| s).collect();
    shares.sort_by(|a, b| b.predicted_ms.total_cmp(&a.predicted_ms));
    shares.truncate(TOP_KERNELS);
    shares
}

/// The PREDICTED step at one batch on every modelled GPU.
#[derive(Clone, Debug, Serialize)]
pub struct StepPredictions {
    pub batch: usize,
    /// The most blocks of one launch executed; its counters were scaled to its whole grid.
    pub sampled_blocks: u32,
    /// What the step sends to the driver at `batch`.
    pub per_step: DeviceCounters,
    /// DRAM bytes of the step's launches (every global sector read or written once, no cache),
    /// scaled to their whole grids as the times are: PREDICTED.
    pub dram_bytes: u64,
    /// `dram_bytes` by kernel, most first: PREDICTED.
    pub dram_by_kernel: Vec<KernelBytes>,
    /// The simulator allocator's peak during the traced step at `batch`: bytes of live buffers,
    /// and bytes held from the driver (cached blocks included). Allocation is not sampled, so
    /// these are the step's own.
    pub peak_bytes: usize,
    pub peak_reserved_bytes: usize,
    pub gpus: Vec<StepPrediction>,
}

/// The driver calls of one steady-state training step and the simulator's counters of its
/// launches, in order.
#[derive(Clone, Debug)]
pub struct TracedStep {
    pub calls: Vec<DriverCall>,
    pub launches: Vec<LaunchStats>,
    /// The device's memory figures after the step (its peaks are the step's own).
    pub memory: MemoryStats,
}

/// Training steps before one is in steady state (makes no driver allocation).
pub const STEADY_AFTER: usize = 2;

/// Blocks executed per launch of a traced step at most ([`SimOptions::sample_blocks`]).
pub const SAMPLED_BLOCKS: u32 = 16;

/// Runs warm-up steps of `graph` at `batch` on a fresh simulator device (one block per launch),
/// then traces one step's own work with at most [`SAMPLED_BLOCKS`] blocks per launch (the
/// bench's dropout seed upload and timing synchronisation are left out).
pub fn trace_step(graph: Graph, batch: usize, opts: &ModelBenchOptions) -> Result<TracedStep> {
    let driver = Arc::new(SimDriver::new(SimOptions { sample_blocks: Some(1), ..SimOptions::from_env()? }));
    let mut train = TrainLoop::new(GpuBackend::new(driver.clone()), graph, batch, opts)?;
    // The first steps allocate what later ones reuse: the optimiser's state and the executor's
    // pooled buffers appear during the first, which changes the mix of buffers alive at once in
    // the second, whose blocks the allocator then keeps.
    for _ in 0..opts.warmup.max(STEADY_AFTER) {
        train.step()?;
    }
    driver.set_sample_blocks(Some(SAMPLED_BLOCKS))?;
    let (mut calls, mut launches) = (Vec::new(), Vec::new());
    train.step_with(|gpu, before| {
        if before {
            gpu.start_trace();
            driver.take_launch_stats();
        } else {
            calls = gpu.take_trace();
            launches = driver.take_launch_stats();
        }
    })?;
    if launches.len() != calls.iter().filter(|c| **c == DriverCall::Launch).count() {
        return Err(Error::Sim("the simulator kept fewer launch counters than the step made launches".into()));
    }
    Ok(TracedStep { calls, launches, memory: Device::<f32>::memory(train.backend()) })
}

/// What the calls count as on a device (as `GpuBackend::counters` would).
pub fn count(calls: &[DriverCall]) -> DeviceCounters {
    let accounting = Accounting::default();
    let mut graph_nodes = 0;
    for &call in calls {
        // A graph's nodes reach the GPU through its one launch, not from the host.
        if graph_nodes > 0 {
            graph_nodes -= 1;
            continue;
        }
        if let DriverCall::GraphLaunch { nodes } = call {
            graph_nodes = nodes;
        }
        accounting.record(call);
    }
    accounting.counters()
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Cause {
    LaunchGaps,
    Syncs,
    Allocs,
}

/// The host and GPU timelines of a replay, and the GPU time charged to each part so far.
struct Timeline {
    host: f64,
    gpu: f64,
    /// Host intervals since the last work reached the GPU, with their cause.
    host_work: Vec<(f64, f64, Cause)>,
    /// The cause of the last call that drained the GPU's queue, until work reaches it again.
    drained_by: Option<Cause>,
    kernels: f64,
    transfers: f64,
    idle: [f64; 3],
}

impl Timeline {
    fn charge(&mut self, cause: Cause, seconds: f64) {
        self.idle[cause as usize] += seconds;
    }

    fn host_does(&mut self, seconds: f64, cause: Cause) {
        self.host_work.push((self.host, self.host + seconds, cause));
        self.host += seconds;
    }

    /// The GPU idles from its last work to `until`; charge that interval.
    fn idle_until(&mut self, until: f64) {
        let idle = until - self.gpu;
        if idle <= 0.0 {
            return;
        }
        match self.drained_by {
            Some(cause) => self.charge(cause, idle),
            None => {
                let mut charged = 0.0;
                let (from, work) = (self.gpu, std::mem::take(&mut self.host_work));
                for &(start, end, cause) in &work {
                    let overlap = end.min(until) - start.max(from);
                    if overlap > 0.0 {
                        self.charge(cause, overlap);
                        charged += overlap;
                    }
                }
                self.charge(Cause::LaunchGaps, (idle - charged).max(0.0));
            }
        }
    }

    /// The GPU spends `seconds` between two nodes of a graph (no host work involved).
    fn graph_node_gap(&mut self, seconds: f64) {
        let start = self.gpu.max(self.host);
        self.idle_until(start);
        self.gpu = start + seconds;
        self.idle[Cause::LaunchGaps as usize] += seconds;
    }

    /// Work of `seconds` on the GPU, queued by the host now.
    fn gpu_runs(&mut self, seconds: f64, transfer: bool) {
        let start = self.gpu.max(self.host);
        self.idle_until(start);
        self.gpu = start + seconds;
        if transfer {
            self.transfers += seconds;
        } else {
            self.kernels += seconds;
        }
        self.host_work.clear();
        self.drained_by = None;
    }

    /// The host waits until the GPU's queue is empty, then resumes after the wake-up.
    fn host_waits(&mut self, wake_s: f64, cause: Cause) {
        self.host = self.host.max(self.gpu);
        self.drained_by = Some(cause);
        self.host_does(wake_s, cause);
    }
}

/// Replays `calls` (whose launches take `kernel_s` seconds each, in order) on `gpu` with the
/// host costs `host` (leaving `top_kernels` to the caller, which has the launches).
pub fn replay(calls: &[DriverCall], kernel_s: &[f64], gpu: &GpuModel, host: &HostCosts) -> StepPrediction {
    let mut t = Timeline { host: 0.0, gpu: 0.0, host_work: Vec::new(), drained_by: None, kernels: 0.0, transfers: 0.0, idle: [0.0; 3] };
    let mut kernels = kernel_s.iter();
    let mut graph_nodes = 0;
    for &call in calls {
        let queued = queued_seconds(call, &mut kernels, gpu, host);
        if graph_nodes > 0 {
            // A node of a launched graph: queued work the GPU starts after a short gap (a
            // capture records only queued work).
            graph_nodes -= 1;
            t.graph_node_gap(host.graph_node_s);
            if let Some((seconds, transfer)) = queued {
                t.gpu_runs(seconds, transfer);
            }
            continue;
        }
        if let Some((seconds, transfer)) = queued {
            t.host_does(host.launch_s, Cause::LaunchGaps);
            t.gpu_runs(seconds, transfer);
            continue;
        }
        match call {
            DriverCall::GraphLaunch { nodes } => {
                t.host_does(host.launch_s, Cause::LaunchGaps);
                graph_nodes = nodes;
            }
            DriverCall::Launch | DriverCall::Memset { .. } | DriverCall::CopyD2D { .. } | DriverCall::CopyH2DAsync { .. } => {
                unreachable!("queued work is timed above")
            }
            DriverCall::CopyD2H { bytes } => {
                // The copy waits for the queue, moves the bytes, and the host resumes after it.
                t.host = t.host.max(t.gpu);
                t.gpu_runs(bytes as f64 / host.pageable_copy_bytes_per_s, true);
                t.host_waits(host.sync_wake_s, Cause::Syncs);
            }
            DriverCall::Synchronize => t.host_waits(host.sync_wake_s, Cause::Syncs),
            DriverCall::Alloc { bytes } => t.host_does(host.alloc_cost(bytes), Cause::Allocs),
            DriverCall::Free { .. } => t.host_waits(host.free_s, Cause::Allocs),
            DriverCall::HostAlloc { .. } => t.host_does(host.host_alloc_s, Cause::Allocs),
            // cuMemFreeHost waits for the device as cuMemFree does.
            DriverCall::HostFree { .. } => t.host_waits(host.free_s, Cause::Allocs),
        }
    }
    let end = t.host.max(t.gpu);
    t.idle_until(end);
    let ms = |s: f64| s * 1e3;
    StepPrediction {
        gpu: gpu.name,
        predicted_step_ms: ms(end),
        predicted_kernels_ms: ms(t.kernels),
        predicted_transfers_ms: ms(t.transfers),
        predicted_launch_gaps_ms: ms(t.idle[Cause::LaunchGaps as usize]),
        predicted_syncs_ms: ms(t.idle[Cause::Syncs as usize]),
        predicted_allocs_ms: ms(t.idle[Cause::Allocs as usize]),
        top_kernels: Vec::new(),
    }
}

/// The GPU time of a call that queues work (a launch takes the next of `kernels`) and whether
/// it is a transfer; None for calls that queue nothing.
fn queued_seconds(call: DriverCall, kernels: &mut std::slice::Iter<'_, f64>, gpu: &GpuModel, host: &HostCosts) -> Option<(f64, bool)> {
    match call {
        DriverCall::Launch => Some((kernels.next().copied().unwrap_or(0.0), false)),
        DriverCall::Memset { bytes } => Some((bytes as f64 / gpu.dram_bytes_per_s, false)),
        DriverCall::CopyD2D { bytes } => Some((2.0 * bytes as f64 / gpu.dram_bytes_per_s, false)),
        DriverCall::CopyH2DAsync { bytes } => Some((bytes as f64 / host.pinned_copy_bytes_per_s, true)),
        _ => None,
    }
}

/// The PREDICTED step of `graph` at `batch` on every modelled GPU, from one sampled step at
/// that batch.
pub fn predict_step(graph: Graph, batch: usize, opts: &ModelBenchOptions) -> Result<StepPredictions> {
    if batch == 0 {
        return Err(Error::config("--predict-batch must be at least 1"));
    }
    let step = trace_step(graph, batch, opts)?;
    let gpus = GPU_MODELS
        .iter()
        .map(|gpu| {
            let launches: Vec<LaunchPrediction> = step.launches.iter().map(|l| gpu.predict(l)).collect();
            let kernel_s: Vec<f64> = launches.iter().map(|p| p.seconds).collect();
            StepPrediction { top_kernels: top_kernels(&step.launches, &launches), ..replay(&step.calls, &kernel_s, gpu, &HOST_COSTS) }
        })
        .collect();
    Ok(StepPredictions {
        batch,
        sampled_blocks: SAMPLED_BLOCKS,
        per_step: count(&step.calls),
        dram_bytes: step.launches.iter().map(LaunchStats::dram_bytes).sum(),
        dram_by_kernel: dram_by_kernel(&step.launches),
        peak_bytes: step.memory.peak_bytes,
        peak_reserved_bytes: step.memory.peak_reserved_bytes,
        gpus,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::roofline::RTX_3090;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    #[test]
    fn the_host_costs_reproduce_the_published_launch_loops() {
        let kernel = vec![2.9e-6; 100];
        let back_to_back = vec![DriverCall::Launch; 100];
        let p = replay(&back_to_back, &kernel, &RTX_3090, &HOST_COSTS);
        // Host-bound: one launch cost per kernel, the last kernel's tail after it.
        assert!(close(p.predicted_step_ms, (100.0 * 3.8e-6 + 2.9e-6) * 1e3), "{p:?}");
        assert!(close(p.predicted_launch_gaps_ms, (3.8e-6 + 99.0 * 0.9e-6) * 1e3), "{p:?}");
        let synced: Vec<DriverCall> = (0..100).flat_map(|_| [DriverCall::Launch, DriverCall::Synchronize]).collect();
        let p = replay(&synced, &kernel, &RTX_3090, &HOST_COSTS);
        assert!(close(p.predicted_step_ms, 100.0 * 9.6e-6 * 1e3), "{p:?}");
        assert!(close(p.predicted_syncs_ms, 99.0 * 6.7e-6 * 1e3 + 2.9e-6 * 1e3), "{p:?}");
    }

    #[test]
    fn the_parts_add_up_and_frees_drain_the_gpu() {
        use DriverCall::*;
        let calls = [Alloc { bytes: 1 << 20 }, Launch, Free { bytes: 1 << 20 }, Launch, CopyD2H { bytes: 4 }, Launch];
        let p = replay(&calls, &[20e-6, 1e-6, 1e-6], &RTX_3090, &HOST_COSTS);
        let parts = p.predicted_kernels_ms + p.predicted_transfers_ms + p.predicted_launch_gaps_ms + p.predicted_syncs_ms + p.predicted_allocs_ms;
        assert!(close(parts, p.predicted_step_ms), "{p:?}");
        // The allocation and the free's wake-up and re-queue are the allocs' share.
        assert!(close(p.predicted_allocs_ms, (50e-6 + 2.9e-6 + 3.8e-6) * 1e3), "{p:?}");
        assert!(close(p.predicted_kernels_ms, 22e-3), "{p:?}");
    }
}
