//! A PTX simulator that implements [`Driver`], so the GPU backend's launch code runs unchanged on
//! machines without a GPU: it parses and decodes the NVRTC PTX of `kernels/*.cu`, executes blocks
//! as warps of 32 lanes in lockstep, checks every access with a sanitizer (bounds, alignment,
//! uninitialised reads, shared-memory races, divergent barriers and warp-synchronous misuse) and
//! counts what each launch did for the GPU performance model (`roofline`), whose times are
//! predictions. Blocks run independently, except in a cooperative launch
//! ([`SimDriver::launch_cooperative`]), whose blocks all run interleaved so they can wait for
//! each other (cooperative groups' grid sync).
//!
//! Modules: `parse` (PTX text to syntax tree), `decode` (to the compact instruction array of
//! `program`, with `dispatch` picking `alu` functions), `alu` (arithmetic semantics), `exec`
//! (warps and blocks; `exec::memory_ops` for ld/st/atom, `exec::async_copy` for cp.async),
//! `mbarrier` (the mbarrier object), `memory` (global memory and its shadow), `sanitizer`
//! (shared shadow and fault messages), `coresident` (cooperative launches), `counters` and
//! `roofline`.

mod alu;
mod coresident;
pub mod counters;
mod decode;
mod dispatch;
mod exec;
mod graph;
mod mbarrier;
mod memory;
mod parse;
mod printf;
mod program;
pub mod roofline;
mod sanitizer;

pub use counters::LaunchStats;
pub use roofline::{GpuModel, LaunchPrediction, Limit, GPU_MODELS};

use crate::device::driver::{DevPtr, Driver, EventId, GraphId, KernelArg, LaunchConfig, PinnedId, Stream};
use graph::{Graphs, StreamOp};
use crate::device::modules::{self as kernel_modules, PtxSource};
use crate::error::{Error, Result};
use decode::DecodedKernel;
use memory::GlobalMemory;
use rayon::prelude::*;
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// Launch limits of every CUDA GPU since Volta, so launches that would fail on a GPU fail here
/// too. Shared memory is the 48 KiB a block gets without the opt-in attribute (which the CUDA
/// driver does not set).
const MAX_THREADS_PER_BLOCK: u32 = 1024;
const MAX_BLOCK_DIM: [u32; 3] = [1024, 1024, 64];
const MAX_GRID_DIM: [u32; 3] = [i32::MAX as u32, 65535, 65535];
const MAX_SHARED_PER_BLOCK: usize = 48 * 1024;
/// The zeroed global workspace a cooperative launch hands its grid barrier (cooperative groups
/// counts arrivals in its second word).
const GRID_WORKSPACE_BYTES: usize = 16;
/// How a cooperative launch's error begins: the emulated driver maps it to
/// CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE.
pub const COOPERATIVE_TOO_LARGE: &str = "cooperative launch too large";
/// Launch statistics kept for `take_launch_stats` (oldest dropped first).
const MAX_KEPT_STATS: usize = 10_000;
/// Bytes of printf output kept for `take_printf_output` (later output is only echoed).
const MAX_KEPT_PRINTF: usize = 1 << 20;

/// How a kernel is launched.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LaunchKind {
    /// Blocks run independently, in any order.
    Plain,
    /// `cuLaunchCooperativeKernel`: all blocks are resident at once and may wait for each other
    /// (cooperative groups' `this_grid().sync()`); the grid must fit on the device.
    Cooperative,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockOrder {
    /// Blocks are handed out in linear order (x fastest).
    Linear,
    /// Blocks are handed out in an order shuffled by this seed (mixed with the launch number).
    Shuffled(u64),
}

