//! The backward pass: replays the tape in reverse, sending each node's output gradient to its
//! inputs and its parameters, and freeing every gradient and tape entry once consumed. In a
//! data-parallel step it tells each parameter's gradient to the ranks' averaging as soon as no
//! later node adds to it, so the all-reduce overlaps the rest of backward.

use super::buffer_cache::BufferCache;
use super::params::{GradStore, ParamStore};
use super::plan::Plan;
use super::precision::StorageRounding;
use super::tape::{Record, Tape, Value};
use super::Buf;
use crate::dist::{GradientHook, ProcessGroup};
use crate::element::Element;
use crate::error::Result;
use crate::graph::{Graph, NodeId, ParamId};
use crate::ops::node::{channel_rows, chw, BackwardCtx, GradSink, InputGrad};
use crate::ops::{Backend, NodeOp};
use std::collections::HashMap;
use std::sync::Arc;

pub struct Backward<'a, E: Element, B: Backend<E>> {
    pub backend: &'a B,
    pub graph: &'a Graph,
    pub plan: &'a Plan,
    pub params: &'a ParamStore<E, B>,
    pub grads: &'a mut GradStore<E, B>,
    pub scratch: &'a mut BufferCache<E, B>,
    pub n: usize,
    /// As `Forward::batch_norm_group`.
    pub batch_norm_group: Option<&'a ProcessGroup>,
    /// Data parallelism: where each parameter's gradient goes once it is final.
    pub final_gradients: Option<FinalGradients<'a, Buf<E, B>>>,
    /// As `Forward::rounding`: rounds each node's complete output gradient and lends the
    /// rounded weights.
    pub rounding: &'a StorageRounding<E, B>,
}

/// Where backward tells each parameter's final gradient, and when each is final.
pub struct FinalGradients<'a, G> {
    /// Per node: the parameters whose gradient is final once that node's backward has run.
    pub final_after: &'a [Vec<ParamId>],
    pub hook: &'a mut dyn GradientHook<G>,
}

impl<E: Element, B: Backend<E>> Backward<'_, E, B> {
    /// Runs backward from the gradients of the graph outputs; returns the gradient with respect
    /// to the input batch when the plan asked for it.
    pub fn run(mut self, mut tape: Tape<E, B>, output_grads: Vec<(NodeId, Buf<E, B>)>) -> Result<Option<Value<E, B>>> {
        let count = self.graph.nodes.len();
        let mut grads: Vec<Option<Value<E, B>>> = vec![None; count];
        for (node, g) in output_grads {
            accumulate(self.backend, self.scratch, self.rounding, &mut grads, node, Arc::new(g))?;
        }
        // Gradients of slice-group followers, joined by the leader.
        let mut slice_grads: HashMap<NodeId, Value<E, B>> = HashMap::new();
        for i in (1..count).rev() {
            if let Some(record) = tape[i].take() {
                let is_slice = self.graph.nodes[i].op.channel_range().is_some();
                match grads[i].take() {
                    Some(dy) if is_slice => {
                        slice_grads.insert(i, dy);
                    }
                    Some(dy) => {
                        let dy = self.rounding.store_gradient(self.backend, &self.graph.nodes[i].op, self.graph.layout, dy)?;
                        self.node(i, &dy, record, &mut grads)?
                    }
                    None => {}
                }
                if is_slice && self.plan.slice_leader[&i] == i {
                    self.join_slice_group(i, &mut slice_grads, &mut grads)?;
                }
            }
            self.tell_final_gradients(i)?;
        }
        Ok(if self.plan.requires_grad[0] { grads[0].take() } else { None })
    }

    /// Tells data parallelism the gradients node `i`'s backward finished, and lets the sums
    /// already in flight progress.
    fn tell_final_gradients(&mut self, i: NodeId) -> Result<()> {
        let Some(finals) = &mut self.final_gradients else { return Ok(()) };
        for &p in &finals.final_after[i] {
            if let Some(grad) = self.grads.get(p) {
                finals.hook.gradient_final(p, grad)?;
            }
        }
        finals.hook.between_nodes();
        Ok(())
    }

    /// Runs node `i`'s unit backward; its gradients go to its inputs and parameters.
    fn node(&mut self, i: NodeId, dy: &Value<E, B>, record: Record<E, B>, grads: &mut [Option<Value<E, B>>]) -> Result<()> {
        let graph = self.graph;
        let Record { inputs: kept, saved } = record;
        let kept: Vec<Option<&Buf<E, B>>> = kept.iter().map(|v| v.as_deref()).collect();
        let inputs = graph.input_shapes(i);
        let (backend, n, batch_norm_group) = (self.backend, self.n, self.batch_norm_group);
        let (rounding, master) = (self.rounding, self.params);
        let params = rounding.params_shared(master);
        let mut sink = NodeGrads { backward: self, node: i, dy, grads };
        let mut ctx = BackwardCtx { backend, params: &params, n, inputs: &inputs, layout: graph.layout, kept: &kept, saved: &saved, grads: &mut sink, batch_norm_group };
        graph.nodes[i].op.backward(&mut ctx, dy)
    }

    /// The input gradient of a slice group: its members' gradients in channel order, zeros for
    /// gaps and for members that received none, joined in one concat.
    fn join_slice_group(
        &mut self,
        leader: NodeId,
        slice_grads: &mut HashMap<NodeId, Value<E, B>>,
        grads: &mut [Option<Value<E, B>>],
    ) -> Result<()> {
        let group = &self.plan.slice_groups[&leader];
        // Concat reads f32 (the gradients arrive stored).
        let members: Vec<Option<Value<E, B>>> = group
            .pieces
            .iter()
            .map(|&(_, member)| member.and_then(|id| slice_grads.remove(&id)).map(|g| self.rounding.widened(self.backend, g)).transpose())
            .collect::<Result<_>>()?;
        if members.iter().all(Option::is_none) || !self.plan.requires_grad[group.input] {
            return Ok(());
        }
        let (n, _, hw) = channel_rows(self.graph.layout, self.n, chw(&self.graph.nodes[group.input].shape, "a channel split")?);
        let channels = group.channels();
        let mut pads = Vec::new();
        for (&c, member) in channels.iter().zip(&members) {
            if member.is_none() {
                pads.push(self.scratch.zeros(self.backend, n * c * hw)?);
            }
        }
        let dx = {
            let mut pad_iter = pads.iter();
            let parts: Vec<&Buf<E, B>> = members
                .iter()
                .map(|m| m.as_deref().unwrap_or_else(|| pad_iter.next().expect("one pad per missing piece")))
                .collect();
            self.backend.concat_channels(&parts, &channels, n, hw)?
        };
        for pad in pads {
            self.scratch.recycle(pad);
        }
        accumulate(self.backend, self.scratch, self.rounding, grads, group.input, Arc::new(dx))
    }
}

