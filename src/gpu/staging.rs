//! Host-to-device uploads through pinned staging blocks, after PyTorch's caching host allocator:
//! a copy from pinned memory is queued without synchronising the stream (a copy from pageable
//! memory synchronises it first), so uploading a batch never makes the host wait for the GPU.
//!
//! A block is reused only once the event recorded after its last copy is done, so the host never
//! overwrites bytes a queued copy has yet to read. Blocks come in power-of-two sizes and stay
//! cached; past [`PINNED_CACHE_BYTES`] the stream is synchronised and the cache rebuilt, which
//! bounds page-locked memory (it is taken from the whole machine).
//!
//! An upload recorded in a CUDA graph reads its block each time the graph runs, so during a
//! capture every compute-stream upload gets a block of its own that stays with the graph,
//! unchanged, until the graph is dropped (a capture does not record the copy stream).

use super::accounting::{Accounting, DriverCall};
use crate::device::driver::{DevPtr, Driver, EventId, PinnedId, Stream};
use crate::error::{Error, Result};
use std::sync::{Arc, Mutex};

/// The most pinned host memory the staging cache holds.
pub const PINNED_CACHE_BYTES: usize = 256 << 20;
/// The smallest block: small uploads (labels, optimiser tables) share one size class.
pub const MIN_BLOCK_BYTES: usize = 4096;

struct Block {
    pinned: PinnedId,
    capacity: usize,
    /// Recorded after the block's latest copy; `None` before its first.
    last_copy: Option<EventId>,
}

pub struct PinnedStaging {
    driver: Arc<dyn Driver>,
    accounting: Arc<Accounting>,
    blocks: Mutex<Vec<Block>>,
    /// While a graph is captured: the blocks its uploads read.
    captured: Mutex<Option<Vec<Block>>>,
}

/// The pinned blocks a captured graph's uploads read; see [`PinnedStaging::release_captured`].
pub struct CapturedUploads(Vec<Block>);

impl PinnedStaging {
    pub fn new(driver: Arc<dyn Driver>, accounting: Arc<Accounting>) -> Self {
        PinnedStaging { driver, accounting, blocks: Mutex::new(Vec::new()), captured: Mutex::new(None) }
    }

    pub fn begin_capture(&self) -> Result<()> {
        *self.captured.lock().map_err(|_| Error::device("pinned staging cache poisoned"))? = Some(Vec::new());
        Ok(())
    }

    /// The blocks the capture's uploads read, for the graph to keep.
    pub fn end_capture(&self) -> CapturedUploads {
        CapturedUploads(self.captured.lock().ok().and_then(|mut c| c.take()).unwrap_or_default())
    }

    /// Frees a dropped graph's blocks; the caller has synchronised the stream.
    pub fn release_captured(&self, uploads: CapturedUploads) {
        let mut blocks = uploads.0;
        self.release(&mut blocks);
    }

    /// Queues a copy of `host` to `dst` on `stream`; returns without waiting for it.
    pub fn upload(&self, stream: Stream, dst: DevPtr, host: &[u8]) -> Result<()> {
        if host.is_empty() {
            return Ok(());
        }
        {
            let mut captured = self.captured.lock().map_err(|_| Error::device("pinned staging cache poisoned"))?;
            if let (Some(graph_blocks), Stream::Compute) = (captured.as_mut(), stream) {
                let capacity = host.len().next_power_of_two().max(MIN_BLOCK_BYTES);
                self.accounting.record(DriverCall::HostAlloc { bytes: capacity });
                let pinned = self.driver.alloc_pinned(capacity)?;
                graph_blocks.push(Block { pinned, capacity, last_copy: None });
                self.driver.write_pinned(pinned, host)?;
                self.accounting.record(DriverCall::CopyH2DAsync { bytes: host.len() });
                return self.driver.copy_htod_async(stream, dst, pinned, host.len());
            }
        }
        let mut blocks = self.blocks.lock().map_err(|_| Error::device("pinned staging cache poisoned"))?;
        let index = self.free_block(&mut blocks, host.len())?;
        let block = &mut blocks[index];
        self.driver.write_pinned(block.pinned, host)?;
        self.accounting.record(DriverCall::CopyH2DAsync { bytes: host.len() });
        self.driver.copy_htod_async(stream, dst, block.pinned, host.len())?;
        match block.last_copy {
            Some(event) => self.driver.rerecord_event(stream, event)?,
            None => block.last_copy = Some(self.driver.record_event(stream)?),
        }
        Ok(())
    }

    /// Pinned bytes held.
    pub fn cached_bytes(&self) -> usize {
        self.blocks.lock().map(|b| b.iter().map(|b| b.capacity).sum()).unwrap_or(0)
    }

    /// The index of a block of at least `bytes` that no queued copy reads: the smallest such
    /// cached one, else a new one.
    fn free_block(&self, blocks: &mut Vec<Block>, bytes: usize) -> Result<usize> {
        let mut best: Option<usize> = None;
        for (i, block) in blocks.iter().enumerate() {
            let fits = block.capacity >= bytes && best.is_none_or(|b| block.capacity < blocks[b].capacity);
            if fits && self.copies_done(block)? {
                best = Some(i);
            }
        }
        if let Some(i) = best {
            return Ok(i);
        }
        let capacity = bytes.next_power_of_two().max(MIN_BLOCK_BYTES);
        let held: usize = blocks.iter().map(|b| b.capacity).sum();
        if held + capacity > PINNED_CACHE_BYTES {
            // Every block is busy or too small: wait for the queued copies, then start over.
            self.accounting.record(DriverCall::Synchronize);
            self.driver.synchronize()?;
            self.release(blocks);
        }
        self.accounting.record(DriverCall::HostAlloc { bytes: capacity });
        let pinned = self.driver.alloc_pinned(capacity)?;
        blocks.push(Block { pinned, capacity, last_copy: None });
        Ok(blocks.len() - 1)
    }

    fn copies_done(&self, block: &Block) -> Result<bool> {
        match block.last_copy {
            Some(event) => self.driver.event_done(event),
            None => Ok(true),
        }
    }

    /// Frees every block; the caller has synchronised the stream.
    fn release(&self, blocks: &mut Vec<Block>) {
        for block in blocks.drain(..) {
            self.accounting.record(DriverCall::HostFree { bytes: block.capacity });
            self.driver.free_pinned(block.pinned);
        }
    }
}

impl Drop for PinnedStaging {
    fn drop(&mut self) {
        let blocks = self.blocks.get_mut().map(std::mem::take).unwrap_or_default();
        if blocks.is_empty() {
            return;
        }
        // A queued copy may still read a block; a failed wait leaves the blocks to the driver's
        // own teardown rather than freeing memory a copy reads.
        if self.driver.synchronize().is_ok() {
            let mut blocks = blocks;
            self.release(&mut blocks);
        }
    }
}