#[derive(Clone, Copy, Debug)]
pub struct SimOptions {
    /// Uninitialised reads, shared-memory races and warp-synchronous checks. Bounds, alignment
    /// and barrier divergence are always checked (a real GPU faults or hangs on those).
    pub sanitize: bool,
    pub block_order: BlockOrder,
    /// Host threads running blocks; 0 means rayon's pool size.
    pub threads: usize,
    /// Simulated device memory in bytes.
    pub capacity_bytes: usize,
    /// Device `printf` output also goes to stdout after each launch (it is always kept for
    /// `take_printf_output`).
    pub echo_printf: bool,
    /// The SM count the device reports to launchers that size grids by it (split-K GEMM):
    /// [`DEFAULT_SIM_MULTIPROCESSORS`] unless set. Execution itself does not depend on it.
    pub multiprocessors: usize,
    /// Counting runs for predictions: at most this many blocks of each launch execute, spread
    /// evenly over its grid, and the launch's counters are scaled to the whole grid. The other
    /// blocks never run, so results are meaningless: the sanitizer is off, and a global access
    /// outside every allocation (an index read from memory no block wrote) is counted but not
    /// made (a load gives 0) instead of faulting.
    pub sample_blocks: Option<u32>,
    /// The GPU whose per-SM limits (warps, blocks, shared memory) bound a cooperative launch,
    /// all of whose blocks must be resident at once on `multiprocessors` SMs. Registers are not
    /// counted: PTX leaves their allocation to the driver's compiler.
    pub residency: GpuModel,
    /// The compute capability the device reports; modules compiled for a newer architecture do
    /// not load.
    pub compute_capability: (i32, i32),
}

/// The simulated device's SM count by default: the RTX 3090's, the first GPU the performance
/// model predicts for and the GPU of the emulated driver's default architecture (sm_86).
pub const DEFAULT_SIM_MULTIPROCESSORS: usize = roofline::RTX_3090.sms as usize;

/// The simulated device's compute capability by default: the RTX 3090's (sm_86), as for the SM
/// count.
pub const SIM_COMPUTE_CAPABILITY: (i32, i32) = (8, 6);

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            sanitize: true,
            block_order: BlockOrder::Shuffled(0x5eed),
            threads: 0,
            capacity_bytes: 16 << 30,
            echo_printf: true,
            multiprocessors: DEFAULT_SIM_MULTIPROCESSORS,
            sample_blocks: None,
            residency: roofline::RTX_3090,
            compute_capability: SIM_COMPUTE_CAPABILITY,
        }
    }
}

/// Environment variable that turns the sanitizer off (`0`/`off`/`false`) or on (`1`/`on`/`true`)
/// for simulator devices opened by `--device sim` and the test backend.
pub const SANITIZE_ENV: &str = "FERRONET_SIM_SANITIZE";
/// Environment variable that sets the simulated device memory in MiB (default 16 GiB), so a run
/// can be tried against a small GPU.
pub const MEMORY_ENV: &str = "FERRONET_SIM_MEMORY_MB";

impl SimOptions {
    /// The defaults, with the sanitizer setting taken from `FERRONET_SIM_SANITIZE` and the
    /// memory from `FERRONET_SIM_MEMORY_MB` when set.
    pub fn from_env() -> Result<Self> {
        let mut options = SimOptions::default();
        if let Ok(v) = std::env::var(SANITIZE_ENV) {
            options.sanitize = match v.trim().to_ascii_lowercase().as_str() {
                "1" | "on" | "true" | "yes" => true,
                "0" | "off" | "false" | "no" => false,
                other => {
                    return Err(Error::config(format!("{SANITIZE_ENV}={other}: use 1/on/true or 0/off/false")));
                }
            };
        }
        if let Ok(v) = std::env::var(MEMORY_ENV) {
            let mib = v.trim().parse::<usize>().ok().filter(|&m| m > 0 && m <= 1 << 30).ok_or_else(|| {
                Error::config(format!("{MEMORY_ENV}={v}: give the simulated device memory as a whole number of MiB"))
            })?;
            options.capacity_bytes = mib << 20;
        }
        Ok(options)
    }
}

/// A loaded module: its decoded kernels and the allocations of its global variables.
struct Module {
    kernels: HashMap<String, DecodedKernel>,
    globals: Vec<DevPtr>,
    /// Each global variable's address and size in bytes, by name.
    symbols: HashMap<String, (DevPtr, usize)>,
}

