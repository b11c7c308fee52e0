//! The emulator's state: the devices with their primary contexts, every handle given out
//! (modules, functions, streams, events, graphs) and pinned host allocations. One lock guards it
//! all; work runs while the lock is held, which orders it as the legacy default stream would.

use crate::config::{self, DeviceConfig};
use crate::errors::{notice_once, CuResult};
use crate::queue::Op;
use cudarc::driver::sys::CUresult;
use ferronet::sim::{SimDriver, SimOptions};
use std::alloc::Layout;
use std::cell::Cell;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

/// The primary context of one device.
pub struct Context {
    pub handle: u64,
    /// cuDevicePrimaryCtxRetain count; the context is usable while it is above zero.
    pub retained: u32,
    /// A kernel fault: returned by every later call on the context, as on hardware, until the
    /// primary context is released for the last time.
    pub sticky: Option<CUresult>,
    /// Live device allocations (base -> bytes), to refuse invalid and double frees.
    pub allocations: BTreeMap<u64, usize>,
    /// Predicted device time in seconds: what events record (the simulator's roofline estimate).
    pub predicted_s: f64,
}

pub struct Device {
    pub config: DeviceConfig,
    pub sim: SimDriver,
    pub ctx: Context,
}

/// A stream's capture state (cuStreamBeginCapture .. cuStreamEndCapture).
pub enum Capture {
    Active(Vec<Op>),
    /// An illegal call during capture invalidated it: EndCapture fails.
    Invalidated,
}

pub enum Object {
    Module { device: usize, sim_name: String, functions: HashMap<String, u64> },
    Function { device: usize, module: u64, sim_module: String, kernel: String, params: Vec<(usize, usize)> },
    /// `queue`: work submitted and not yet run, with its submission number.
    Stream { device: usize, capture: Option<Capture>, queue: VecDeque<(u64, Op)> },
    /// `submitted`/`completed`: how many records were submitted and how many have run.
    Event { device: usize, timing: bool, recorded_at_s: Option<f64>, submitted: u64, completed: u64 },
    Graph { device: usize, ops: Vec<Op> },
    GraphExec { device: usize, ops: Vec<Op> },
    /// An emulated NCCL communicator (nccl.rs).
    NcclComm(crate::nccl::Comm),
}

impl Object {
    pub fn device(&self) -> usize {
        match self {
            Object::Module { device, .. }
            | Object::Function { device, .. }
            | Object::Stream { device, .. }
            | Object::Event { device, .. }
            | Object::Graph { device, .. }
            | Object::GraphExec { device, .. } => *device,
            Object::NcclComm(comm) => comm.device,
        }
    }
}

pub struct Emulator {
    pub devices: Vec<Device>,
    pub objects: HashMap<u64, Object>,
    pub host_allocations: HashMap<usize, Layout>,
    next_handle: u64,
    /// Submission counter of queued work (the scheduler runs the latest ready work first).
    pub next_submission: u64,
}

/// None until cuInit; Err when cuInit failed (every later cuInit returns the same code).
static EMULATOR: Mutex<Option<Result<Emulator, CUresult>>> = Mutex::new(None);

thread_local! {
    /// The calling thread's current context handle (0: none).
    static CURRENT: Cell<u64> = const { Cell::new(0) };
}

pub fn current_context() -> u64 {
    CURRENT.with(Cell::get)
}

pub fn set_current_context(handle: u64) {
    CURRENT.with(|c| c.set(handle));
}

fn lock_emulator() -> MutexGuard<'static, Option<Result<Emulator, CUresult>>> {
    // A panic inside an entry point is already reported as CUDA_ERROR_UNKNOWN; the state it left
    // is still the best there is.
    EMULATOR.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// cuInit: builds the devices from the environment once.
pub fn initialise() -> CuResult {
    let mut state = lock_emulator();
    let result = state.get_or_insert_with(Emulator::from_env);
    match result {
        Ok(emu) if emu.devices.is_empty() => Err(CUresult::CUDA_ERROR_NO_DEVICE),
        Ok(_) => Ok(()),
        Err(code) => Err(*code),
    }
}

