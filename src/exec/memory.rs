//! The memory planner: replays a plan with byte counts instead of buffers, in the executor's
//! order of allocations and frees, to predict the peak device bytes of a step before running it.

use super::geom;
use super::plan::{Mode, Plan};
use crate::error::Result;
use crate::graph::{Graph, NodeId, Op, ParamId};
use std::collections::HashMap;

/// Reference-counted byte blocks, mirroring the executor's shared activations.
#[derive(Default)]
struct Sim {
    blocks: Vec<(usize, usize)>,
    current: usize,
    peak: usize,
}

type Block = usize;

impl Sim {
    fn alloc(&mut self, bytes: usize) -> Block {
        self.current += bytes;
        self.peak = self.peak.max(self.current);
        self.blocks.push((bytes, 1));
        self.blocks.len() - 1
    }
    fn retain(&mut self, b: Block) -> Block {
        self.blocks[b].1 += 1;
        b
    }
    fn release(&mut self, b: Block) {
        let block = &mut self.blocks[b];
        block.1 -= 1;
        if block.1 == 0 {
            self.current -= block.0;
        }
    }
    /// Memory an op holds only while it runs.
    fn transient(&mut self, bytes: usize) {
        self.peak = self.peak.max(self.current + bytes);
    }
}

/// Sizes of one planning run.
struct Sizes<'a> {
    graph: &'a Graph,
    n: usize,
    elem: usize,
    workspace: usize,
}

impl Sizes<'_> {
    fn out(&self, id: NodeId) -> usize {
        self.n * geom::numel(self.graph, id) * self.elem
    }
    fn channels(&self, id: NodeId) -> usize {
        self.graph.nodes[id].shape[0]
    }
    /// The workspace of a non-depthwise convolution for one chunk of images (sized to the
    /// workspace limit): the im2col columns and the GEMM's [C_out, columns] result, which is
    /// reordered into NCHW afterwards.
    fn conv_workspace(&self, id: NodeId) -> Result<usize> {
        let g = geom::conv(self.graph, id, self.n)?;
        if g.is_depthwise() {
            return Ok(0);
        }
        let images = g.images_per_chunk(self.workspace, self.elem);
        Ok((g.col_rows() + g.c_out) * g.col_cols(images) * self.elem)
    }
}

