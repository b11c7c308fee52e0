//! Batch norm -> (residual add) -> activation fused into one node for training
//! (`ops::BatchNormAct`): the batch norm's output and the sum are neither written to memory nor
//! kept for backward, and the backward folds the activation's derivative into batch norm's. A
//! chain is fused only when nothing else reads its batch norm's output or its sum. Parameters
//! keep their ids, so the fused graph trains, saves and loads the same parameters as its source.
//! At bf16/fp16 a fused node's output is rounded once, where it is stored; the unfused chain
//! rounds each of its stored outputs (`exec::precision`), so the two differ by rounding there.

use super::{Graph, Node, NodeId};
use crate::ops::{BatchNormAct, Op};

/// A graph with its chains fused, and how many of each kind went.
pub struct FusedGraph {
    pub graph: Graph,
    pub counts: FuseCounts,
}

/// The chains `fuse_batch_norm_activations` fused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FuseCounts {
    /// batch norm -> activation
    pub batch_norm_activations: usize,
    /// batch norm -> residual add -> activation
    pub batch_norm_add_activations: usize,
}

/// One chain: the batch norm, the add (if any) and the activation that become one node.
struct Chain {
    bn: NodeId,
    add: Option<NodeId>,
    /// The add's other input.
    residual: Option<NodeId>,
}

/// Fuses every activation reading a batch norm, or a sum of a batch norm and another tensor,
/// that nothing else reads.
pub fn fuse_batch_norm_activations(source: &Graph) -> FusedGraph {
    let readers = source.reader_counts();
    let read_once_bn = |id: NodeId| readers[id] == 1 && matches!(source.nodes[id].op, Op::BatchNorm2d(_));
    let chain_of = |node: &Node| -> Option<Chain> {
        let Op::Activation(_) = node.op else { return None };
        let &[input] = node.inputs.as_slice() else { return None };
        if read_once_bn(input) {
            return Some(Chain { bn: input, add: None, residual: None });
        }
        if readers[input] != 1 || !matches!(source.nodes[input].op, Op::Add(_)) {
            return None;
        }
        let &[a, b] = source.nodes[input].inputs.as_slice() else { return None };
        let (bn, residual) = match (read_once_bn(a), read_once_bn(b)) {
            (true, _) if a != b => (a, b),
            (_, true) if a != b => (b, a),
            _ => return None,
        };
        Some(Chain { bn, add: Some(input), residual: Some(residual) })
    };

    let chains: Vec<Option<Chain>> = source.nodes.iter().map(chain_of).collect();
    let mut absorbed = vec![false; source.nodes.len()];
    for chain in chains.iter().flatten() {
        absorbed[chain.bn] = true;
        if let Some(add) = chain.add {
            absorbed[add] = true;
        }
    }
    let mut counts = FuseCounts::default();
    let mut nodes: Vec<Node> = Vec::with_capacity(source.nodes.len());
    let mut new_id: Vec<NodeId> = vec![usize::MAX; source.nodes.len()];
    for (id, (node, chain)) in source.nodes.iter().zip(&chains).enumerate() {
        if absorbed[id] {
            continue;
        }
        let fused = match chain {
            Some(chain) => {
                let (Op::BatchNorm2d(bn), Op::Activation(activation)) = (&source.nodes[chain.bn].op, &node.op) else {
                    unreachable!("a chain is a batch norm and an activation")
                };
                let bn_node = &source.nodes[chain.bn];
                let mut inputs = vec![new_id[bn_node.inputs[0]]];
                inputs.extend(chain.residual.map(|r| new_id[r]));
                match chain.residual {
                    Some(_) => counts.batch_norm_add_activations += 1,
                    None => counts.batch_norm_activations += 1,
                }
                let op = Op::BatchNormAct(BatchNormAct::new(bn.clone(), *activation, chain.residual.is_some()));
                Node { name: bn_node.name.clone(), op, inputs, shape: node.shape.clone() }
            }
            None => Node { inputs: node.inputs.iter().map(|&j| new_id[j]).collect(), ..node.clone() },
        };
        new_id[id] = nodes.len();
        nodes.push(fused);
    }
    let outputs = source.outputs.iter().map(|o| super::GraphOutput { node: new_id[o.node], ..o.clone() }).collect();
    let graph = Graph { name: source.name.clone(), nodes, params: source.params.clone(), outputs, layout: source.layout };
    FusedGraph { graph, counts }
}

