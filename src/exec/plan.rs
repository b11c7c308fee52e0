//! What one pass over the graph computes, keeps and frees, decided before any tensor exists:
//! which nodes run, the last forward use of every activation (liveness), which nodes need a
//! gradient, and what each recorded node keeps for its backward. The executor follows the plan;
//! the memory planner replays it with byte counts instead of buffers.

use crate::graph::{Graph, NodeId, Op, ParamId};
use crate::ops::NodeOp;
use std::collections::HashMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, dropout on, a tape for backward.
    Train,
    /// Running statistics, dropout off, every activation freed after its last use.
    Eval,
}

/// Sibling `SliceChannels` nodes of one input with disjoint ranges: the first of them to run
/// (the leader) splits the input once for all, and in backward it joins all their gradients in
/// one concat.
#[derive(Clone, Debug, PartialEq)]
pub struct SliceGroup {
    pub input: NodeId,
    /// The input's channels in order, as (count, the slice node taking them or None for a gap).
    pub pieces: Vec<(usize, Option<NodeId>)>,
}

impl SliceGroup {
    pub fn channels(&self) -> Vec<usize> {
        self.pieces.iter().map(|&(c, _)| c).collect()
    }
}

/// Forward-use marker of a graph output: its value lives until the loss has read it.
pub const KEPT_TO_END: usize = usize::MAX;

#[derive(Clone, Debug)]
pub struct Plan {
    pub mode: Mode,
    /// Whether the node runs at all (eval skips auxiliary heads).
    pub live: Vec<bool>,
    /// Index of the last node reading this node's value, KEPT_TO_END for outputs.
    pub last_use: Vec<usize>,
    /// Whether backward must compute this node's output gradient (train mode only).
    pub requires_grad: Vec<bool>,
    /// Per node, per input position: whether the input's value is kept on the tape.
    pub saved_inputs: Vec<Vec<bool>>,
    /// Slice node -> the leader of its group; groups keyed by leader.
    pub slice_leader: HashMap<NodeId, NodeId>,
    pub slice_groups: HashMap<NodeId, SliceGroup>,
    /// Graph outputs that enter the loss (train) or the main output alone (eval).
    pub outputs: Vec<NodeId>,
}

impl Plan {
    /// `trainable(p)` tells whether parameter p receives a gradient; `input_grad` whether the
    /// gradient with respect to the input batch is wanted.
    pub fn new(graph: &Graph, mode: Mode, trainable: impl Fn(ParamId) -> bool, input_grad: bool) -> Plan {
        let count = graph.nodes.len();
        let main = graph.main_output().node;
        let outputs: Vec<NodeId> = match mode {
            Mode::Eval => vec![main],
            Mode::Train => graph
                .outputs
                .iter()
                .filter(|o| o.node == main || o.loss_weight != 0.0)
                .map(|o| o.node)
                .collect(),
        };

        let mut live = vec![false; count];
        for &o in &outputs {
            live[o] = true;
        }
        for i in (0..count).rev() {
            if live[i] {
                for &j in &graph.nodes[i].inputs {
                    live[j] = true;
                }
            }
        }

        let (slice_leader, slice_groups) = slice_groups(graph, &live);

        let mut last_use: Vec<usize> = (0..count).collect();
        for (i, node) in graph.nodes.iter().enumerate() {
            let follower = slice_leader.get(&i).is_some_and(|&leader| leader != i);
            if live[i] && !follower {
                for &j in &node.inputs {
                    last_use[j] = last_use[j].max(i);
                }
            }
        }
        for &o in &outputs {
            last_use[o] = KEPT_TO_END;
        }

        let mut requires_grad = vec![false; count];
        let mut saved_inputs: Vec<Vec<bool>> = graph.nodes.iter().map(|n| vec![false; n.inputs.len()]).collect();
        if mode == Mode::Train {
            for (i, node) in graph.nodes.iter().enumerate() {
                if !live[i] {
                    continue;
                }
                let from_input = node.inputs.iter().any(|&j| requires_grad[j]);
                let own_params = node.op.learnable_params().into_iter().any(&trainable);
                requires_grad[i] = (i == 0 && input_grad) || from_input || own_params;
                if requires_grad[i] {
                    saved_inputs[i] = node.op.kept_inputs(node.inputs.len(), &trainable);
                }
            }
        }
        Plan { mode, live, last_use, requires_grad, saved_inputs, slice_leader, slice_groups, outputs }
    }

    /// Whether the node records a tape entry (and runs a backward).
    pub fn records(&self, id: NodeId) -> bool {
        self.requires_grad[id]
    }

    /// Whether the node's output is its first input's buffer itself (no copy).
    pub fn aliases_input(&self, op: &Op, inputs: usize) -> bool {
        op.aliases_input(self.mode == Mode::Train, inputs)
    }
}