pub struct SimDriver {
    options: Mutex<SimOptions>,
    memory: Mutex<GlobalMemory>,
    modules: Mutex<HashMap<String, Arc<Module>>>,
    stats: Mutex<VecDeque<LaunchStats>>,
    printf_output: Mutex<String>,
    events: Mutex<Vec<Instant>>,
    /// Pinned host blocks by id (ids are never reused).
    pinned: Mutex<HashMap<u64, Vec<u8>>>,
    next_pinned: AtomicU64,
    graphs: Mutex<Graphs>,
    launches: AtomicU64,
}

fn lock<T>(m: &Mutex<T>) -> Result<MutexGuard<'_, T>> {
    m.lock().map_err(|_| Error::Sim("simulator state poisoned by an earlier panic".into()))
}

impl SimDriver {
    pub fn new(options: SimOptions) -> Self {
        SimDriver {
            memory: Mutex::new(GlobalMemory::new(options.capacity_bytes)),
            options: Mutex::new(options),
            modules: Mutex::new(HashMap::new()),
            stats: Mutex::new(VecDeque::new()),
            printf_output: Mutex::new(String::new()),
            events: Mutex::new(Vec::new()),
            pinned: Mutex::new(HashMap::new()),
            next_pinned: AtomicU64::new(1),
            graphs: Mutex::new(Graphs::default()),
            launches: AtomicU64::new(0),
        }
    }

    /// Registers PTX text as module `name` (replacing a module of that name), for kernels that
    /// are not among the embedded `kernels/*.cu`.
    pub fn load_ptx(&self, name: &str, ptx: &str) -> Result<()> {
        let ast = parse::parse_module(ptx).map_err(|e| match e {
            Error::Sim(m) => Error::Sim(format!("module {name}: {m}")),
            other => other,
        })?;
        // Module variables (`__device__`, `__constant__`) live in global memory for as long as
        // the module is loaded, initialised like static storage.
        let mut addresses = HashMap::new();
        let mut globals = Vec::new();
        let mut symbols = HashMap::new();
        {
            let mut memory = lock(&self.memory)?;
            for var in &ast.globals {
                let ptr = memory.alloc(var.bytes as usize)?;
                globals.push(ptr);
                memory.write(ptr, &var.initial_bytes())?;
                addresses.insert(var.name.clone(), ptr);
                symbols.insert(var.name.clone(), (ptr, var.bytes as usize));
            }
        }
        let kernels = decode::decode_module(&ast, &addresses);
        let replaced = lock(&self.modules)?.insert(name.to_string(), Arc::new(Module { kernels, globals, symbols }));
        if let Some(old) = replaced {
            for &ptr in &old.globals {
                self.free(ptr);
            }
        }
        Ok(())
    }

    pub fn set_sanitize(&self, on: bool) -> Result<()> {
        lock(&self.options)?.sanitize = on;
        Ok(())
    }

    /// Sets [`SimOptions::sample_blocks`] for the launches that follow.
    pub fn set_sample_blocks(&self, most: Option<u32>) -> Result<()> {
        lock(&self.options)?.sample_blocks = most;
        Ok(())
    }

    /// Device `printf` output since the last call.
    pub fn take_printf_output(&self) -> String {
        self.printf_output.lock().map(|mut s| std::mem::take(&mut *s)).unwrap_or_default()
    }

    /// Counters of the launches since the last call, oldest first.
    pub fn take_launch_stats(&self) -> Vec<LaunchStats> {
        self.stats.lock().map(|mut s| s.drain(..).collect()).unwrap_or_default()
    }

    /// Loads module `name` (embedded or registered) and decodes all its kernels; returns their
    /// names, or the first kernel's decode error (an unsupported instruction, with its line).
    pub fn validate_module(&self, name: &str) -> Result<Vec<String>> {
        let module = self.module(name)?;
        let mut names: Vec<String> = module.kernels.keys().cloned().collect();
        names.sort();
        for kernel in &names {
            if let Some(Err(msg)) = module.kernels.get(kernel) {
                return Err(Error::Sim(msg.clone()));
            }
        }
        Ok(names)
    }

