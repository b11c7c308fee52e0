//! CUDA graphs on the GPU backend: a capture records the queued work of a step (driver graph),
//! gives its buffers a private pool in the caching allocator and its uploads pinned blocks of
//! their own; the captured graph replays all of it with one driver call.

use super::accounting::{Accounting, DriverCall};
use super::allocator::{CachingAllocator, GraphPoolId};
use super::staging::{CapturedUploads, PinnedStaging};
use crate::device::driver::{Driver, GraphId};
use crate::device::GraphReplay;
use crate::error::Result;
use std::sync::{Arc, Mutex};

pub struct GpuGraph {
    driver: Arc<dyn Driver>,
    allocator: Arc<CachingAllocator>,
    staging: Arc<PinnedStaging>,
    accounting: Arc<Accounting>,
    graph: GraphId,
    pool: GraphPoolId,
    /// The recorded work, for the accounting of each launch.
    nodes: Vec<DriverCall>,
    uploads: Mutex<Option<CapturedUploads>>,
}

impl GpuGraph {
    /// Starts a capture on every part of the backend; returns the allocator's pool for it.
    pub fn begin(driver: &Arc<dyn Driver>, allocator: &CachingAllocator, staging: &PinnedStaging, accounting: &Accounting) -> Result<GraphPoolId> {
        let pool = allocator.begin_capture()?;
        let started = staging.begin_capture().and_then(|()| driver.begin_capture());
        if let Err(e) = started {
            allocator.release_graph_pool(pool);
            drop(staging.end_capture());
            return Err(e);
        }
        accounting.begin_capture();
        Ok(pool)
    }

    /// Ends the capture begun with `pool`: the graph, or the driver's error (the capture is then
    /// abandoned and its pool and blocks released).
    pub fn end(
        driver: Arc<dyn Driver>,
        allocator: Arc<CachingAllocator>,
        staging: Arc<PinnedStaging>,
        accounting: Arc<Accounting>,
        pool: GraphPoolId,
    ) -> Result<GpuGraph> {
        let graph = driver.end_capture();
        let nodes = accounting.end_capture();
        let uploads = staging.end_capture();
        allocator.end_capture()?;
        match graph {
            Ok(graph) => Ok(GpuGraph { driver, allocator, staging, accounting, graph, pool, nodes, uploads: Mutex::new(Some(uploads)) }),
            Err(e) => {
                allocator.release_graph_pool(pool);
                staging.release_captured(uploads);
                Err(e)
            }
        }
    }
}

impl GraphReplay for GpuGraph {
    fn launch(&self) -> Result<()> {
        self.accounting.record_graph_launch(&self.nodes);
        self.driver.launch_graph(self.graph)
    }
}

impl Drop for GpuGraph {
    fn drop(&mut self) {
        // A queued launch may still run the graph and read its pinned blocks.
        self.accounting.record(DriverCall::Synchronize);
        let idle = self.driver.synchronize().is_ok();
        self.driver.destroy_graph(self.graph);
        self.allocator.release_graph_pool(self.pool);
        if let (true, Some(uploads)) = (idle, self.uploads.get_mut().ok().and_then(Option::take)) {
            self.staging.release_captured(uploads);
        }
    }
}
