//! The forward pass: every live node in topological order, each activation freed after its last
//! use unless the tape keeps it.

use super::buffer_cache::BufferCache;
use super::params::ParamStore;
use super::plan::{Mode, Plan, KEPT_TO_END};
use super::precision::StorageRounding;
use super::tape::{Record, Tape, Value};
use super::Words;
use crate::dist::ProcessGroup;
use crate::element::Element;
use crate::error::Result;
use crate::graph::{Graph, NodeId};
use crate::ops::node::{channel_rows, chw, ForwardCtx, Saved};
use crate::ops::{Backend, NodeOp};
use std::collections::HashMap;
use std::sync::Arc;

pub struct Forward<'a, E: Element, B: Backend<E>> {
    pub backend: &'a B,
    pub graph: &'a Graph,
    pub plan: &'a Plan,
    pub params: &'a mut ParamStore<E, B>,
    pub scratch: &'a mut BufferCache<E, B>,
    pub n: usize,
    /// Train mode only: whether BN running statistics take this batch's statistics.
    pub update_running_stats: bool,
    /// Train mode only: the step's dropout seed on the device; each node mixes in its id.
    pub step_seed: Option<&'a Words<E, B>>,
    /// Train mode with `--sync-bn`: the ranks batch norm's statistics span.
    pub batch_norm_group: Option<&'a ProcessGroup>,
    /// What the run's precision rounds (`exec::precision`); its weight copies are fresh.
    pub rounding: &'a StorageRounding<E, B>,
}

/// What a forward pass leaves behind: the values of the plan's outputs and the tape.
pub struct ForwardResult<E: Element, B: Backend<E>> {
    pub outputs: HashMap<NodeId, Value<E, B>>,
    pub tape: Tape<E, B>,
}

impl<E: Element, B: Backend<E>> Forward<'_, E, B> {
    pub fn run(mut self, input: Value<E, B>) -> Result<ForwardResult<E, B>> {
        let count = self.graph.nodes.len();
        let mut values: Vec<Option<Value<E, B>>> = vec![None; count];
        let mut tape: Tape<E, B> = (0..count).map(|_| None).collect();
        // Slices split by their group's leader, waiting for their own turn.
        let mut split_pieces: HashMap<NodeId, Value<E, B>> = HashMap::new();
        values[0] = Some(self.rounding.store_input(self.backend, input)?);

        for i in 1..count {
            if !self.plan.live[i] {
                continue;
            }
            let node = &self.graph.nodes[i];
            // A computing node's inputs as it read them (rounded GEMM operands at tf32): what
            // its backward must see.
            let mut operands: Option<Vec<Value<E, B>>> = None;
            let (value, saved) = if let Some(piece) = split_pieces.remove(&i) {
                (piece, Saved::None)
            } else {
                let xs: Vec<Value<E, B>> = node
                    .inputs
                    .iter()
                    .map(|&j| values[j].clone().expect("the plan keeps inputs alive until their last use"))
                    .collect();
                if self.plan.aliases_input(&node.op, xs.len()) {
                    (xs[0].clone(), Saved::None)
                } else if node.op.channel_range().is_some() {
                    let x = self.rounding.widened(self.backend, xs[0].clone())?;
                    (self.split_group(i, &x, &mut split_pieces)?, Saved::None)
                } else {
                    let xs = operands.insert(self.rounding.operands(self.backend, &node.op, self.graph.layout, xs)?);
                    let (y, saved) = self.node(i, xs)?;
                    (Arc::new(self.rounding.store_output(self.backend, y)?), saved)
                }
            };
            if self.plan.records(i) {
                let inputs = node
                    .inputs
                    .iter()
                    .zip(&self.plan.saved_inputs[i])
                    .enumerate()
                    .map(|(k, (&j, &keep))| match (keep, &operands) {
                        (false, _) => None,
                        (true, Some(xs)) => Some(xs[k].clone()),
                        (true, None) => values[j].clone(),
                    })
                    .collect();
                tape[i] = Some(Record { inputs, saved });
            }
            values[i] = Some(value);
            for &j in &node.inputs {
                if self.plan.last_use[j] == i {
                    values[j] = None;
                }
            }
        }
        // The outputs in f32 for the loss and the metrics (logits: a few values per sample).
        let outputs = self
            .plan
            .outputs
            .iter()
            .map(|&o| {
                debug_assert_eq!(self.plan.last_use[o], KEPT_TO_END);
                let value = values[o].clone().expect("outputs are kept to the end");
                Ok((o, self.rounding.widened(self.backend, value)?))
            })
            .collect::<Result<_>>()?;
        Ok(ForwardResult { outputs, tape })
    }

    /// Splits the input of slice `leader` once for its whole group; the other members' pieces
    /// wait in `pieces` until they run.
    fn split_group(
        &mut self,
        leader: NodeId,
        x: &Value<E, B>,
        pieces: &mut HashMap<NodeId, Value<E, B>>,
    ) -> Result<Value<E, B>> {
        let group = &self.plan.slice_groups[&leader];
        let (n, _, hw) = channel_rows(self.graph.layout, self.n, chw(&self.graph.nodes[group.input].shape, "a channel split")?);
        let parts = self.backend.split_channels(x, &group.channels(), n, hw)?;
        let mut own = None;
        for (part, &(_, member)) in parts.into_iter().zip(&group.pieces) {
            match member {
                Some(id) if id == leader => own = Some(Arc::new(part)),
                Some(id) => {
                    pieces.insert(id, Arc::new(part));
                }
                None => {}
            }
        }
        Ok(own.expect("the leader is a member of its group"))
    }

    /// Runs one computing node (not an alias or a slice) through its unit.
    fn node(&mut self, i: NodeId, xs: &[Value<E, B>]) -> Result<(crate::exec::Buf<E, B>, Saved<E, B>)> {
        let graph = self.graph;
        let inputs = graph.input_shapes(i);
        let bufs: Vec<&crate::exec::Buf<E, B>> = xs.iter().map(|v| &**v).collect();
        let mut params = self.rounding.params(&mut *self.params);
        let mut ctx = ForwardCtx {
            backend: self.backend,
            params: &mut params,
            scratch: &mut *self.scratch,
            n: self.n,
            inputs: &inputs,
            layout: graph.layout,
            training: self.plan.mode == Mode::Train,
            update_running_stats: self.update_running_stats,
            record: self.plan.records(i),
            step_seed: self.step_seed,
            node: i,
            batch_norm_group: self.batch_norm_group,
        };
        graph.nodes[i].op.forward(&mut ctx, &bufs)
    }
}
