//! The caching device allocator: buffers come from size-binned free lists of blocks this device
//! already holds, and a dropped buffer's block goes back to its list instead of to `cuMemFree`
//! (which synchronises the whole device). In a training loop every step asks for the same sizes
//! in the same order, so after the first step no request reaches the driver.
//!
//! Blocks are binned by their rounded size, as PyTorch's allocator rounds: requests up to
//! [`SMALL_LIMIT`] to a multiple of [`SMALL_GRANULE`], larger ones to a multiple of
//! [`LARGE_GRANULE`]; a block serves only requests of its own rounded size (no splitting), so a
//! step's requests map to the same blocks every step.
//!
//! Reuse without a wait is sound because all work is queued on one stream (the legacy stream)
//! in order: a kernel still reading a block's old buffer was queued before anything its new
//! owner queues, so it runs first. When streams land, a block must remember the stream it was
//! used on and be reused only on that stream, or after an event recorded there has completed
//! (PyTorch's `record_stream`).
//!
//! While a CUDA graph is captured, blocks come from and go back to that graph's own pool (as
//! PyTorch's graph-private pools): a replay writes the very blocks the capture used, so none of
//! them may be handed to work outside the graph while it lives. A block the capture takes from
//! the general cache, or that is released during the capture, joins the graph's pool; dropping
//! the graph returns its pool's free blocks to the general cache.
//!
//! With `FERRONET_NO_MEMORY_CACHING=1` (as PyTorch's `PYTORCH_NO_CUDA_MEMORY_CACHING`) every
//! buffer is its own `cuMemAlloc` of exactly its size and its drop a `cuMemFree`, as before this
//! allocator: for memory debugging and for measuring what the cache saves.

use super::accounting::{Accounting, DriverCall};
use crate::device::driver::{DevPtr, Driver};
use crate::device::MemoryTracker;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

/// Requests up to this many bytes are small.
pub const SMALL_LIMIT: usize = 1 << 20;
/// Small requests are rounded up to a multiple of this (PyTorch's minimum block size).
pub const SMALL_GRANULE: usize = 512;
/// Larger requests are rounded up to a multiple of this, at most 1/8 more than asked.
pub const LARGE_GRANULE: usize = 128 << 10;
/// Set to 1 to turn caching off (any other value, or none, leaves it on).
pub const NO_CACHING_ENV: &str = "FERRONET_NO_MEMORY_CACHING";

/// The size of the block that serves a request of `bytes` bytes.
pub fn block_size(bytes: usize) -> usize {
    let granule = if bytes <= SMALL_LIMIT { SMALL_GRANULE } else { LARGE_GRANULE };
    bytes.div_ceil(granule) * granule
}

#[derive(Default)]
struct Pool {
    /// Free blocks by block size.
    free: HashMap<usize, Vec<DevPtr>>,
    /// Bytes in free blocks, and in all blocks obtained from the driver (free or in use).
    cached: usize,
    reserved: usize,
    peak_reserved: usize,
    /// The graph pool being captured into.
    capturing: Option<GraphPoolId>,
    /// Free blocks of each graph pool, by block size.
    graph_free: HashMap<GraphPoolId, HashMap<usize, Vec<DevPtr>>>,
    /// The graph pool of each block that belongs to one.
    owner: HashMap<DevPtr, GraphPoolId>,
    next_graph_pool: u64,
}

/// The blocks reserved for one captured graph.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GraphPoolId(u64);

pub struct CachingAllocator {
    driver: Arc<dyn Driver>,
    accounting: Arc<Accounting>,
    /// Bytes of live buffers (as requested, before rounding).
    tracker: Arc<MemoryTracker>,
    pool: Mutex<Pool>,
    caching: bool,
}