/// Runs `f` on the initialised emulator.
pub fn with_emulator<R>(f: impl FnOnce(&mut Emulator) -> CuResult<R>) -> CuResult<R> {
    match lock_emulator().as_mut() {
        Some(Ok(emu)) => f(emu),
        Some(Err(_)) | None => Err(CUresult::CUDA_ERROR_NOT_INITIALIZED),
    }
}

/// Runs `f` with the calling thread's current context (its device index): INVALID_CONTEXT
/// without one, and the context's sticky fault once a kernel faulted.
pub fn with_context<R>(f: impl FnOnce(&mut Emulator, usize) -> CuResult<R>) -> CuResult<R> {
    with_emulator(|emu| {
        let dev = emu.current_device()?;
        if let Some(code) = emu.devices[dev].ctx.sticky {
            return Err(code);
        }
        f(emu, dev)
    })
}

impl Emulator {
    fn from_env() -> Result<Emulator, CUresult> {
        let invalid = |message: String| {
            notice_once(message);
            CUresult::CUDA_ERROR_INVALID_VALUE
        };
        let configs = config::devices_from_env().map_err(invalid)?;
        let mut emu = Emulator { devices: Vec::new(), objects: HashMap::new(), host_allocations: HashMap::new(), next_handle: 0x1000, next_submission: 0 };
        for config in configs {
            let mut options = SimOptions::from_env().map_err(|e| invalid(e.to_string()))?;
            options.capacity_bytes = config.memory_bytes;
            // Cooperative launches must fit this device's SMs.
            options.multiprocessors = config.sm_count as usize;
            options.residency = config.roofline;
            options.compute_capability = config.compute_capability;
            let ctx = Context { handle: emu.new_handle(), retained: 0, sticky: None, allocations: BTreeMap::new(), predicted_s: 0.0 };
            emu.devices.push(Device { config, sim: SimDriver::new(options), ctx });
        }
        Ok(emu)
    }

    /// A fresh handle value, never 0 and never reused, so a stale handle is always detected.
    pub fn new_handle(&mut self) -> u64 {
        self.next_handle += 0x10;
        self.next_handle
    }

    pub fn insert(&mut self, object: Object) -> u64 {
        let handle = self.new_handle();
        self.objects.insert(handle, object);
        handle
    }

    pub fn device_index(&self, ordinal: i32) -> CuResult<usize> {
        usize::try_from(ordinal).ok().filter(|&d| d < self.devices.len()).ok_or(CUresult::CUDA_ERROR_INVALID_DEVICE)
    }

    /// The device whose retained primary context is current on this thread.
    pub fn current_device(&self) -> CuResult<usize> {
        let current = current_context();
        self.devices
            .iter()
            .position(|d| d.ctx.handle == current && d.ctx.retained > 0)
            .ok_or(CUresult::CUDA_ERROR_INVALID_CONTEXT)
    }

    /// The object `handle` if it exists and belongs to device `dev`: INVALID_HANDLE otherwise.
    pub fn object(&mut self, handle: u64, dev: usize) -> CuResult<&mut Object> {
        match self.objects.get_mut(&handle) {
            Some(o) if o.device() == dev => Ok(o),
            _ => Err(CUresult::CUDA_ERROR_INVALID_HANDLE),
        }
    }

    /// Drops everything of device `dev` when its primary context is released for the last time.
    pub fn reset_device(&mut self, dev: usize) {
        let device = &mut self.devices[dev];
        for &ptr in device.ctx.allocations.keys() {
            ferronet::device::driver::Driver::free(&device.sim, ptr);
        }
        device.ctx.allocations.clear();
        device.ctx.sticky = None;
        device.ctx.predicted_s = 0.0;
        let owned: Vec<u64> = self.objects.iter().filter(|(_, o)| o.device() == dev).map(|(&h, _)| h).collect();
        for handle in owned {
            if let Some(Object::Module { sim_name, .. }) = self.objects.remove(&handle) {
                // Unloading only frees the module's globals; a failure leaves nothing to undo.
                let _ = self.devices[dev].sim.unload_module(&sim_name);
            }
        }
    }
}
