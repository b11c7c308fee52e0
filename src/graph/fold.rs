//! Batch norm folded into the convolution before it, for evaluation: there a batch norm is a fixed
//! per-channel affine map, so `conv -> batch norm` is one convolution with rescaled weights and a
//! bias, and the batch norm's pass over memory disappears. An activation that then reads the
//! biased convolution alone is applied in the same pass as the bias (`Conv2d::with_activation`),
//! so `conv -> batch norm -> relu` leaves one pass after the convolution where it had two. This
//! module rewrites the graph; `crate::exec` computes the folded values from the parameters.

use super::{Graph, Init, Node, NodeId, ParamId, ParamKind, ParamSpec};
use crate::ops::{BatchNormParams, Conv2d, Op};

/// One convolution that absorbs the batch norm after it.
#[derive(Clone, Debug, PartialEq)]
pub struct BnFold {
    /// The convolution's weight: the same id in both graphs, its values rescaled per channel.
    pub weight: ParamId,
    /// The source convolution's bias, if it has one.
    pub source_bias: Option<ParamId>,
    /// The folded convolution's bias: the source bias's id, or a parameter the folded graph adds.
    pub bias: ParamId,
    pub bn: BatchNormParams,
    pub eps: f64,
}

/// A graph for evaluation and the folds that turn the source graph's parameter values into its
/// own. Parameter ids of the source graph keep their meaning; the batch norms' parameters stay in
/// the list, read by no node, and new biases come after them.
pub struct FoldedGraph {
    pub graph: Graph,
    pub folds: Vec<BnFold>,
    /// Activations applied in their convolution's bias pass.
    pub fused_activations: usize,
}

/// Folds every batch norm whose input is a convolution that feeds nothing else, then every
/// activation whose input is a biased convolution (or such a folded pair) that feeds nothing
/// else. Evaluation only: training needs the batch statistics the folded graph no longer computes.
pub fn fold_batch_norms(source: &Graph) -> FoldedGraph {
    let readers = source.reader_counts();
    let mut params = source.params.clone();
    let mut nodes: Vec<Node> = Vec::with_capacity(source.nodes.len());
    let mut new_id: Vec<NodeId> = Vec::with_capacity(source.nodes.len());
    let mut folds = Vec::new();
    let mut fused_activations = 0;
    for node in &source.nodes {
        if let Some((conv_node, conv, bn)) = foldable(source, node, &readers) {
            let folded = new_id[conv_node];
            let bias = conv.bias().unwrap_or_else(|| {
                let weight = &params[conv.weight()];
                let name = format!("{}.bias", weight.name.strip_suffix(".weight").unwrap_or(&weight.name));
                let spec = ParamSpec { name, shape: vec![conv.cfg().out_channels], init: Init::Const(0.0), kind: ParamKind::Bias, trainable: false };
                params.push(spec);
                params.len() - 1
            });
            let cfg = crate::ops::ConvCfg { bias: true, ..*conv.cfg() };
            let op = Conv2d::new(cfg, conv.weight(), Some(bias)).expect("a valid convolution stays valid with a bias");
            nodes[folded].op = Op::Conv2d(op);
            folds.push(BnFold { weight: conv.weight(), source_bias: conv.bias(), bias, bn: bn.bn_params(), eps: bn.eps() });
            new_id.push(folded);
            continue;
        }
        if let Some((target, conv)) = fusable_activation(node, &nodes, &new_id, &readers) {
            nodes[target].op = Op::Conv2d(conv);
            fused_activations += 1;
            new_id.push(target);
            continue;
        }
        new_id.push(nodes.len());
        nodes.push(Node { inputs: node.inputs.iter().map(|&j| new_id[j]).collect(), ..node.clone() });
    }
    let outputs = source.outputs.iter().map(|o| super::GraphOutput { node: new_id[o.node], ..o.clone() }).collect();
    FoldedGraph { graph: Graph { name: source.name.clone(), nodes, params, outputs, layout: source.layout }, folds, fused_activations }
}

/// The convolution node, the convolution and the batch norm when `node` is a batch norm reading a
/// convolution that nothing else reads.
fn foldable<'g>(graph: &'g Graph, node: &'g Node, readers: &[usize]) -> Option<(NodeId, &'g Conv2d, &'g crate::ops::BatchNorm2d)> {
    let Op::BatchNorm2d(bn) = &node.op else { return None };
    let &[input] = node.inputs.as_slice() else { return None };
    match &graph.nodes[input].op {
        Op::Conv2d(conv) if readers[input] == 1 => Some((input, conv, bn)),
        _ => None,
    }
}