impl CachingAllocator {
    /// Caching unless `FERRONET_NO_MEMORY_CACHING=1`.
    pub fn new(driver: Arc<dyn Driver>, accounting: Arc<Accounting>) -> Self {
        let caching = std::env::var(NO_CACHING_ENV).map_or(true, |v| v.trim() != "1");
        CachingAllocator { driver, accounting, tracker: MemoryTracker::new(), pool: Mutex::new(Pool::default()), caching }
    }

    fn pool(&self) -> Result<MutexGuard<'_, Pool>> {
        self.pool.lock().map_err(|_| Error::device("device allocator poisoned by an earlier panic"))
    }

    pub fn tracker(&self) -> &MemoryTracker {
        &self.tracker
    }

    /// A block for a buffer of `bytes` bytes (0 for an empty buffer): a cached one of its size,
    /// else a new one from the driver. When the driver is out of memory, the cache is emptied
    /// and the allocation tried once more; its error is the driver's.
    pub fn acquire(&self, bytes: usize) -> Result<DevPtr> {
        if bytes == 0 {
            return Ok(0);
        }
        let size = if self.caching { block_size(bytes) } else { bytes };
        let (cached, capturing) = {
            let mut pool = self.pool()?;
            let capturing = pool.capturing;
            let own = capturing.and_then(|g| pool.graph_free.get_mut(&g)).and_then(|free| free.get_mut(&size)).and_then(Vec::pop);
            let ptr = match own {
                Some(ptr) => Some(ptr),
                None => {
                    let ptr = pool.free.get_mut(&size).and_then(Vec::pop);
                    if ptr.is_some() {
                        pool.cached -= size;
                    }
                    ptr
                }
            };
            (ptr, capturing)
        };
        let ptr = match cached {
            Some(ptr) => ptr,
            None => self.alloc_block(size)?,
        };
        if let Some(graph) = capturing {
            self.pool()?.owner.insert(ptr, graph);
        }
        self.driver.reissue(ptr, bytes)?;
        self.tracker.add(bytes);
        Ok(ptr)
    }

    fn alloc_block(&self, size: usize) -> Result<DevPtr> {
        self.accounting.record(DriverCall::Alloc { bytes: size });
        let ptr = match self.driver.alloc(size) {
            Err(Error::OutOfMemory { .. }) if self.cached_bytes() > 0 => {
                self.empty_cache()?;
                self.accounting.record(DriverCall::Alloc { bytes: size });
                self.driver.alloc(size)?
            }
            other => other?,
        };
        let mut pool = self.pool()?;
        pool.reserved += size;
        pool.peak_reserved = pool.peak_reserved.max(pool.reserved);
        Ok(ptr)
    }

    /// Takes back the block of a dropped buffer of `bytes` bytes for reuse.
    pub fn release(&self, ptr: DevPtr, bytes: usize) {
        self.tracker.sub(bytes);
        if ptr == 0 {
            return;
        }
        if !self.caching {
            self.accounting.record(DriverCall::Free { bytes });
            self.driver.free(ptr);
            if let Ok(mut pool) = self.pool.lock() {
                pool.reserved -= bytes;
            }
            return;
        }
        let size = block_size(bytes);
        // A poisoned pool cannot take the block back; it stays reserved until the device closes.
        if let Ok(mut pool) = self.pool.lock() {
            let graph = match (pool.owner.get(&ptr).copied(), pool.capturing) {
                (Some(graph), _) => Some(graph),
                // The capture may have used it: it is the graph's from now on.
                (None, Some(graph)) => {
                    pool.owner.insert(ptr, graph);
                    Some(graph)
                }
                (None, None) => None,
            };
            match graph {
                Some(graph) => pool.graph_free.entry(graph).or_default().entry(size).or_default().push(ptr),
                None => {
                    pool.free.entry(size).or_default().push(ptr);
                    pool.cached += size;
                }
            }
        }
    }

    /// Returns every cached block to the driver, after waiting for queued work that may still
    /// use them.
    pub fn empty_cache(&self) -> Result<()> {
        let blocks: Vec<(usize, Vec<DevPtr>)> = {
            let mut pool = self.pool()?;
            let blocks: Vec<_> = pool.free.drain().collect();
            let freed: usize = blocks.iter().map(|(size, ptrs)| size * ptrs.len()).sum();
            pool.cached -= freed;
            pool.reserved -= freed;
            blocks
        };
        if blocks.is_empty() {
            return Ok(());
        }
        self.accounting.record(DriverCall::Synchronize);
        self.driver.synchronize()?;
        for (size, ptrs) in blocks {
            for ptr in ptrs {
                self.accounting.record(DriverCall::Free { bytes: size });
                self.driver.free(ptr);
            }
        }
        Ok(())
    }

    /// Starts a graph capture: blocks come from and return to a new graph pool until
    /// `end_capture`. Refused without caching (a capture must not free) or during a capture.
    pub fn begin_capture(&self) -> Result<GraphPoolId> {
        if !self.caching {
            return Err(Error::config(format!("CUDA graphs need the caching allocator; unset {NO_CACHING_ENV}")));
        }
        let mut pool = self.pool()?;
        if pool.capturing.is_some() {
            return Err(Error::device("a graph capture is already under way"));
        }
        pool.next_graph_pool += 1;
        let graph = GraphPoolId(pool.next_graph_pool);
        pool.capturing = Some(graph);
        pool.graph_free.insert(graph, HashMap::new());
        Ok(graph)
    }

    /// Ends the capture; its pool stays reserved for the graph.
    pub fn end_capture(&self) -> Result<()> {
        self.pool()?.capturing = None;
        Ok(())
    }

    /// The graph of `graph` is gone: its free blocks go back to the general cache and its
    /// blocks still in use will when released. Work queued before keeps running first, so
    /// nothing waits.
    pub fn release_graph_pool(&self, graph: GraphPoolId) {
        if let Ok(mut pool) = self.pool.lock() {
            if pool.capturing == Some(graph) {
                pool.capturing = None;
            }
            pool.owner.retain(|_, owner| *owner != graph);
            for (size, ptrs) in pool.graph_free.remove(&graph).unwrap_or_default() {
                pool.cached += size * ptrs.len();
                pool.free.entry(size).or_default().extend(ptrs);
            }
        }
    }

    /// Bytes in cached (free) blocks, outside graph pools.
    pub fn cached_bytes(&self) -> usize {
        self.pool.lock().map(|p| p.cached).unwrap_or(0)
    }

    /// Bytes held from the driver now (live buffers' blocks and cached ones).
    pub fn reserved_bytes(&self) -> usize {
        self.pool.lock().map(|p| p.reserved).unwrap_or(0)
    }

    /// The most bytes held from the driver at once.
    pub fn peak_reserved_bytes(&self) -> usize {
        self.pool.lock().map(|p| p.peak_reserved).unwrap_or(0)
    }
}

impl Drop for CachingAllocator {
    fn drop(&mut self) {
        // Every buffer holds the allocator, so all blocks are free here.
        if let Ok(pool) = self.pool.get_mut() {
            let graph_pools = pool.graph_free.values().flat_map(|free| free.iter());
            for (&size, ptrs) in pool.free.iter().chain(graph_pools) {
                for &ptr in ptrs {
                    self.accounting.record(DriverCall::Free { bytes: size });
                    self.driver.free(ptr);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_requests_round_to_512_bytes_and_large_ones_coarser() {
        assert_eq!(block_size(1), 512);
        assert_eq!(block_size(512), 512);
        assert_eq!(block_size(513), 1024);
        assert_eq!(block_size(SMALL_LIMIT), SMALL_LIMIT);
        assert_eq!(block_size(SMALL_LIMIT + 1), SMALL_LIMIT + LARGE_GRANULE);
        assert!(block_size(SMALL_LIMIT + 1) - (SMALL_LIMIT + 1) < (SMALL_LIMIT + 1) / 8);
    }
}
