//! The memory planner: replays a plan with byte counts instead of buffers, in the executor's
//! order of allocations and frees, to predict the peak device bytes of a step before running it.
//! Each node's own figures (what it saves for backward, its workspace, how it hands out input
//! gradients) come from its unit.

use super::plan::{Mode, Plan};
use crate::device::ConvWorkspace;
use crate::error::Result;
use crate::graph::{Graph, NodeId, Op, ParamId};
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
    /// Bytes per stored activation value: `elem`, or 2 where the device stores a bf16/fp16
    /// run's activations in 16 bits.
    stored: usize,
    workspace: ConvWorkspace,
    /// Whether batch norms synchronise their statistics over a process group (`--sync-bn`).
    synchronised_batch_norms: bool,
}

impl Sizes<'_> {
    /// Whether node `id` is a batch norm whose training passes synchronise (ops/norm/sync.rs):
    /// its forward runs a local statistics pass whose output it drops, its backward holds the
    /// local dx, the scaled input and the correction beside dx, on f32 copies of 16-bit inputs.
    fn synchronised(&self, id: NodeId, mode: Mode) -> bool {
        self.synchronised_batch_norms && mode == Mode::Train && matches!(self.graph.nodes[id].op, Op::BatchNorm2d(_))
    }
    /// Values of node `id`'s output.
    fn values(&self, id: NodeId) -> usize {
        self.n * numel(&self.graph.nodes[id].shape)
    }
    /// Bytes of node `id`'s output at `elem` bytes per value.
    fn out(&self, id: NodeId) -> usize {
        self.values(id) * self.elem
    }
    fn channels(&self, id: NodeId) -> usize {
        self.graph.nodes[id].shape[0]
    }
    /// Whether node `id` gets f32 copies of its 16-bit inputs and output gradient, and has its
    /// f32 output and input gradients stored in 16 bits after it (`exec::precision`).
    fn widens(&self, id: NodeId) -> bool {
        self.stored < self.elem && !self.graph.nodes[id].op.reads_stored(self.graph.layout)
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
/// `workspace` says. `stored`: bytes per activation value as the device stores them (`elem`, or
/// 2 for a GPU's bf16/fp16 run, whose nodes that read f32 only get f32 copies: see
/// `exec::precision`). `synchronised_batch_norms`: whether batch norms synchronise (`--sync-bn`).
#[allow(clippy::too_many_arguments)]
pub fn plan_memory(
    graph: &Graph,
    plan: &Plan,
    n: usize,
    elem: usize,
    stored: usize,
    workspace: ConvWorkspace,
    synchronised_batch_norms: bool,
    trainable: impl Fn(ParamId) -> bool,
) -> Result<PlannedMemory> {
    let sizes = Sizes { graph, n, elem, stored, workspace, synchronised_batch_norms };
    let mut ledger = ByteLedger::default();
    let count = graph.nodes.len();
    let mut values: Vec<Option<Block>> = vec![None; count];
    // Bytes per value of each node's output as it is held (f32 for split pieces).
    let mut value_elem: Vec<usize> = vec![stored; count];
    let mut tape: Vec<Vec<Block>> = vec![Vec::new(); count];
    let mut pending_slices: HashMap<NodeId, Block> = HashMap::new();
    // The uploaded batch, replaced by its stored copy when that is narrower (a resident batch
    // the caller holds all step is not counted, as at f32 it is not held past its last use).
    let upload = ledger.alloc(sizes.out(0));
    values[0] = Some(store(&mut ledger, &sizes, upload, 0, elem));
    // A training step's dropout seed, on the device for the whole step.
    if plan.mode == Mode::Train {
        ledger.alloc(STEP_SEED_BYTES);
    }

    for i in 1..count {
        if !plan.live[i] {
            continue;
        }
        let node = &graph.nodes[i];
        let mut copies: Vec<Option<Block>> = Vec::new();
        let value = if let Some(piece) = pending_slices.remove(&i) {
            value_elem[i] = elem;
            piece
        } else if plan.aliases_input(&node.op, node.inputs.len()) {
            value_elem[i] = value_elem[node.inputs[0]];
            ledger.retain(values[node.inputs[0]].expect("inputs live until their last use"))
        } else if node.op.channel_range().is_some() {
            let group = &plan.slice_groups[&i];
            if value_elem[group.input] < elem {
                // The split reads an f32 copy of its input.
                ledger.transient(sizes.out(group.input));
            }
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
            value_elem[i] = elem;
            own.expect("the leader is a member of its group")
        } else {
            // Ops allocate their output before their workspace; an f32-only node reads f32
            // copies of its 16-bit inputs. The output comes in the format of the input read
            // first, and is stored in the run's format after.
            let widens = sizes.widens(i);
            if widens {
                copies = node.inputs.iter().map(|&j| (value_elem[j] < elem).then(|| ledger.alloc(sizes.out(j)))).collect();
            }
            let out_elem = if widens { elem } else { value_elem[node.inputs[0]] };
            if sizes.synchronised(i, plan.mode) {
                ledger.transient(sizes.values(i) * out_elem);
            }
            let out = ledger.alloc(sizes.values(i) * out_elem);
            ledger.transient(sizes.workspace(i)?);
            if out_elem > stored {
                let kept = ledger.alloc(sizes.values(i) * stored);
                ledger.release(out);
                kept
            } else {
                out
            }
        };
        // Buffers the forward makes for backward: kept when recorded, else dropped at once.
        let saved = node.op.saved_bytes(plan.mode == Mode::Train, &node.shape, n, elem);
        let extra = (saved > 0).then(|| ledger.alloc(saved));
        if plan.records(i) {
            for (pos, &keep) in plan.saved_inputs[i].iter().enumerate() {
                if keep {
                    let read = copies.get(pos).copied().flatten();
                    let block = read.unwrap_or_else(|| values[node.inputs[pos]].expect("inputs live until their last use"));
                    tape[i].push(ledger.retain(block));
                }
            }
            tape[i].extend(extra);
        } else if let Some(b) = extra {
            ledger.release(b);
        }
        for copy in copies.into_iter().flatten() {
            ledger.release(copy);
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

    // The outputs' f32 copies for the loss, their gradients from it (f32), stored.
    let output_copies: Vec<Block> =
        plan.outputs.iter().filter(|&&o| value_elem[o] < elem).map(|&o| ledger.alloc(sizes.out(o))).collect();
    let mut grads: Vec<Option<Block>> = vec![None; count];
    let labels = ledger.alloc(n * 4);
    for out in &graph.outputs {
        if plan.outputs.contains(&out.node) && out.loss_weight != 0.0 {
            let dlogits = ledger.alloc(sizes.out(out.node));
            grads[out.node] = Some(store(&mut ledger, &sizes, dlogits, out.node, elem));
        }
    }
    ledger.release(labels);
    for &o in &plan.outputs {
        if let Some(b) = values[o].take() {
            ledger.release(b);
        }
    }
    for b in output_copies {
        ledger.release(b);
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
                    if stored < elem {
                        // The concat reads f32 copies of the members.
                        ledger.transient(sizes.out(group.input));
                    }
                    let joined = ledger.alloc(sizes.out(group.input));
                    sends.push((group.input, store(&mut ledger, &sizes, joined, group.input, elem)));
                }
                for b in members {
                    ledger.release(b);
                }
            }
        } else if let Some(dy) = grads[i].take() {
            let synchronised = sizes.synchronised(i, plan.mode);
            let widens = sizes.widens(i) || (synchronised && stored < elem);
            // An f32-only node reads an f32 copy of the output gradient, which replaces it; a
            // synchronised batch norm widens its own copy beside it.
            let wide_dy = widens.then(|| ledger.alloc(sizes.out(i)));
            let replaced = widens && !synchronised;
            if replaced {
                ledger.release(dy);
            }
            // Parameter gradients stay until the optimiser step.
            for p in node.op.learnable_params().into_iter().filter(|&p| trainable(p)) {
                ledger.alloc(graph.params[p].numel() * elem);
            }
            let flow = node.op.grad_flow(node.inputs.len());
            for (pos, &j) in node.inputs.iter().enumerate() {
                if flow == GradFlow::PassDy {
                    if needs(pos) {
                        // The f32 copy passed on is stored again.
                        let passed = if widens { ledger.alloc(sizes.values(j) * stored) } else { ledger.retain(dy) };
                        sends.push((j, passed));
                    }
                } else if needs(pos) || flow == GradFlow::AllAtOnce {
                    // Ops that return every input gradient at once allocate them all, in the
                    // format of the input they read (f32 for an f32-only node), stored after.
                    let grad_elem = if widens { elem } else { value_elem[j] };
                    let b = ledger.alloc(sizes.values(j) * grad_elem);
                    if needs(pos) {
                        sends.push((j, b));
                    } else {
                        ledger.release(b);
                    }
                }
            }
            if synchronised {
                let x = node.inputs[0];
                let wide_x = if value_elem[x] < elem { sizes.out(x) } else { 0 };
                let grad = sizes.values(x) * if widens { elem } else { value_elem[x] };
                ledger.transient(wide_x + 3 * grad);
            }
            ledger.transient(sizes.workspace(i)?);
            sends = sends
                .into_iter()
                .map(|(j, b)| {
                    let held = ledger.blocks[b].0 / sizes.values(j).max(1);
                    (j, store(&mut ledger, &sizes, b, j, held))
                })
                .collect();
            if let Some(b) = wide_dy {
                ledger.release(b);
            }
            if !replaced {
                ledger.release(dy);
            }
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

/// Block `b` of node `id`'s values at `elem` bytes each, as stored: a copy in the stored format
/// replaces it when that is narrower.
fn store(ledger: &mut ByteLedger, sizes: &Sizes<'_>, b: Block, id: NodeId, elem: usize) -> Block {
    if sizes.stored >= elem {
        return b;
    }
    let kept = ledger.alloc(sizes.values(id) * sizes.stored);
    ledger.release(b);
    kept
}