/// The folded graph's node that `node` (an activation) joins and its convolution with the
/// activation fused, when `node` reads a biased convolution without one that nothing else reads.
fn fusable_activation(node: &Node, folded: &[Node], new_id: &[NodeId], readers: &[usize]) -> Option<(NodeId, Conv2d)> {
    let Op::Activation(activation) = node.op else { return None };
    let &[input] = node.inputs.as_slice() else { return None };
    let target = new_id[input];
    match &folded[target].op {
        Op::Conv2d(conv) if readers[input] == 1 && conv.activation().is_none() => {
            conv.clone().with_activation(activation).ok().map(|conv| (target, conv))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;
    use crate::ops::{Activation, ConvCfg, NodeOp};

    fn count(graph: &Graph, pred: impl Fn(&Op) -> bool) -> usize {
        graph.nodes.iter().filter(|n| pred(&n.op)).count()
    }

    #[test]
    fn a_conv_read_only_by_its_batch_norm_absorbs_it() {
        let mut b = GraphBuilder::new("t", &[3, 8, 8]);
        let conv = b.conv2d("conv", b.input(), ConvCfg { bias: false, padding: (1, 1), ..ConvCfg::new(4, 3) }).unwrap();
        let bn = b.batch_norm2d("bn", conv, 1e-5, 0.1).unwrap();
        let act = b.activation("relu", bn, Activation::Relu);
        let flat = b.flatten("flat", act);
        let fc = b.linear("fc", flat, 2, true).unwrap();
        b.output(fc, 1.0, false);
        let source = b.finish().unwrap();
        let folded = fold_batch_norms(&source);
        assert_eq!((folded.folds.len(), folded.fused_activations), (1, 1));
        assert_eq!(count(&folded.graph, |op| matches!(op, Op::BatchNorm2d(_) | Op::Activation(_))), 0);
        assert_eq!(folded.graph.nodes.len(), source.nodes.len() - 2);
        let fold = &folded.folds[0];
        assert_eq!(fold.source_bias, None);
        assert_eq!(folded.graph.params[fold.bias].name, "conv.bias");
        let Op::Conv2d(conv) = &folded.graph.nodes[1].op else { panic!("node 1 stays the convolution") };
        assert_eq!((conv.bias(), conv.activation()), (Some(fold.bias), Some(Activation::Relu)));
        assert_eq!(folded.graph.nodes[2].inputs, vec![1], "the flatten reads the convolution");
        assert_eq!(folded.graph.main_output().node, folded.graph.nodes.len() - 1);
    }

    #[test]
    fn a_conv_with_another_reader_keeps_its_batch_norm() {
        let mut b = GraphBuilder::new("t", &[2, 4, 4]);
        let conv = b.conv2d("conv", b.input(), ConvCfg::new(2, 1)).unwrap();
        let bn = b.batch_norm2d("bn", conv, 1e-5, 0.1).unwrap();
        let sum = b.add("add", bn, conv).unwrap();
        let flat = b.flatten("flat", sum);
        let fc = b.linear("fc", flat, 2, true).unwrap();
        b.output(fc, 1.0, false);
        let source = b.finish().unwrap();
        let folded = fold_batch_norms(&source);
        assert!(folded.folds.is_empty());
        assert_eq!(folded.graph, source);
    }

    #[test]
    fn an_activation_fuses_only_into_a_biased_convolution_it_alone_reads() {
        let mut b = GraphBuilder::new("t", &[2, 4, 4]);
        let plain = b.conv2d("plain", b.input(), ConvCfg { bias: false, ..ConvCfg::new(2, 1) }).unwrap();
        let relu_plain = b.activation("relu_plain", plain, Activation::Relu);
        let biased = b.conv2d("biased", relu_plain, ConvCfg::new(2, 1)).unwrap();
        let silu = b.activation("silu", biased, Activation::Silu);
        let shared = b.conv2d("shared", silu, ConvCfg::new(2, 1)).unwrap();
        let relu6 = b.activation("relu6", shared, Activation::Relu6);
        let sum = b.add("add", relu6, shared).unwrap();
        let flat = b.flatten("flat", sum);
        let fc = b.linear("fc", flat, 2, true).unwrap();
        b.output(fc, 1.0, false);
        let source = b.finish().unwrap();
        let folded = fold_batch_norms(&source);
        assert_eq!(folded.fused_activations, 1, "only silu after the biased convolution read by it alone");
        let described: Vec<String> = folded.graph.nodes.iter().map(|n| n.op.describe()).collect();
        assert!(described.contains(&"conv 1x1/1 +silu".to_string()), "{described:?}");
        assert_eq!(count(&folded.graph, |op| matches!(op, Op::Activation(_))), 2);
    }
}
