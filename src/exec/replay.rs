//! Training steps replayed from a captured CUDA graph (`--cuda-graph`). After one step queued
//! from the host (it makes the optimiser's state, which the graph must find in place), a step
//! is captured — every kernel, memset and queued copy of its forward, loss, backward and
//! update — and each later step is one graph launch. Buffers the step reads or writes outside
//! the allocator keep their addresses (parameters, optimiser state, metrics, a resident
//! batch); the allocator keeps the captured step's own blocks for the graph.
//!
//! What a launch cannot change is fixed at capture: every by-value kernel argument. So the
//! graph is captured again when the learning rate changes (at most once an epoch), and what
//! changes every step is read from device memory instead: each step's dropout seed, which the
//! host queues into the resident batch before the launch (`Executor::queue_step_seed`), and
//! the optimiser's step numbers, which the step itself advances on the device (`OptimOps::advance_steps`),
//! and fp16's loss scale, which the step itself updates on the device
//! (`Executor::start_dynamic_loss_scale`).

use super::optim::Optimizer;
use super::Executor;
use crate::device::{CapturedGraph, CudaGraphMode};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::Backend;

/// Why `--cuda-graph` cannot hold for this run, if it cannot: it needs a GPU.
pub fn graph_obstacle(can_capture: bool) -> Option<&'static str> {
    (!can_capture).then_some("it needs a GPU device (cuda, sim)")
}

/// The mode a run goes with: `auto` turns into `off` where there is an obstacle, for which
/// `on` is an error.
pub fn resolve_graph_mode(requested: CudaGraphMode, obstacle: Option<&str>) -> Result<CudaGraphMode> {
    match (requested, obstacle) {
        (CudaGraphMode::On, Some(why)) => Err(Error::config(format!("--cuda-graph on: {why}; use --cuda-graph auto or off"))),
        (CudaGraphMode::Auto, Some(_)) => Ok(CudaGraphMode::Off),
        (mode, _) => Ok(mode),
    }
}

/// Runs a loop's training steps queued from the host or replayed from a graph.
pub struct StepReplay {
    mode: CudaGraphMode,
    /// The graph and the learning rate it was captured with.
    graph: Option<(CapturedGraph, f64)>,
    queued_steps: usize,
    launches: usize,
}

impl StepReplay {
    /// `mode` as resolved by [`resolve_graph_mode`].
    pub fn new(mode: CudaGraphMode) -> Self {
        StepReplay { mode, graph: None, queued_steps: 0, launches: 0 }
    }

    /// Whether steps may replay a graph (the mode is not, or has not become, `off`).
    pub fn enabled(&self) -> bool {
        self.mode != CudaGraphMode::Off
    }

    /// Whether the next step with the optimiser at its current rate will be one launch of
    /// an already captured graph.
    pub fn next_is_launch<E: Element, B: Backend<E>>(&self, optimizer: &Optimizer<E, B>) -> bool {
        self.mode != CudaGraphMode::Off && self.graph.as_ref().is_some_and(|(_, lr)| *lr == optimizer.lr())
    }

    /// Steps run as a graph launch so far.
    pub fn launches(&self) -> usize {
        self.launches
    }

    /// Whether the last step replayed a graph.
    pub fn replays(&self) -> bool {
        self.graph.is_some()
    }

    /// One step whose work is `work` (forward, loss, backward, update): queued from the host,
    /// captured then launched, or launched. A capture that fails is the error under `on`;
    /// under `auto` one line on stderr says why and steps are queued from the host from then.
    pub fn step<E: Element, B: Backend<E>>(
        &mut self,
        ex: &mut Executor<E, B>,
        optimizer: &mut Optimizer<E, B>,
        mut work: impl FnMut(&mut Executor<E, B>, &mut Optimizer<E, B>) -> Result<()>,
    ) -> Result<()> {
        if self.mode == CudaGraphMode::Off || self.queued_steps == 0 {
            self.queued_steps += 1;
            return work(ex, optimizer);
        }
        let lr = optimizer.lr();
        if self.graph.as_ref().is_some_and(|(_, captured_lr)| *captured_lr != lr) {
            // Dropping it waits for its queued launches, then frees what it holds.
            self.graph = None;
        }
        // A capture runs the step's host side, which counts the step; a replay must count it.
        let captured_now = self.graph.is_none();
        if captured_now {
            let counts = optimizer.step_counts(ex.backend())?;
            match capture(ex, optimizer, &mut work) {
                Ok(graph) => self.graph = Some((graph, lr)),
                Err(e) => {
                    optimizer.abandon_captured_step(counts);
                    if self.mode == CudaGraphMode::On {
                        return Err(e);
                    }
                    eprintln!("ferronet: running without a CUDA graph: the capture failed: {e}");
                    self.mode = CudaGraphMode::Off;
                    return work(ex, optimizer);
                }
            }
        }
        if !captured_now {
            optimizer.count_replayed_step();
        }
        let (graph, _) = self.graph.as_ref().expect("captured above");
        graph.launch()?;
        self.launches += 1;
        Ok(())
    }
}

/// Records `work` as a graph; nothing runs. The capture is ended whatever happened, so the
/// device is usable again.
fn capture<E: Element, B: Backend<E>>(
    ex: &mut Executor<E, B>,
    optimizer: &mut Optimizer<E, B>,
    work: &mut impl FnMut(&mut Executor<E, B>, &mut Optimizer<E, B>) -> Result<()>,
) -> Result<CapturedGraph> {
    ex.backend().begin_capture()?;
    let recorded = work(ex, optimizer);
    let graph = ex.backend().end_capture();
    recorded.and(graph)
}
