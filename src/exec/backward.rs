//! The backward pass: replays the tape in reverse, sending each node's output gradient to its
//! inputs and its parameters, and freeing every gradient and tape entry once consumed.

use super::geom;
use super::params::{GradStore, ParamStore};
use super::plan::Plan;
use super::pool::BufferPool;
use super::tape::{Extra, Record, Tape, Value};
use super::Buf;
use crate::element::Element;
use crate::error::Result;
use crate::graph::{Graph, NodeId, Op, ParamId};
use crate::ops::Backend;
use std::collections::HashMap;
use std::sync::Arc;

pub struct Backward<'a, E: Element, B: Backend<E>> {
    pub backend: &'a B,
    pub graph: &'a Graph,
    pub plan: &'a Plan,
    pub params: &'a ParamStore<E, B>,
    pub grads: &'a mut GradStore<E, B>,
    pub pool: &'a mut BufferPool<E, B>,
    pub n: usize,
}

impl<E: Element, B: Backend<E>> Backward<'_, E, B> {
    /// Runs backward from the gradients of the graph outputs; returns the gradient with respect
    /// to the input batch when the plan asked for it.
    pub fn run(mut self, mut tape: Tape<E, B>, output_grads: Vec<(NodeId, Buf<E, B>)>) -> Result<Option<Value<E, B>>> {
        let count = self.graph.nodes.len();
        let mut grads: Vec<Option<Value<E, B>>> = vec![None; count];
        for (node, g) in output_grads {
            self.accumulate(&mut grads, node, Arc::new(g))?;
        }
        // Gradients of slice-group followers, joined by the leader.
        let mut slice_grads: HashMap<NodeId, Value<E, B>> = HashMap::new();
        for i in (1..count).rev() {
            let Some(record) = tape[i].take() else { continue };
            let is_slice = matches!(self.graph.nodes[i].op, Op::SliceChannels { .. });
            match grads[i].take() {
                Some(dy) if is_slice => {
                    slice_grads.insert(i, dy);
                }
                Some(dy) => self.node(i, &dy, record, &mut grads)?,
                None => {}
            }
            if is_slice && self.plan.slice_leader[&i] == i {
                self.join_slice_group(i, &mut slice_grads, &mut grads)?;
            }
        }
        Ok(if self.plan.requires_grad[0] { grads[0].take() } else { None })
    }

    /// Adds `g` into the gradient of node `j`, copying only when both are shared.
    fn accumulate(&mut self, grads: &mut [Option<Value<E, B>>], j: NodeId, g: Value<E, B>) -> Result<()> {
        let Some(prev) = grads[j].take() else {
            grads[j] = Some(g);
            return Ok(());
        };
        let (mut sum, other) = match Arc::try_unwrap(prev) {
            Ok(buf) => (buf, g),
            Err(prev) => match Arc::try_unwrap(g) {
                Ok(buf) => (buf, prev),
                Err(g) => (self.pool.copy_of(self.backend, &prev)?, g),
            },
        };
        self.backend.axpy(E::one(), &other, &mut sum)?;
        grads[j] = Some(Arc::new(sum));
        Ok(())
    }

    /// Sends a gradient to input `pos` of node `i` when that input needs one.
    fn send_to_input(&mut self, grads: &mut [Option<Value<E, B>>], i: NodeId, pos: usize, g: Value<E, B>) -> Result<()> {
        let j = self.graph.nodes[i].inputs[pos];
        if self.plan.requires_grad[j] {
            self.accumulate(grads, j, g)?;
        }
        Ok(())
    }

    fn input_needs_grad(&self, i: NodeId, pos: usize) -> bool {
        self.plan.requires_grad[self.graph.nodes[i].inputs[pos]]
    }

    fn send_to_param(&mut self, id: Option<ParamId>, grad: impl FnOnce() -> Result<Buf<E, B>>) -> Result<()> {
        match id {
            Some(id) if self.params.is_trainable(id) => self.grads.accumulate(self.backend, id, grad()?),
            _ => Ok(()),
        }
    }

    fn node(&mut self, i: NodeId, dy: &Value<E, B>, record: Record<E, B>, grads: &mut [Option<Value<E, B>>]) -> Result<()> {
        let (graph, backend, n) = (self.graph, self.backend, self.n);
        let Record { inputs: saved, extra } = record;
        let saved_input = |pos: usize| -> &Buf<E, B> {
            saved[pos].as_deref().expect("the plan keeps what this backward reads")
        };
        match &graph.nodes[i].op {
            Op::Input => unreachable!("the input has no backward"),
            Op::Conv2d { weight, bias, .. } => {
                let g = geom::conv(graph, i, n)?;
                let w = self.params.value(*weight);
                if self.input_needs_grad(i, 0) {
                    let dx = if g.is_depthwise() {
                        backend.depthwise_conv2d_backward_data(dy, w, &g)?
                    } else {
                        backend.conv2d_backward_data(dy, w, &g)?
                    };
                    self.send_to_input(grads, i, 0, Arc::new(dx))?;
                }
                self.send_to_param(Some(*weight), || {
                    if g.is_depthwise() {
                        backend.depthwise_conv2d_backward_filter(saved_input(0), dy, &g)
                    } else {
                        backend.conv2d_backward_filter(saved_input(0), dy, &g)
                    }
                })?;
                self.send_to_param(*bias, || backend.conv2d_backward_bias(dy, &g))?;
            }
            Op::BatchNorm2d { gamma, beta, .. } => {
                let Extra::BnStats(stats) = &extra else { unreachable!("a recorded BN keeps its statistics") };
                let g = geom::batch_norm(graph, i, n)?;
                let (dx, dgamma, dbeta) =
                    backend.batch_norm2d_backward(dy, saved_input(0), self.params.value(*gamma), stats, &g)?;
                self.send_to_input(grads, i, 0, Arc::new(dx))?;
                self.send_to_param(Some(*gamma), || Ok(dgamma))?;
                self.send_to_param(Some(*beta), || Ok(dbeta))?;
            }
            Op::Linear { weight, bias, .. } => {
                let g = geom::linear(graph, i, n)?;
                if self.input_needs_grad(i, 0) {
                    let dx = backend.linear_backward_data(dy, self.params.value(*weight), &g)?;
                    self.send_to_input(grads, i, 0, Arc::new(dx))?;
                }
                self.send_to_param(Some(*weight), || backend.linear_backward_weight(saved_input(0), dy, &g))?;
                self.send_to_param(*bias, || backend.linear_backward_bias(dy, &g))?;
            }
            Op::Activation(kind) => {
                let dx = backend.activation_backward(*kind, saved_input(0), dy)?;
                self.send_to_input(grads, i, 0, Arc::new(dx))?;
            }
            Op::MaxPool2d { .. } => {
                let Extra::Indices(indices) = &extra else { unreachable!("a recorded max-pool keeps its argmax") };
                let dx = backend.max_pool2d_backward(dy, indices, &geom::pool(graph, i, n)?)?;
                self.send_to_input(grads, i, 0, Arc::new(dx))?;
            }
            Op::AvgPool2d { .. } => {
                let dx = backend.avg_pool2d_backward(dy, &geom::pool(graph, i, n)?)?;
                self.send_to_input(grads, i, 0, Arc::new(dx))?;
            }
            Op::AdaptiveAvgPool2d { .. } => {
                let dx = backend.adaptive_avg_pool2d_backward(dy, &geom::adaptive_pool(graph, i, n)?)?;
                self.send_to_input(grads, i, 0, Arc::new(dx))?;
            }
            Op::Add => {
                self.send_to_input(grads, i, 0, dy.clone())?;
                self.send_to_input(grads, i, 1, dy.clone())?;
            }
            Op::Mul => {
                let (da, db) = backend.mul_backward(saved_input(0), saved_input(1), dy)?;
                self.send_to_input(grads, i, 0, Arc::new(da))?;
                self.send_to_input(grads, i, 1, Arc::new(db))?;
            }
            Op::MulChannel => {
                let g = geom::mul_channel(graph, i, n)?;
                let (dx, ds) = backend.mul_channel_backward(saved_input(0), saved_input(1), dy, &g)?;
                self.send_to_input(grads, i, 0, Arc::new(dx))?;
                self.send_to_input(grads, i, 1, Arc::new(ds))?;
            }
            Op::Concat if graph.nodes[i].inputs.len() == 1 => self.send_to_input(grads, i, 0, dy.clone())?,
            Op::Concat => {
                let (channels, hw) = geom::concat(graph, i)?;
                let parts = backend.split_channels(dy, &channels, n, hw)?;
                for (pos, part) in parts.into_iter().enumerate() {
                    self.send_to_input(grads, i, pos, Arc::new(part))?;
                }
            }
            Op::ChannelShuffle { groups } => {
                let (c, h, w) = geom::chw(graph, i)?;
                let dx = backend.channel_shuffle_backward(dy, n, c, h * w, *groups)?;
                self.send_to_input(grads, i, 0, Arc::new(dx))?;
            }
            Op::Dropout { .. } => match &extra {
                Extra::Mask(mask) => {
                    let dx = backend.dropout_backward(dy, mask)?;
                    self.send_to_input(grads, i, 0, Arc::new(dx))?;
                }
                _ => self.send_to_input(grads, i, 0, dy.clone())?,
            },
            Op::Flatten => self.send_to_input(grads, i, 0, dy.clone())?,
            Op::SliceChannels { .. } => unreachable!("slices are joined per group"),
        }
        Ok(())
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
        let members: Vec<Option<Value<E, B>>> =
            group.pieces.iter().map(|&(_, member)| member.and_then(|id| slice_grads.remove(&id))).collect();
        if members.iter().all(Option::is_none) || !self.plan.requires_grad[group.input] {
            return Ok(());
        }
        let (_, h, w) = geom::chw(self.graph, group.input)?;
        let (n, hw) = (self.n, h * w);
        let channels = group.channels();
        let mut pads = Vec::new();
        for (&c, member) in channels.iter().zip(&members) {
            if member.is_none() {
                pads.push(self.pool.zeros(self.backend, n * c * hw)?);
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
            self.pool.recycle(pad);
        }
        self.accumulate(grads, group.input, Arc::new(dx))
    }
}