    fn module(&self, name: &str) -> Result<Arc<Module>> {
        if let Some(m) = lock(&self.modules)?.get(name) {
            return Ok(m.clone());
        }
        // The simulator runs the PTX build.rs embeds (each module's own architecture), on a
        // device of the capability its options say.
        let cc = lock(&self.options)?.compute_capability;
        let ptx = kernel_modules::ptx(name, cc, PtxSource::EmbeddedFirst)?;
        self.load_ptx(name, &ptx)?;
        lock(&self.modules)?.get(name).cloned().ok_or_else(|| Error::Sim(format!("module {name} vanished")))
    }

    fn marshal(kernel: &program::Kernel, args: &[KernelArg]) -> Result<Vec<u8>> {
        if args.len() != kernel.params.len() {
            return Err(Error::device(format!(
                "kernel {} takes {} parameters but the launch passed {}",
                kernel.name,
                kernel.params.len(),
                args.len()
            )));
        }
        let mut buf = vec![0u8; kernel.param_bytes];
        for (i, (arg, &(off, bytes))) in args.iter().zip(&kernel.params).enumerate() {
            let raw: Vec<u8> = match *arg {
                KernelArg::Ptr(p) => p.to_le_bytes().to_vec(),
                KernelArg::I32(v) => v.to_le_bytes().to_vec(),
                KernelArg::U32(v) => v.to_le_bytes().to_vec(),
                KernelArg::I64(v) => v.to_le_bytes().to_vec(),
                KernelArg::U64(v) => v.to_le_bytes().to_vec(),
                KernelArg::F32(v) => v.to_le_bytes().to_vec(),
                KernelArg::F64(v) => v.to_le_bytes().to_vec(),
            };
            if raw.len() != bytes {
                return Err(Error::device(format!(
                    "kernel {} parameter {i} is {bytes} bytes but the launch passed {arg:?} ({} bytes)",
                    kernel.name,
                    raw.len()
                )));
            }
            buf[off..off + bytes].copy_from_slice(&raw);
        }
        Ok(buf)
    }
}

impl Driver for SimDriver {
    fn name(&self) -> String {
        "sim".into()
    }

    fn simulated(&self) -> bool {
        true
    }

    fn alloc(&self, bytes: usize) -> Result<DevPtr> {
        lock(&self.memory)?.alloc(bytes)
    }

    fn free(&self, ptr: DevPtr) {
        if let Ok(mut m) = self.memory.lock() {
            m.free(ptr);
        }
    }

    fn reissue(&self, ptr: DevPtr, bytes: usize) -> Result<()> {
        if lock(&self.graphs)?.record(|| StreamOp::Reissue { ptr, bytes }) {
            return Ok(());
        }
        lock(&self.memory)?.reissue(ptr, bytes)
    }

    fn copy_htod(&self, dst: DevPtr, src: &[u8]) -> Result<()> {
        lock(&self.graphs)?.refuse_during_capture("a synchronous copy to the device")?;
        lock(&self.memory)?.write(dst, src)
    }

    fn copy_dtoh(&self, dst: &mut [u8], src: DevPtr) -> Result<()> {
        lock(&self.graphs)?.refuse_during_capture("a copy from the device")?;
        lock(&self.memory)?.read(src, dst)
    }

    fn copy_dtod(&self, dst: DevPtr, src: DevPtr, bytes: usize) -> Result<()> {
        if lock(&self.graphs)?.record(|| StreamOp::CopyDtoD { dst, src, bytes }) {
            return Ok(());
        }
        lock(&self.memory)?.copy(dst, src, bytes)
    }

    fn memset(&self, dst: DevPtr, value: u8, bytes: usize) -> Result<()> {
        if lock(&self.graphs)?.record(|| StreamOp::Memset { dst, value, bytes }) {
            return Ok(());
        }
        lock(&self.memory)?.fill(dst, value, bytes)
    }

    fn launch(&self, module: &str, kernel: &str, cfg: &LaunchConfig, args: &[KernelArg]) -> Result<()> {
        let started = Instant::now();
        let k = self.kernel(module, kernel)?;
        // Checked when recorded, as the driver checks a captured launch's arguments.
        let params = Self::marshal(&k, args)?;
        let recorded = lock(&self.graphs)?.record(|| StreamOp::Launch {
            module: module.to_string(),
            kernel: kernel.to_string(),
            cfg: *cfg,
            args: args.to_vec(),
        });
        if recorded {
            return Ok(());
        }
        self.run_kernel(started, module, &k, cfg, &params, LaunchKind::Plain)
    }