/// Peak bytes of activations, tape, loss and gradients of one pass with `n` samples (parameters
/// not included).
pub fn planned_peak(
    graph: &Graph,
    plan: &Plan,
    n: usize,
    elem: usize,
    workspace: usize,
    trainable: impl Fn(ParamId) -> bool,
) -> Result<usize> {
    let sizes = Sizes { graph, n, elem, workspace };
    let mut sim = Sim::default();
    let count = graph.nodes.len();
    let mut values: Vec<Option<Block>> = vec![None; count];
    let mut tape: Vec<Vec<Block>> = vec![Vec::new(); count];
    let mut pending_slices: HashMap<NodeId, Block> = HashMap::new();
    values[0] = Some(sim.alloc(sizes.out(0)));

    for i in 1..count {
        if !plan.live[i] {
            continue;
        }
        let node = &graph.nodes[i];
        let input = |pos: usize| values[node.inputs[pos]].expect("inputs live until their last use");
        let value = if let Some(piece) = pending_slices.remove(&i) {
            piece
        } else if plan.aliases_input(&node.op, node.inputs.len()) {
            sim.retain(input(0))
        } else if let Op::SliceChannels { .. } = node.op {
            let group = &plan.slice_groups[&i];
            let mut own = None;
            for &(c, member) in &group.pieces {
                let block = sim.alloc(c * sizes.out(group.input) / sizes.channels(group.input));
                match member {
                    Some(id) if id == i => own = Some(block),
                    Some(id) => {
                        pending_slices.insert(id, block);
                    }
                    None => sim.release(block),
                }
            }
            own.expect("the leader is a member of its group")
        } else {
            // Ops allocate their output before their workspace.
            let out = sim.alloc(sizes.out(i));
            if let Op::Conv2d { .. } = node.op {
                sim.transient(sizes.conv_workspace(i)?);
            }
            out
        };
        // Buffers the forward makes for backward: kept when recorded, else dropped at once.
        let extra = match node.op {
            Op::MaxPool2d { .. } => Some(sim.alloc(sizes.n * geom::numel(graph, i) * 4)),
            Op::Dropout { p } if plan.mode == Mode::Train && p > 0.0 => Some(sim.alloc(sizes.out(i))),
            Op::BatchNorm2d { .. } if plan.mode == Mode::Train => Some(sim.alloc(2 * sizes.channels(i) * elem)),
            _ => None,
        };
        if plan.records(i) {
            for (pos, &keep) in plan.saved_inputs[i].iter().enumerate() {
                if keep {
                    tape[i].push(sim.retain(input(pos)));
                }
            }
            tape[i].extend(extra);
        } else if let Some(b) = extra {
            sim.release(b);
        }
        values[i] = Some(value);
        for &j in &node.inputs {
            if plan.last_use[j] == i {
                if let Some(b) = values[j].take() {
                    sim.release(b);
                }
            }
        }
    }
    if plan.mode == Mode::Eval {
        return Ok(sim.peak);
    }

    let mut grads: Vec<Option<Block>> = vec![None; count];
    let labels = sim.alloc(n * 4);
    for out in &graph.outputs {
        if plan.outputs.contains(&out.node) && out.loss_weight != 0.0 {
            grads[out.node] = Some(sim.alloc(sizes.out(out.node)));
        }
    }
    sim.release(labels);
    for &o in &plan.outputs {
        if let Some(b) = values[o].take() {
            sim.release(b);
        }
    }
    let mut slice_grads: HashMap<NodeId, Block> = HashMap::new();
    for i in (1..count).rev() {
        if !plan.records(i) {
            continue;
        }
        let node = &graph.nodes[i];
        let needs = |pos: usize| plan.requires_grad[node.inputs[pos]];
        let mut sends: Vec<(NodeId, Block)> = Vec::new();
        if let Op::SliceChannels { .. } = node.op {
            if let Some(dy) = grads[i].take() {
                slice_grads.insert(i, dy);
            }
            if plan.slice_leader[&i] == i {
                let group = &plan.slice_groups[&i];
                let members: Vec<Block> =
                    group.pieces.iter().filter_map(|&(_, m)| m.and_then(|id| slice_grads.remove(&id))).collect();
                if !members.is_empty() && plan.requires_grad[group.input] {
                    sends.push((group.input, sim.alloc(sizes.out(group.input))));
                }
                for b in members {
                    sim.release(b);
                }
            }
        } else if let Some(dy) = grads[i].take() {
            let mut param_grad = |p: Option<ParamId>, bytes: usize| {
                if p.is_some_and(&trainable) {
                    // Parameter gradients stay until the optimiser step.
                    sim.alloc(bytes);
                }
            };
            match &node.op {
                Op::Conv2d { weight, bias, .. } => {
                    param_grad(Some(*weight), graph.params[*weight].numel() * elem);
                    param_grad(*bias, sizes.channels(i) * elem);
                }
                Op::Linear { weight, bias, .. } => {
                    param_grad(Some(*weight), graph.params[*weight].numel() * elem);
                    param_grad(*bias, sizes.channels(i) * elem);
                }
                Op::BatchNorm2d { gamma, beta, .. } => {
                    param_grad(Some(*gamma), sizes.channels(i) * elem);
                    param_grad(Some(*beta), sizes.channels(i) * elem);
                }
                _ => {}
            }
            let passes_dy = matches!(node.op, Op::Add | Op::Flatten)
                || plan.aliases_input(&node.op, node.inputs.len())
                || matches!(node.op, Op::Dropout { p } if p == 0.0);
            for (pos, &j) in node.inputs.iter().enumerate() {
                if passes_dy {
                    if needs(pos) {
                        sends.push((j, sim.retain(dy)));
                    }
                } else {
                    // Ops that return every input gradient at once allocate them all.
                    let all_at_once = matches!(node.op, Op::BatchNorm2d { .. } | Op::Mul | Op::MulChannel | Op::Concat);
                    if needs(pos) || all_at_once {
                        let b = sim.alloc(sizes.out(j));
                        if needs(pos) {
                            sends.push((j, b));
                        } else {
                            sim.release(b);
                        }
                    }
                }
            }
            if let Op::Conv2d { .. } = node.op {
                sim.transient(sizes.conv_workspace(i)?);
            }
            sim.release(dy);
        }
        for (j, b) in sends {
            match grads[j] {
                // The sum lands in one of the two; the other is freed.
                Some(_) => sim.release(b),
                None => grads[j] = Some(b),
            }
        }
        for b in std::mem::take(&mut tape[i]) {
            sim.release(b);
        }
    }
    Ok(sim.peak)
}
