//! The forward pass: every live node in topological order, each activation freed after its last
//! use unless the tape keeps it.

use super::geom;
use super::params::ParamStore;
use super::plan::{Mode, Plan, KEPT_TO_END};
use super::pool::BufferPool;
use super::tape::{Extra, Record, Tape, Value};
use crate::element::Element;
use crate::error::Result;
use crate::graph::{Graph, NodeId, Op};
use crate::ops::dropout::dropout_hash;
use crate::ops::Backend;
use std::collections::HashMap;
use std::sync::Arc;

pub struct Forward<'a, E: Element, B: Backend<E>> {
    pub backend: &'a B,
    pub graph: &'a Graph,
    pub plan: &'a Plan,
    pub params: &'a mut ParamStore<E, B>,
    pub pool: &'a mut BufferPool<E, B>,
    pub n: usize,
    /// Train mode only: whether BN running statistics take this batch's statistics.
    pub update_running_stats: bool,
    /// Train mode only: the step's dropout seed; each node mixes in its id.
    pub dropout_seed: u64,
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
        values[0] = Some(input);

        for i in 1..count {
            if !self.plan.live[i] {
                continue;
            }
            let node = &self.graph.nodes[i];
            let (value, extra) = if let Some(piece) = split_pieces.remove(&i) {
                (piece, Extra::None)
            } else {
                let xs: Vec<Value<E, B>> = node
                    .inputs
                    .iter()
                    .map(|&j| values[j].clone().expect("the plan keeps inputs alive until their last use"))
                    .collect();
                if self.plan.aliases_input(&node.op, xs.len()) {
                    (xs[0].clone(), Extra::None)
                } else if let Op::SliceChannels { .. } = node.op {
                    (self.split_group(i, &xs[0], &mut split_pieces)?, Extra::None)
                } else {
                    let (y, extra) = self.node(i, &xs)?;
                    (Arc::new(y), extra)
                }
            };
            if self.plan.records(i) {
                let inputs = node
                    .inputs
                    .iter()
                    .zip(&self.plan.saved_inputs[i])
                    .map(|(&j, &keep)| if keep { values[j].clone() } else { None })
                    .collect();
                tape[i] = Some(Record { inputs, extra });
            }
            values[i] = Some(value);
            for &j in &node.inputs {
                if self.plan.last_use[j] == i {
                    values[j] = None;
                }
            }
        }
        let outputs = self
            .plan
            .outputs
            .iter()
            .map(|&o| {
                debug_assert_eq!(self.plan.last_use[o], KEPT_TO_END);
                (o, values[o].clone().expect("outputs are kept to the end"))
            })
            .collect();
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
        let (_, h, w) = geom::chw(self.graph, group.input)?;
        let parts = self.backend.split_channels(x, &group.channels(), self.n, h * w)?;
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

    /// Runs one computing node (not an alias or a slice).
    fn node(&mut self, i: NodeId, xs: &[Value<E, B>]) -> Result<(crate::exec::Buf<E, B>, Extra<E, B>)> {
        let (graph, backend, n) = (self.graph, self.backend, self.n);
        let training = self.plan.mode == Mode::Train;
        let keep = self.plan.records(i);
        let x = &*xs[0];
        let out = match &graph.nodes[i].op {
            Op::Input => unreachable!("the input node is never recomputed"),
            Op::Conv2d { weight, bias, .. } => {
                let g = geom::conv(graph, i, n)?;
                let (w, b) = (self.params.value(*weight), bias.map(|b| self.params.value(b)));
                let y = if g.is_depthwise() {
                    backend.depthwise_conv2d_forward(x, w, b, &g)?
                } else {
                    backend.conv2d_forward(x, w, b, &g)?
                };
                (y, Extra::None)
            }
            Op::BatchNorm2d { momentum, gamma, beta, running_mean, running_var, .. } => {
                let g = geom::batch_norm(graph, i, n)?;
                if !training {
                    let p = &self.params;
                    let y = backend.batch_norm2d_forward_eval(
                        x,
                        p.value(*gamma),
                        p.value(*beta),
                        p.value(*running_mean),
                        p.value(*running_var),
                        &g,
                    )?;
                    return Ok((y, Extra::None));
                }
                let [gm, bt, rm, rv] = self.params.values_mut([*gamma, *beta, *running_mean, *running_var])?;
                let (y, stats) = if self.update_running_stats {
                    backend.batch_norm2d_forward_train(x, gm, bt, rm, rv, *momentum, &g)?
                } else {
                    // The op always updates running statistics; give it scratch copies.
                    let (mut rm_s, mut rv_s) = (self.pool.copy_of(backend, rm)?, self.pool.copy_of(backend, rv)?);
                    let out = backend.batch_norm2d_forward_train(x, gm, bt, &mut rm_s, &mut rv_s, *momentum, &g)?;
                    self.pool.recycle(rm_s);
                    self.pool.recycle(rv_s);
                    out
                };
                (y, if keep { Extra::BnStats(stats) } else { Extra::None })
            }
            Op::Linear { weight, bias, .. } => {
                let g = geom::linear(graph, i, n)?;
                let b = bias.map(|b| self.params.value(b));
                (backend.linear_forward(x, self.params.value(*weight), b, &g)?, Extra::None)
            }
            Op::Activation(kind) => (backend.activation_forward(*kind, x)?, Extra::None),
            Op::MaxPool2d { .. } => {
                let (y, indices) = backend.max_pool2d_forward(x, &geom::pool(graph, i, n)?)?;
                (y, if keep { Extra::Indices(indices) } else { Extra::None })
            }
            Op::AvgPool2d { .. } => (backend.avg_pool2d_forward(x, &geom::pool(graph, i, n)?)?, Extra::None),
            Op::AdaptiveAvgPool2d { .. } => {
                (backend.adaptive_avg_pool2d_forward(x, &geom::adaptive_pool(graph, i, n)?)?, Extra::None)
            }
            Op::Add => (backend.add(x, &xs[1])?, Extra::None),
            Op::Mul => (backend.mul(x, &xs[1])?, Extra::None),
            Op::MulChannel => (backend.mul_channel(x, &xs[1], &geom::mul_channel(graph, i, n)?)?, Extra::None),
            Op::Concat => {
                let (channels, hw) = geom::concat(graph, i)?;
                let refs: Vec<&crate::exec::Buf<E, B>> = xs.iter().map(|v| &**v).collect();
                (backend.concat_channels(&refs, &channels, n, hw)?, Extra::None)
            }
            Op::ChannelShuffle { groups } => {
                let (c, h, w) = geom::chw(graph, i)?;
                (backend.channel_shuffle(x, n, c, h * w, *groups)?, Extra::None)
            }
            Op::Dropout { p } => {
                let seed = dropout_hash(self.dropout_seed, i as u64);
                let (y, mask) = backend.dropout_forward(x, *p, seed)?;
                (y, if keep { Extra::Mask(mask) } else { Extra::None })
            }
            Op::SliceChannels { .. } | Op::Flatten => unreachable!("slices and aliases are handled by run"),
        };
        Ok(out)
    }
}
