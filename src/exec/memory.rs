//! The memory planner: replays a plan with byte counts instead of buffers, in the executor's
//! order of allocations and frees, to predict the peak device bytes of a step before running it.
//! Each node's own figures (what it saves for backward, its workspace, how it hands out input
//! gradients) come from its unit.

use super::plan::{Mode, Plan};
use crate::device::ConvWorkspace;
use crate::error::Result;
use crate::graph::{Graph, NodeId, ParamId};
use crate::ops::node::{numel, GradFlow};
use crate::ops::NodeOp;
use std::collections::{HashMap, HashSet};

/// Reference-counted byte blocks, mirroring the executor's shared activations.
#[derive(Default)]
struct ByteLedger {
    blocks: Vec<(usize, usize)>,
    current: usize,
    peak: usize,
}

type Block = usize;

impl ByteLedger {
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
    workspace: ConvWorkspace,
}

impl Sizes<'_> {
    fn out(&self, id: NodeId) -> usize {
        self.n * numel(&self.graph.nodes[id].shape) * self.elem
    }
    fn channels(&self, id: NodeId) -> usize {
        self.graph.nodes[id].shape[0]
    }
    /// Bytes node `id` holds only while its forward or backward runs.
    fn workspace(&self, id: NodeId) -> Result<usize> {
        let op = &self.graph.nodes[id].op;
        op.workspace_bytes(&self.graph.input_shapes(id), self.n, self.elem, self.workspace, self.graph.layout)
    }
}

/// The two words of a step's dropout seed (`ops::dropout::step_seed_words`).
const STEP_SEED_BYTES: usize = 8;

/// What the planner predicts for one pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedMemory {
    /// Peak bytes of activations, tape, loss and gradients (parameters not included).
    pub peak: usize,
    /// Bytes the tape holds when the forward pass ends: kept inputs and what the units saved
    /// for backward (0 in evaluation).
    pub tape: usize,
}

/// The memory of one pass with `n` samples of `elem` bytes each, with convolution workspace as
/// `workspace` says.
pub fn plan_memory(
    graph: &Graph,
    plan: &Plan,
    n: usize,
    elem: usize,
    workspace: ConvWorkspace,
    trainable: impl Fn(ParamId) -> bool,
) -> Result<PlannedMemory> {
    let sizes = Sizes { graph, n, elem, workspace };
    let mut ledger = ByteLedger::default();
    let count = graph.nodes.len();
    let mut values: Vec<Option<Block>> = vec![None; count];
    let mut tape: Vec<Vec<Block>> = vec![Vec::new(); count];
    let mut pending_slices: HashMap<NodeId, Block> = HashMap::new();
    values[0] = Some(ledger.alloc(sizes.out(0)));
    // A training step's dropout seed, on the device for the whole step.
    if plan.mode == Mode::Train {
        ledger.alloc(STEP_SEED_BYTES);
    }

    for i in 1..count {
        if !plan.live[i] {
            continue;
        }
        let node = &graph.nodes[i];
        let input = |pos: usize| values[node.inputs[pos]].expect("inputs live until their last use");
        let value = if let Some(piece) = pending_slices.remove(&i) {
            piece
        } else if plan.aliases_input(&node.op, node.inputs.len()) {
            ledger.retain(input(0))
        } else if node.op.channel_range().is_some() {
            let group = &plan.slice_groups[&i];
            let mut own = None;
            for &(c, member) in &group.pieces {
                let block = ledger.alloc(c * sizes.out(group.input) / sizes.channels(group.input));
                match member {
                    Some(id) if id == i => own = Some(block),
                    Some(id) => {
                        pending_slices.insert(id, block);
                    }
                    None => ledger.release(block),
                }
            }
            own.expect("the leader is a member of its group")
        } else {
            // Ops allocate their output before their workspace.
            let out = ledger.alloc(sizes.out(i));
            ledger.transient(sizes.workspace(i)?);
            out
        };
        // Buffers the forward makes for backward: kept when recorded, else dropped at once.
        let saved = node.op.saved_bytes(plan.mode == Mode::Train, &node.shape, n, elem);
        let extra = (saved > 0).then(|| ledger.alloc(saved));
        if plan.records(i) {
            for (pos, &keep) in plan.saved_inputs[i].iter().enumerate() {
                if keep {
                    tape[i].push(ledger.retain(input(pos)));
                }
            }
            tape[i].extend(extra);
        } else if let Some(b) = extra {
            ledger.release(b);
        }
        values[i] = Some(value);
        for &j in &node.inputs {
            if plan.last_use[j] == i {
                if let Some(b) = values[j].take() {
                    ledger.release(b);
                }
            }
        }
    }
    if plan.mode == Mode::Eval {
        return Ok(PlannedMemory { peak: ledger.peak, tape: 0 });
    }
    let tape_blocks: HashSet<Block> = tape.iter().flatten().copied().collect();
    let tape_bytes = tape_blocks.iter().map(|&b| ledger.blocks[b].0).sum();

    let mut grads: Vec<Option<Block>> = vec![None; count];
    let labels = ledger.alloc(n * 4);
    for out in &graph.outputs {
        if plan.outputs.contains(&out.node) && out.loss_weight != 0.0 {
            grads[out.node] = Some(ledger.alloc(sizes.out(out.node)));
        }
    }
    ledger.release(labels);
    for &o in &plan.outputs {
        if let Some(b) = values[o].take() {
            ledger.release(b);
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
        if node.op.channel_range().is_some() {
            if let Some(dy) = grads[i].take() {
                slice_grads.insert(i, dy);
            }
            if plan.slice_leader[&i] == i {
                let group = &plan.slice_groups[&i];
                let members: Vec<Block> =
                    group.pieces.iter().filter_map(|&(_, m)| m.and_then(|id| slice_grads.remove(&id))).collect();
                if !members.is_empty() && plan.requires_grad[group.input] {
                    sends.push((group.input, ledger.alloc(sizes.out(group.input))));
                }
                for b in members {
                    ledger.release(b);
                }
            }
        } else if let Some(dy) = grads[i].take() {
            // Parameter gradients stay until the optimiser step.
            for p in node.op.learnable_params().into_iter().filter(|&p| trainable(p)) {
                ledger.alloc(graph.params[p].numel() * elem);
            }
            let flow = node.op.grad_flow(node.inputs.len());
            for (pos, &j) in node.inputs.iter().enumerate() {
                if flow == GradFlow::PassDy {
                    if needs(pos) {
                        sends.push((j, ledger.retain(dy)));
                    }
                } else if needs(pos) || flow == GradFlow::AllAtOnce {
                    // Ops that return every input gradient at once allocate them all.
                    let b = ledger.alloc(sizes.out(j));
                    if needs(pos) {
                        sends.push((j, b));
                    } else {
                        ledger.release(b);
                    }
                }
            }
            ledger.transient(sizes.workspace(i)?);
            ledger.release(dy);
        }
        for (j, b) in sends {
            match grads[j] {
                // The sum lands in one of the two; the other is freed.
                Some(_) => ledger.release(b),
                None => grads[j] = Some(b),
            }
        }
        for b in std::mem::take(&mut tape[i]) {
            ledger.release(b);
        }
    }
    Ok(PlannedMemory { peak: ledger.peak, tape: tape_bytes })
}