    fn synchronize(&self) -> Result<()> {
        lock(&self.graphs)?.refuse_during_capture("a synchronisation")
    }

    fn mem_info(&self) -> Result<(usize, usize)> {
        let m = lock(&self.memory)?;
        Ok((m.capacity() - m.used(), m.capacity()))
    }

    fn multiprocessor_count(&self) -> usize {
        self.options.lock().map_or(DEFAULT_SIM_MULTIPROCESSORS, |o| o.multiprocessors.max(1))
    }

    fn compute_capability(&self) -> (i32, i32) {
        self.options.lock().map_or(SIM_COMPUTE_CAPABILITY, |o| o.compute_capability)
    }

    fn record_event(&self, _stream: Stream) -> Result<EventId> {
        let mut ev = lock(&self.events)?;
        ev.push(Instant::now());
        Ok(EventId(ev.len() as u64 - 1))
    }

    fn rerecord_event(&self, _stream: Stream, event: EventId) -> Result<()> {
        let mut ev = lock(&self.events)?;
        *ev.get_mut(event.0 as usize).ok_or_else(|| unknown_event(event))? = Instant::now();
        Ok(())
    }

    /// Work runs as it is queued here, so every recorded event is already done.
    fn wait_event(&self, _stream: Stream, event: EventId) -> Result<()> {
        lock(&self.graphs)?.refuse_during_capture("waiting for an event")?;
        lock(&self.events)?.get(event.0 as usize).map(drop).ok_or_else(|| unknown_event(event))
    }

    /// Work runs as it is queued here, so a recorded event is always done.
    fn event_done(&self, event: EventId) -> Result<bool> {
        lock(&self.graphs)?.refuse_during_capture("an event query")?;
        lock(&self.events)?.get(event.0 as usize).map(|_| true).ok_or_else(|| unknown_event(event))
    }

    fn elapsed_ms(&self, start: EventId, end: EventId) -> Result<f32> {
        let ev = lock(&self.events)?;
        let get = |e: EventId| ev.get(e.0 as usize).copied().ok_or_else(|| unknown_event(e));
        let (a, b) = (get(start)?, get(end)?);
        Ok(b.saturating_duration_since(a).as_secs_f32() * 1000.0)
    }

    fn alloc_pinned(&self, bytes: usize) -> Result<PinnedId> {
        let id = self.next_pinned.fetch_add(1, Ordering::Relaxed);
        lock(&self.pinned)?.insert(id, vec![0; bytes]);
        Ok(PinnedId(id))
    }

    fn free_pinned(&self, pinned: PinnedId) {
        if let Ok(mut blocks) = self.pinned.lock() {
            blocks.remove(&pinned.0);
        }
    }

    fn write_pinned(&self, pinned: PinnedId, src: &[u8]) -> Result<()> {
        let mut blocks = lock(&self.pinned)?;
        let block = blocks.get_mut(&pinned.0).ok_or_else(|| unknown_pinned(pinned))?;
        block.get_mut(..src.len()).ok_or_else(|| pinned_overrun(pinned, src.len()))?.copy_from_slice(src);
        Ok(())
    }

    fn copy_htod_async(&self, stream: Stream, dst: DevPtr, src: PinnedId, bytes: usize) -> Result<()> {
        let blocks = lock(&self.pinned)?;
        let block = blocks.get(&src.0).ok_or_else(|| unknown_pinned(src))?;
        let bytes_now = block.get(..bytes).ok_or_else(|| pinned_overrun(src, bytes))?;
        if stream == Stream::Compute && lock(&self.graphs)?.record(|| StreamOp::CopyHtoDAsync { dst, src, bytes }) {
            return Ok(());
        }
        lock(&self.memory)?.write(dst, bytes_now)
    }

    fn begin_capture(&self) -> Result<()> {
        lock(&self.graphs)?.begin()
    }

    fn end_capture(&self) -> Result<GraphId> {
        lock(&self.graphs)?.end()
    }

