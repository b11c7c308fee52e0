//! Gradient buckets summed over the ranks by NCCL in device memory (`--dist-backend nccl`, the
//! default between CUDA devices). A full bucket's sums are queued on the device's copy stream
//! (idle in a data-parallel run, whose batches are not resident) after an event the compute
//! stream records once backward has queued those gradients, so they run while backward goes on;
//! after backward the compute stream waits for the copy stream's last sum. Nothing waits on the
//! host. Needs a CUDA driver: the simulator has no CUDA streams for NCCL.

use super::backend::{GpuBackend, GpuBuf};
use crate::device::driver::{EventId, Stream};
use crate::device::Buffer;
use crate::dist::nccl::NcclComm;
use crate::dist::{BucketCounts, DeviceBuckets, GradientHook};
use crate::error::{Error, Result};

/// The two events the buckets order the streams with, recorded again for every use.
#[derive(Clone, Copy)]
pub struct NcclEvents {
    /// On the compute stream: the gradients of the bucket are queued.
    gradients_ready: EventId,
    /// On the copy stream: the sums queued so far.
    sums_done: EventId,
}

/// One step's NCCL buckets.
pub struct NcclBuckets<'a> {
    backend: &'a GpuBackend,
    comm: &'a NcclComm,
    /// The copy stream's CUstream.
    stream: u64,
    events: NcclEvents,
    capacity: usize,
    /// Device address and length of each gradient of the bucket filling.
    filling: Vec<(u64, usize)>,
    filled_values: usize,
    counts: BucketCounts,
}

impl<'a> NcclBuckets<'a> {
    pub fn new(backend: &'a GpuBackend, comm: &'a NcclComm, capacity: usize) -> Result<NcclBuckets<'a>> {
        let driver = backend.driver();
        let stream = driver.cuda_stream(Stream::Copy).ok_or_else(|| {
            Error::config(format!("{} has no CUDA streams for NCCL; give --dist-backend mpi", driver.name()))
        })?;
        let mut events = backend.nccl_events.lock().expect("the NCCL events' lock is never poisoned");
        let events = match *events {
            Some(made) => made,
            None => *events.insert(NcclEvents {
                gradients_ready: driver.record_event(Stream::Compute)?,
                sums_done: driver.record_event(Stream::Copy)?,
            }),
        };
        Ok(NcclBuckets {
            backend,
            comm,
            stream,
            events,
            capacity: capacity.max(1),
            filling: Vec::new(),
            filled_values: 0,
            counts: BucketCounts::default(),
        })
    }

    /// Queues the bucket's sums on the copy stream, after the compute stream's work so far.
    fn start_filling(&mut self) -> Result<()> {
        let driver = self.backend.driver();
        driver.rerecord_event(Stream::Compute, self.events.gradients_ready)?;
        driver.wait_event(Stream::Copy, self.events.gradients_ready)?;
        // SAFETY: every address is a gradient buffer of this GPU that the gradient store keeps
        // until after the optimiser's update, which the compute stream queues only after it has
        // waited for these sums (`finish`); the stream is the driver's own copy stream.
        unsafe { self.comm.queue_sums_f32(&self.filling, self.stream as _)? };
        self.filling.clear();
        self.filled_values = 0;
        self.counts.buckets += 1;
        Ok(())
    }
}

impl GradientHook<GpuBuf<f32>> for NcclBuckets<'_> {
    fn gradient_final(&mut self, _param: usize, grad: &GpuBuf<f32>) -> Result<()> {
        self.filling.push((grad.ptr(), grad.len()));
        self.filled_values += grad.len();
        self.counts.gradients += 1;
        if self.filled_values >= self.capacity {
            self.start_filling()?;
        }
        Ok(())
    }

    /// NCCL moves its sums on by itself, on its stream.
    fn between_nodes(&mut self) {}
}

impl DeviceBuckets<GpuBuf<f32>> for NcclBuckets<'_> {
    fn finish(mut self: Box<Self>) -> Result<BucketCounts> {
        self.counts.started_during_backward = self.counts.buckets;
        if !self.filling.is_empty() {
            self.start_filling()?;
        }
        let driver = self.backend.driver();
        driver.rerecord_event(Stream::Copy, self.events.sums_done)?;
        driver.wait_event(Stream::Compute, self.events.sums_done)?;
        Ok(self.counts)
    }
}
