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
    /// One host call that queues a captured graph of `nodes` units of work; in a trace, the
    /// graph's recorded calls (launches, memsets, copies) follow it.
    GraphLaunch { nodes: usize },
}

#[derive(Default)]
pub struct Accounting {
    counters: Mutex<DeviceCounters>,
    trace: Mutex<Option<Vec<DriverCall>>>,
    captured: Mutex<Option<Vec<DriverCall>>>,
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
                DriverCall::GraphLaunch { .. } => c.graph_launches += 1,
            }
        }
        if let Ok(mut trace) = self.trace.lock() {
            if let Some(calls) = trace.as_mut() {
                calls.push(call);
            }
        }
        let queued = matches!(call, DriverCall::Launch | DriverCall::Memset { .. } | DriverCall::CopyD2D { .. } | DriverCall::CopyH2DAsync { .. });
        if queued {
            if let Ok(mut captured) = self.captured.lock() {
                if let Some(calls) = captured.as_mut() {
                    calls.push(call);
                }
            }
        }
    }

    /// A graph launch: counted as one call; a trace also gets `nodes`, the calls it replays.
    pub fn record_graph_launch(&self, nodes: &[DriverCall]) {
        self.record(DriverCall::GraphLaunch { nodes: nodes.len() });
        if let Ok(mut trace) = self.trace.lock() {
            if let Some(calls) = trace.as_mut() {
                calls.extend_from_slice(nodes);
            }
        }
    }

    /// Starts keeping the queued work (launches, memsets, device copies, queued uploads) made
    /// while a graph is captured: the graph's nodes.
    pub fn begin_capture(&self) {
        if let Ok(mut captured) = self.captured.lock() {
            *captured = Some(Vec::new());
        }
    }

    /// The calls since `begin_capture`.
    pub fn end_capture(&self) -> Vec<DriverCall> {
        self.captured.lock().ok().and_then(|mut c| c.take()).unwrap_or_default()
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