    fn launch_graph(&self, graph: GraphId) -> Result<()> {
        let ops = {
            let graphs = lock(&self.graphs)?;
            graphs.refuse_during_capture("launching a graph")?;
            graphs.ops(graph)?
        };
        for op in ops {
            match op {
                StreamOp::Launch { module, kernel, cfg, args } => self.launch(&module, &kernel, &cfg, &args)?,
                StreamOp::Memset { dst, value, bytes } => self.memset(dst, value, bytes)?,
                StreamOp::CopyDtoD { dst, src, bytes } => self.copy_dtod(dst, src, bytes)?,
                StreamOp::CopyHtoDAsync { dst, src, bytes } => self.copy_htod_async(Stream::Compute, dst, src, bytes)?,
                StreamOp::Reissue { ptr, bytes } => self.reissue(ptr, bytes)?,
            }
        }
        Ok(())
    }

    fn destroy_graph(&self, graph: GraphId) {
        if let Ok(mut graphs) = self.graphs.lock() {
            graphs.destroy(graph);
        }
    }
}

fn unknown_event(event: EventId) -> Error {
    Error::device(format!("unknown event {}", event.0))
}

fn unknown_pinned(pinned: PinnedId) -> Error {
    Error::device(format!("unknown or freed pinned host block {}", pinned.0))
}

fn pinned_overrun(pinned: PinnedId, bytes: usize) -> Error {
    Error::device(format!("{bytes} bytes overrun pinned host block {}", pinned.0))
}

/// Raw launches, for the emulated CUDA driver library (src/libcuda), which receives kernel
/// parameters as the bytes the caller laid out.
impl SimDriver {
    /// The (offset, size) in bytes of each parameter of `module::kernel`, in signature order, as
    /// its PTX `.param` list declares them; Ok(None) when the module has no such kernel.
    pub fn kernel_params(&self, module: &str, kernel: &str) -> Result<Option<Vec<(usize, usize)>>> {
        match self.module(module)?.kernels.get(kernel) {
            Some(Ok(k)) => Ok(Some(k.params.clone())),
            Some(Err(msg)) => Err(Error::Sim(msg.clone())),
            None => Ok(None),
        }
    }

    /// The most blocks a cooperative launch of `module::kernel` with `cfg`'s block size and
    /// dynamic shared memory may have (more fail with [`COOPERATIVE_TOO_LARGE`]).
    pub fn max_cooperative_blocks(&self, module: &str, kernel: &str, cfg: &LaunchConfig) -> Result<u64> {
        let k = self.kernel(module, kernel)?;
        let threads = cfg.block.0 as u64 * cfg.block.1 as u64 * cfg.block.2 as u64;
        Ok(coresident_blocks(&*lock(&self.options)?, threads, k.shared_bytes(cfg.shared_mem_bytes as usize)))
    }

    /// Launches `module::kernel` cooperatively (see [`LaunchKind::Cooperative`]).
    pub fn launch_cooperative(&self, module: &str, kernel: &str, cfg: &LaunchConfig, args: &[KernelArg]) -> Result<()> {
        let started = Instant::now();
        lock(&self.graphs)?.refuse_during_capture("a cooperative launch")?;
        let k = self.kernel(module, kernel)?;
        let params = Self::marshal(&k, args)?;
        self.run_kernel(started, module, &k, cfg, &params, LaunchKind::Cooperative)
    }

    /// Launches `module::kernel` with its parameter buffer already laid out as
    /// [`SimDriver::kernel_params`] describes.
    pub fn launch_raw(&self, module: &str, kernel: &str, cfg: &LaunchConfig, params: &[u8], kind: LaunchKind) -> Result<()> {
        let started = Instant::now();
        let k = self.kernel(module, kernel)?;
        if params.len() != k.param_bytes {
            return Err(Error::device(format!(
                "kernel {kernel} takes {} bytes of parameters but the launch passed {}",
                k.param_bytes,
                params.len()
            )));
        }
        self.run_kernel(started, module, &k, cfg, params, kind)
    }

    /// The address and size of global variable `symbol` of module `name`; Ok(None) when the
    /// module has no such variable.
    pub fn global(&self, name: &str, symbol: &str) -> Result<Option<(DevPtr, usize)>> {
        Ok(self.module(name)?.symbols.get(symbol).copied())
    }

