//! What the GPU backend sends to its driver: running totals ([`DeviceCounters`]) and, while a
//! trace is on, the calls in order ([`DriverCall`]), which the step-time prediction
//! (`bench::predict`) replays on a model of the host and the GPU.

use crate::device::DeviceCounters;
use std::sync::Mutex;

/// One call that reached the driver, with the bytes it moves or reserves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverCall {
    Launch,
    Memset { bytes: usize },
    CopyD2D { bytes: usize },
    /// Host-to-device from pinned memory, queued in stream order: the host does not wait.
    CopyH2DAsync { bytes: usize },
    /// Device-to-host: returns when the data is on the host.
    CopyD2H { bytes: usize },
    Synchronize,
    Alloc { bytes: usize },
    /// cuMemFree, which waits for the whole device.
    Free { bytes: usize },
    /// cuMemHostAlloc: page-locked host memory for staging uploads.
    HostAlloc { bytes: usize },
    /// cuMemFreeHost.
    HostFree { bytes: usize },
}

#[derive(Default)]
pub struct Accounting {
    counters: Mutex<DeviceCounters>,
    trace: Mutex<Option<Vec<DriverCall>>>,
}

impl Accounting {
    pub fn record(&self, call: DriverCall) {
        // Accounting never fails a computation: a poisoned lock only loses counts.
        if let Ok(mut c) = self.counters.lock() {
            match call {
                DriverCall::Launch => c.kernel_launches += 1,
                DriverCall::Memset { .. } => c.memsets += 1,
                DriverCall::CopyD2D { .. } => c.d2d_copies += 1,
                DriverCall::CopyH2DAsync { bytes } => {
                    c.h2d_copies += 1;
                    c.h2d_bytes += bytes as u64;
                }
                DriverCall::CopyD2H { bytes } => {
                    c.d2h_copies += 1;
                    c.d2h_bytes += bytes as u64;
                    c.host_syncs += 1;
                }
                DriverCall::Synchronize => {
                    c.synchronizes += 1;
                    c.host_syncs += 1;
                }
                DriverCall::Alloc { .. } | DriverCall::HostAlloc { .. } => c.allocations += 1,
                DriverCall::Free { .. } | DriverCall::HostFree { .. } => c.frees += 1,
            }
        }
        if let Ok(mut trace) = self.trace.lock() {
            if let Some(calls) = trace.as_mut() {
                calls.push(call);
            }
        }
    }

    pub fn counters(&self) -> DeviceCounters {
        self.counters.lock().map(|c| *c).unwrap_or_default()
    }

    /// Starts keeping the calls in order (dropping any kept so far).
    pub fn start_trace(&self) {
        if let Ok(mut trace) = self.trace.lock() {
            *trace = Some(Vec::new());
        }
    }

    /// The calls since `start_trace`, and stops keeping them.
    pub fn take_trace(&self) -> Vec<DriverCall> {
        self.trace.lock().ok().and_then(|mut t| t.take()).unwrap_or_default()
    }
}
