//! Stream capture and graphs on the simulator: while capturing, the stream's work is recorded
//! instead of run; launching a graph runs the recorded work again, in order. Blocks the caching
//! allocator reissues during capture are recorded too, so on replay each buffer is bounds- and
//! initialisation-checked at its own size, as it was when captured.

use crate::device::driver::{DevPtr, GraphId, KernelArg, LaunchConfig, PinnedId};
use crate::error::{Error, Result};
use std::collections::HashMap;

/// One unit of recorded stream work.
#[derive(Clone, Debug)]
pub enum StreamOp {
    Launch { module: String, kernel: String, cfg: LaunchConfig, args: Vec<KernelArg> },
    Memset { dst: DevPtr, value: u8, bytes: usize },
    CopyDtoD { dst: DevPtr, src: DevPtr, bytes: usize },
    CopyHtoDAsync { dst: DevPtr, src: PinnedId, bytes: usize },
    Reissue { ptr: DevPtr, bytes: usize },
}

#[derive(Default)]
pub struct Graphs {
    /// The work recorded since `begin_capture`, while capturing.
    recording: Option<Vec<StreamOp>>,
    graphs: HashMap<u64, Vec<StreamOp>>,
    next: u64,
}

impl Graphs {
    pub fn begin(&mut self) -> Result<()> {
        if self.recording.is_some() {
            return Err(Error::device("a graph capture is already under way"));
        }
        self.recording = Some(Vec::new());
        Ok(())
    }

    pub fn end(&mut self) -> Result<GraphId> {
        let ops = self.recording.take().ok_or_else(|| Error::device("no graph capture to end"))?;
        self.next += 1;
        self.graphs.insert(self.next, ops);
        Ok(GraphId(self.next))
    }

    /// Records `op` when capturing (returns true); otherwise leaves it to run now.
    pub fn record(&mut self, op: impl FnOnce() -> StreamOp) -> bool {
        match &mut self.recording {
            Some(ops) => {
                ops.push(op());
                true
            }
            None => false,
        }
    }

    /// An error naming `what` when capturing: it would make the host wait for the stream.
    pub fn refuse_during_capture(&self, what: &str) -> Result<()> {
        match self.recording {
            Some(_) => Err(Error::device(format!("{what} is not allowed while a graph is being captured"))),
            None => Ok(()),
        }
    }

    pub fn ops(&self, graph: GraphId) -> Result<Vec<StreamOp>> {
        self.graphs.get(&graph.0).cloned().ok_or_else(|| Error::device(format!("unknown or destroyed graph {}", graph.0)))
    }

    pub fn destroy(&mut self, graph: GraphId) {
        self.graphs.remove(&graph.0);
    }
}