    /// Unloads module `name` and frees its global variables (a no-op for an unknown name).
    pub fn unload_module(&self, name: &str) -> Result<()> {
        if let Some(old) = lock(&self.modules)?.remove(name) {
            for &ptr in &old.globals {
                self.free(ptr);
            }
        }
        Ok(())
    }

    fn kernel(&self, module: &str, kernel: &str) -> Result<Arc<program::Kernel>> {
        match self.module(module)?.kernels.get(kernel) {
            Some(Ok(k)) => Ok(k.clone()),
            Some(Err(msg)) => Err(Error::Sim(msg.clone())),
            None => Err(Error::device(format!("module {module} has no kernel named {kernel}"))),
        }
    }

    fn run_kernel(&self, started: Instant, module: &str, k: &program::Kernel, cfg: &LaunchConfig, params: &[u8], kind: LaunchKind) -> Result<()> {
        let grid = [cfg.grid.0, cfg.grid.1, cfg.grid.2];
        let block = [cfg.block.0, cfg.block.1, cfg.block.2];
        let threads = block.iter().map(|&b| b as u64).product::<u64>();
        let within = |dims: [u32; 3], max: [u32; 3]| dims.iter().zip(max).all(|(&d, m)| (1..=m).contains(&d));
        if !within(grid, MAX_GRID_DIM) || !within(block, MAX_BLOCK_DIM) || threads > MAX_THREADS_PER_BLOCK as u64 {
            return Err(Error::device(format!(
                "invalid launch of {module}::{}: grid {grid:?}, block {block:?} (grid up to {MAX_GRID_DIM:?}, \
                 block up to {MAX_BLOCK_DIM:?} with at most {MAX_THREADS_PER_BLOCK} threads)",
                k.name
            )));
        }
        let options = *lock(&self.options)?;
        let launch_no = self.launches.fetch_add(1, Ordering::Relaxed);
        let shared_bytes = k.shared_bytes(cfg.shared_mem_bytes as usize);
        if shared_bytes > MAX_SHARED_PER_BLOCK {
            return Err(Error::device(format!(
                "{module}::{} needs {shared_bytes} bytes of shared memory per block; the limit is {MAX_SHARED_PER_BLOCK}",
                k.name
            )));
        }
        let nblocks = grid.iter().map(|&g| g as u64).product::<u64>();
        let nblocks = u32::try_from(nblocks).map_err(|_| Error::device(format!("grid {grid:?} has too many blocks for the simulator")))?;
        let cooperative = kind == LaunchKind::Cooperative;
        if cooperative {
            let most = coresident_blocks(&options, threads, shared_bytes);
            if nblocks as u64 > most {
                return Err(Error::device(format!(
                    "{COOPERATIVE_TOO_LARGE}: {module}::{} asks for {nblocks} blocks of {threads} threads and {shared_bytes} bytes \
                     of shared memory, but at most {most} such blocks fit on the device's {} SMs at once",
                    k.name, options.multiprocessors
                )));
            }
        }
        // Every block of a cooperative launch runs: they wait for each other.
        let sampling = options.sample_blocks.filter(|_| !cooperative);

        let mut memory = lock(&self.memory)?;
        // The grid barrier's counter lives in a zeroed global workspace for the launch.
        let workspace = if cooperative {
            let ptr = memory.alloc(GRID_WORKSPACE_BYTES)?;
            memory.write(ptr, &[0; GRID_WORKSPACE_BYTES])?;
            ptr
        } else {
            0
        };
        let view = memory.view();
        let lp = exec::Launch {
            kernel: k,
            grid,
            block,
            dyn_shared: cfg.shared_mem_bytes as usize,
            params,
            mem: &view,
            sanitize: options.sanitize && sampling.is_none(),
            sampled: sampling.is_some(),
            grid_workspace: workspace,
        };
        let mut order: Vec<u32> = match sampling {
            // At least one block runs, whatever the option says.
            Some(most) if nblocks > most.max(1) => sampled_blocks(nblocks, most.max(1)),
            _ => (0..nblocks).collect(),
        };
        let executed = order.len();
        if let BlockOrder::Shuffled(seed) = options.block_order {
            crate::rng::Rng::new(seed ^ launch_no.wrapping_mul(0x9E37_79B9_7F4A_7C15)).shuffle(&mut order);
        }
        let workers = if options.threads == 0 { rayon::current_num_threads() } else { options.threads }.max(1);
        let (result, printed) = if cooperative { coresident::run(&lp, &order) } else { run_blocks(&lp, &order, workers) };
        if cooperative {
            memory.free(workspace);
        }
        drop(memory);
        // Output printed before a fault is kept: it is what one debugs the fault with.
        if !printed.is_empty() {
            if options.echo_printf {
                // Device printf is best effort, as on a GPU: a closed stdout loses it.
                let _ = std::io::Write::write_all(&mut std::io::stdout().lock(), printed.as_bytes());
            }
            let mut kept = lock(&self.printf_output)?;
            if kept.len() < MAX_KEPT_PRINTF {
                kept.push_str(&printed);
            }
        }
        // Faults name the kernel as the launch did: module::kernel.
        let mut stats = result.map_err(|e| match e {
            Error::KernelFault { kernel, detail } => Error::KernelFault { kernel: format!("{module}::{kernel}"), detail },
            other => other,
        })?;

        if executed < nblocks as usize {
            stats = stats.scaled(nblocks as f64 / executed as f64);
        }
        stats.kernel = format!("{module}::{}", k.name);
        stats.grid = cfg.grid;
        stats.block = cfg.block;
        stats.sim_seconds = started.elapsed().as_secs_f64();
        let mut kept = lock(&self.stats)?;
        if kept.len() == MAX_KEPT_STATS {
            kept.pop_front();
        }
        kept.push_back(stats);
        Ok(())
    }

}

