//! Channels-last runs: the graph rewritten so its image tensors are NHWC between one conversion
//! where the input batch enters and one before each flatten or linear layer that reads an image
//! tensor (their weights take PyTorch's C, H, W feature order). Every other op reads its inputs
//! in the graph's layout (`ops::node::ForwardCtx::layout`). Parameters keep their ids and
//! PyTorch's order, so the rewritten graph trains, saves and loads the same parameters.

use super::{Graph, GraphOutput, Node, NodeId};
use crate::ops::{Op, Relayout};
use crate::shape::Layout;

/// Whether `op` reads its input as a flat feature vector in NCHW order.
fn reads_features(op: &Op) -> bool {
    matches!(op, Op::Flatten(_) | Op::Linear(_))
}

/// Whether a value of this per-sample shape changes when its channels move last: an image with
/// more than one pixel (a [C, 1, 1] tensor is the same either way).
fn order_matters(shape: &[usize]) -> bool {
    matches!(*shape, [_, h, w] if h * w > 1)
}

/// `source` rewritten to run channels-last (itself if it already does).
pub fn channels_last(source: &Graph) -> Graph {
    if source.layout == Layout::Nhwc {
        return source.clone();
    }
    let input = &source.nodes[0];
    let mut nodes: Vec<Node> = vec![
        input.clone(),
        Node { name: "input.channels_last".into(), op: Op::Relayout(Relayout { to: Layout::Nhwc }), inputs: vec![0], shape: input.shape.clone() },
    ];
    // Where each source node's value lives in the new graph (NHWC for images), and, for the
    // images feature readers need, where its NCHW copy lives (the input itself for the input).
    let mut new_id: Vec<NodeId> = vec![1; source.nodes.len()];
    let mut channels_first: Vec<Option<NodeId>> = vec![None; source.nodes.len()];
    channels_first[0] = Some(0);
    for (id, node) in source.nodes.iter().enumerate().skip(1) {
        let mut inputs = Vec::with_capacity(node.inputs.len());
        for &j in &node.inputs {
            let shape = &source.nodes[j].shape;
            if !(reads_features(&node.op) && order_matters(shape)) {
                inputs.push(new_id[j]);
                continue;
            }
            let converted = *channels_first[j].get_or_insert_with(|| {
                let name = format!("{}.channels_first", source.nodes[j].name);
                let op = Op::Relayout(Relayout { to: Layout::Nchw });
                nodes.push(Node { name, op, inputs: vec![new_id[j]], shape: shape.clone() });
                nodes.len() - 1
            });
            inputs.push(converted);
        }
        new_id[id] = nodes.len();
        nodes.push(Node { inputs, ..node.clone() });
    }
    let outputs = source.outputs.iter().map(|o| GraphOutput { node: new_id[o.node], ..o.clone() }).collect();
    Graph { name: source.name.clone(), nodes, params: source.params.clone(), outputs, layout: Layout::Nhwc }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::GraphBuilder;
    use crate::ops::{Activation, ConvCfg, NodeOp};

    #[test]
    fn conversions_sit_where_images_enter_and_become_features() {
        let mut b = GraphBuilder::new("t", &[3, 6, 6]);
        let conv = b.conv2d("conv", b.input(), ConvCfg::new(4, 3)).unwrap();
        let relu = b.activation("relu", conv, Activation::Relu);
        // Two feature readers of one image share one conversion.
        let flat = b.flatten("flat", relu);
        let fc = b.linear("fc", flat, 2, true).unwrap();
        let aux = b.linear("aux", relu, 2, false).unwrap();
        // A [C, 1, 1] image needs none.
        let pool = b.adaptive_avg_pool2d("pool", relu, (1, 1)).unwrap();
        let pooled = b.flatten("pooled", pool);
        let head = b.linear("head", pooled, 2, false).unwrap();
        let sum = b.add("sum", fc, head).unwrap();
        b.output(sum, 1.0, false);
        b.output(aux, 0.4, true);
        let source = b.finish().unwrap();

        let nhwc = channels_last(&source);
        assert_eq!(nhwc.layout, Layout::Nhwc);
        assert_eq!(nhwc.params, source.params);
        let described: Vec<(String, Vec<NodeId>)> = nhwc.nodes.iter().map(|n| (n.op.describe(), n.inputs.clone())).collect();
        let expected: Vec<(&str, Vec<NodeId>)> = vec![
            ("input", vec![]),
            ("to nhwc", vec![0]),
            ("conv 3x3/1", vec![1]),
            ("relu", vec![2]),
            ("to nchw", vec![3]),
            ("flatten", vec![4]),
            ("linear", vec![5]),
            ("linear", vec![4]),
            ("adaptive avgpool 1x1", vec![3]),
            ("flatten", vec![8]),
            ("linear", vec![9]),
            ("add", vec![6, 10]),
        ];
        let expected: Vec<(String, Vec<NodeId>)> = expected.into_iter().map(|(d, i)| (d.to_string(), i)).collect();
        assert_eq!(described, expected);
        assert_eq!(nhwc.outputs.iter().map(|o| o.node).collect::<Vec<_>>(), vec![11, 7]);
        assert_eq!(channels_last(&nhwc), nhwc, "a channels-last graph stays as it is");
    }
}