type SliceGroups = (HashMap<NodeId, NodeId>, HashMap<NodeId, SliceGroup>);

/// Groups live slices of the same input whose channel ranges do not overlap.
fn slice_groups(graph: &Graph, live: &[bool]) -> SliceGroups {
    let mut by_input: HashMap<NodeId, Vec<(usize, usize, NodeId)>> = HashMap::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        if let (true, Some((start, len))) = (live[i], node.op.channel_range()) {
            by_input.entry(node.inputs[0]).or_default().push((start, len, i));
        }
    }
    let mut leaders = HashMap::new();
    let mut groups = HashMap::new();
    for (input, mut members) in by_input {
        members.sort_unstable();
        let total = graph.nodes[input].shape[0];
        let disjoint = members.windows(2).all(|w| w[0].0 + w[0].1 <= w[1].0);
        // Overlapping slices each split on their own (one group per slice).
        let partitions: Vec<Vec<(usize, usize, NodeId)>> =
            if disjoint { vec![members] } else { members.into_iter().map(|m| vec![m]).collect() };
        for part in partitions {
            let leader = part.iter().map(|&(_, _, id)| id).min().expect("a group has members");
            let mut pieces = Vec::new();
            let mut at = 0;
            for &(start, len, id) in &part {
                if start > at {
                    pieces.push((start - at, None));
                }
                pieces.push((len, Some(id)));
                at = start + len;
                leaders.insert(id, leader);
            }
            if at < total {
                pieces.push((total - at, None));
            }
            groups.insert(leader, SliceGroup { input, pieces });
        }
    }
    (leaders, groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{ConvCfg, GraphBuilder};
    use crate::ops::Activation;

    /// input -> conv -> relu -> slices [0..1) and [2..4) of 4 -> concat -> flatten -> fc (main),
    /// plus an auxiliary head on relu.
    fn graph() -> Graph {
        let mut b = GraphBuilder::new("plan", &[2, 3, 3]);
        let conv = b.conv2d("conv", 0, ConvCfg::new(4, 1)).unwrap();
        let relu = b.activation("relu", conv, Activation::Relu);
        let left = b.slice_channels("left", relu, 0, 1).unwrap();
        let right = b.slice_channels("right", relu, 2, 2).unwrap();
        let cat = b.concat("cat", &[left, right]).unwrap();
        let flat = b.flatten("flat", cat);
        let fc = b.linear("fc", flat, 2, true).unwrap();
        let aux_flat = b.flatten("aux_flat", relu);
        let aux = b.linear("aux", aux_flat, 2, false).unwrap();
        b.output(fc, 1.0, false);
        b.output(aux, 0.3, true);
        b.finish().unwrap()
    }

    #[test]
    fn eval_skips_auxiliary_heads_and_frees_at_last_use() {
        let g = graph();
        let plan = Plan::new(&g, Mode::Eval, |_| true, false);
        assert_eq!(plan.live, [true, true, true, true, true, true, true, true, false, false]);
        // relu is last read by the first slice: the second takes its piece from that split.
        assert_eq!(plan.last_use[2], 3);
        assert_eq!(plan.last_use[0], 1);
        assert_eq!(plan.last_use[7], KEPT_TO_END);
        assert!(plan.requires_grad.iter().all(|&r| !r));
    }

    #[test]
    fn training_keeps_what_backward_reads_and_groups_slices() {
        let g = graph();
        let plan = Plan::new(&g, Mode::Train, |_| true, false);
        assert!(plan.live.iter().all(|&l| l));
        assert_eq!(plan.last_use[2], 8, "the auxiliary flatten reads relu last");
        assert_eq!(plan.saved_inputs[1], [true], "conv keeps its input for the weight gradient");
        assert_eq!(plan.saved_inputs[2], [true], "relu keeps its input");
        assert_eq!(plan.saved_inputs[5], [false, false], "concat keeps nothing");
        assert_eq!(plan.slice_leader[&4], 3);
        assert_eq!(plan.slice_groups[&3].pieces, [(1, Some(3)), (1, None), (2, Some(4))]);

        let frozen_conv = Plan::new(&g, Mode::Train, |p| p != 0, false);
        assert!(!frozen_conv.requires_grad[0]);
        assert!(frozen_conv.requires_grad[1], "the conv's bias still trains");
        assert_eq!(frozen_conv.saved_inputs[1], [false], "a frozen conv weight needs no input");
        let input_grad = Plan::new(&g, Mode::Train, |_| false, true);
        assert!(input_grad.requires_grad.iter().enumerate().all(|(i, &r)| r == input_grad.live[i]));
    }
}