/// `most` block indices of a grid of `blocks`, evenly spaced: the middle of each of `most` equal
/// runs of the linear block order (x fastest), so rows and columns of a 2-D grid are all visited.
fn sampled_blocks(blocks: u32, most: u32) -> Vec<u32> {
    (0..most as u64).map(|i| ((2 * i + 1) * blocks as u64 / (2 * most as u64)) as u32).collect()
}

/// How many blocks of `threads` threads and `shared_bytes` bytes of shared memory can be
/// resident at once on the device `options` describe.
fn coresident_blocks(options: &SimOptions, threads: u64, shared_bytes: usize) -> u64 {
    let per_sm = options.residency.resident_blocks_per_sm(threads as u32, 0, shared_bytes as u32);
    options.multiprocessors.max(1) as u64 * per_sm as u64
}

/// Runs the blocks in `order` on up to `workers` host threads; each thread takes contiguous
/// chunks of the order. The first fault stops the others. Returns the summed counters (or the
/// fault) and the printf output in block order, also when a block faulted.
fn run_blocks(lp: &exec::Launch, order: &[u32], workers: usize) -> (Result<LaunchStats>, String) {
    let run_chunk = |blocks: &[u32], abort: &AtomicBool| {
        let mut w = exec::Worker::new(lp);
        for &b in blocks {
            if abort.load(Ordering::Relaxed) {
                break;
            }
            if let Err(e) = w.run_block(b) {
                abort.store(true, Ordering::Relaxed);
                return (Err(e), w.printf_output);
            }
        }
        (Ok(w.stats), w.printf_output)
    };
    let abort = AtomicBool::new(false);
    if workers <= 1 || order.len() <= 1 {
        return run_chunk(order, &abort);
    }
    // A few chunks per thread balance uneven blocks without much per-chunk setup.
    let chunk = order.len().div_ceil(workers * 4).max(1);
    let results: Vec<(Result<LaunchStats>, String)> = order.par_chunks(chunk).map(|blocks| run_chunk(blocks, &abort)).collect();
    let mut total = Ok(LaunchStats::default());
    let mut printed = String::new();
    for (r, text) in results {
        printed.push_str(&text);
        match (r, &mut total) {
            (Ok(stats), Ok(t)) => t.merge(&stats),
            (Err(e), Ok(_)) => total = Err(e),
            _ => {}
        }
    }
    (total, printed)
}