/// The graph with every fused node expanded back into its batch norm, add and activation (named
/// after the batch norm): what evaluation-mode folding (`graph::fold`) works on.
pub fn unfuse(fused: &Graph) -> Graph {
    let mut nodes: Vec<Node> = Vec::with_capacity(fused.nodes.len());
    let mut new_id: Vec<NodeId> = Vec::with_capacity(fused.nodes.len());
    for node in &fused.nodes {
        let inputs: Vec<NodeId> = node.inputs.iter().map(|&j| new_id[j]).collect();
        let Op::BatchNormAct(chain) = &node.op else {
            new_id.push(nodes.len());
            nodes.push(Node { inputs, ..node.clone() });
            continue;
        };
        let part = |suffix: &str, op: Op, inputs: Vec<NodeId>| Node { name: format!("{}.{suffix}", node.name), op, inputs, shape: node.shape.clone() };
        nodes.push(Node { name: node.name.clone(), op: Op::BatchNorm2d(chain.batch_norm().clone()), inputs: vec![inputs[0]], shape: node.shape.clone() });
        if chain.has_residual() {
            nodes.push(part("add", Op::Add(crate::ops::Add), vec![nodes.len() - 1, inputs[1]]));
        }
        let activation = chain.activation();
        nodes.push(part(activation.name(), Op::Activation(activation), vec![nodes.len() - 1]));
        new_id.push(nodes.len() - 1);
    }
    let outputs = fused.outputs.iter().map(|o| super::GraphOutput { node: new_id[o.node], ..o.clone() }).collect();
    Graph { name: fused.name.clone(), nodes, params: fused.params.clone(), outputs, layout: fused.layout }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;
    use crate::ops::{Activation, ConvCfg, NodeOp};

    #[test]
    fn chains_read_once_fuse_and_shared_tensors_stay() {
        let mut b = GraphBuilder::new("t", &[2, 4, 4]);
        let conv1 = b.conv2d("conv1", b.input(), ConvCfg { bias: false, ..ConvCfg::new(2, 1) }).unwrap();
        let bn1 = b.batch_norm2d("bn1", conv1, 1e-5, 0.1).unwrap();
        let relu1 = b.activation("relu1", bn1, Activation::Relu);
        let conv2 = b.conv2d("conv2", relu1, ConvCfg { bias: false, ..ConvCfg::new(2, 1) }).unwrap();
        let bn2 = b.batch_norm2d("bn2", conv2, 1e-5, 0.1).unwrap();
        let sum = b.add("add", bn2, relu1).unwrap();
        let relu2 = b.activation("relu2", sum, Activation::Silu);
        // bn3's output is read twice: its chain stays unfused.
        let bn3 = b.batch_norm2d("bn3", relu2, 1e-5, 0.1).unwrap();
        let act3 = b.activation("act3", bn3, Activation::Hardswish);
        let sum3 = b.add("add3", act3, bn3).unwrap();
        let flat = b.flatten("flat", sum3);
        let fc = b.linear("fc", flat, 2, true).unwrap();
        b.output(fc, 1.0, false);
        let source = b.finish().unwrap();
        let fused = fuse_batch_norm_activations(&source);
        assert_eq!(fused.counts, FuseCounts { batch_norm_activations: 1, batch_norm_add_activations: 1 });
        assert_eq!(fused.graph.nodes.len(), source.nodes.len() - 3);
        assert_eq!(fused.graph.params, source.params);
        let described: Vec<String> = fused.graph.nodes.iter().map(|n| n.op.describe()).collect();
        assert_eq!(described[2], "batchnorm+relu");
        assert_eq!(fused.graph.nodes[2].inputs, vec![1], "reads the first convolution");
        assert_eq!(described[4], "batchnorm+add+silu");
        assert_eq!(fused.graph.nodes[4].inputs, vec![3, 2], "the second convolution, then the residual");
        assert_eq!(fused.graph.nodes[4].name, "bn2");
        assert!(described.contains(&"hardswish".to_string()) && described.contains(&"batchnorm".to_string()), "{described:?}");
        assert_eq!(fused.graph.main_output().node, fused.graph.nodes.len() - 1);

        // The residual of a sum may come first too.
        let mut swapped = source.clone();
        swapped.nodes[6].inputs.reverse();
        assert_eq!(fuse_batch_norm_activations(&swapped).graph, fused.graph);

        let unfused = unfuse(&fused.graph);
        let ops = |g: &Graph| g.nodes.iter().map(|n| (n.op.clone(), n.inputs.clone(), n.shape.clone())).collect::<Vec<_>>();
        assert_eq!(ops(&unfused), ops(&source), "unfusing gives the source's nodes back");
        assert_eq!(unfused.outputs, source.outputs);
    }
}