/// Adds `g` into the gradient of node `j`, copying only when both are shared; the contribution
/// and the sum are stored in the run's format.
fn accumulate<E: Element, B: Backend<E>>(
    backend: &B,
    scratch: &mut BufferCache<E, B>,
    rounding: &StorageRounding<E, B>,
    grads: &mut [Option<Value<E, B>>],
    j: NodeId,
    g: Value<E, B>,
) -> Result<()> {
    let g = rounding.store_contribution(backend, g)?;
    let Some(prev) = grads[j].take() else {
        grads[j] = Some(g);
        return Ok(());
    };
    let (mut sum, other) = match Arc::try_unwrap(prev) {
        Ok(buf) => (buf, g),
        Err(prev) => match Arc::try_unwrap(g) {
            Ok(buf) => (buf, prev),
            Err(g) => (scratch.copy_of(backend, &prev)?, g),
        },
    };
    backend.axpy(E::one(), &other, &mut sum)?;
    grads[j] = Some(rounding.store_contribution(backend, Arc::new(sum))?);
    Ok(())
}

/// Where one node's backward sends its gradients: the inputs that need one and the trainable
/// parameters.
struct NodeGrads<'b, 'a, E: Element, B: Backend<E>> {
    backward: &'b mut Backward<'a, E, B>,
    node: NodeId,
    dy: &'b Value<E, B>,
    grads: &'b mut [Option<Value<E, B>>],
}

impl<E: Element, B: Backend<E>> GradSink<E, B> for NodeGrads<'_, '_, E, B> {
    fn input_needs_grad(&self, pos: usize) -> bool {
        self.backward.plan.requires_grad[self.backward.graph.nodes[self.node].inputs[pos]]
    }
    fn send_input(&mut self, pos: usize, grad: InputGrad<Buf<E, B>>) -> Result<()> {
        if !self.input_needs_grad(pos) {
            return Ok(());
        }
        let g = match grad {
            InputGrad::PassDy => self.dy.clone(),
            InputGrad::New(buf) => Arc::new(buf),
        };
        let j = self.backward.graph.nodes[self.node].inputs[pos];
        let b = &mut *self.backward;
        accumulate(b.backend, b.scratch, b.rounding, self.grads, j, g)
    }
    fn param_needs_grad(&self, id: ParamId) -> bool {
        self.backward.params.is_trainable(id)
    }
    fn send_param(&mut self, id: ParamId, grad: Buf<E, B>) -> Result<()> {
        let b = &mut *self.backward;
        b.grads.accumulate(b.backend, id, grad)
    }
}
