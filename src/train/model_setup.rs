//! Adjustments of a built model for a training run: `--dropout` replaces every dropout
//! probability, `--freeze-all-but K` leaves only the last K parameterised layers trainable,
//! `--freeze-backbone` only the classifier.

use crate::error::{Error, Result};
use crate::graph::{Graph, Op, ParamId};
use crate::ops::{Dropout, NodeOp};

/// Sets the probability of every dropout layer to `p`; returns how many layers changed.
pub fn override_dropout(graph: &mut Graph, p: f64) -> Result<usize> {
    let mut changed = 0;
    for node in &mut graph.nodes {
        if let Op::Dropout(layer) = &mut node.op {
            *layer = Dropout::new(p)?;
            changed += 1;
        }
    }
    Ok(changed)
}

/// Freezes every parameter except those of the last `k` layers that have parameters (in
/// topological order, i.e. the layers nearest the output). Running statistics stay state either
/// way. Returns the names of the layers left trainable.
pub fn freeze_all_but(graph: &mut Graph, k: usize) -> Result<Vec<String>> {
    let layers: Vec<usize> = (0..graph.nodes.len()).filter(|&i| !graph.nodes[i].op.params().is_empty()).collect();
    if k > layers.len() {
        return Err(Error::config(format!(
            "--freeze-all-but {k}: {} has only {} layers with parameters",
            graph.name,
            layers.len()
        )));
    }
    let keep = &layers[layers.len() - k..];
    for p in &mut graph.params {
        p.trainable = false;
    }
    for &node in keep {
        for id in graph.nodes[node].op.params() {
            let param = &mut graph.params[id];
            param.trainable = !param.kind.is_state();
        }
    }
    Ok(keep.iter().map(|&i| graph.nodes[i].name.clone()).collect())
}

/// The parameters of the layers whose outputs are the logits: the classifier, and the last
/// layers of auxiliary heads.
pub fn classifier_params(graph: &Graph) -> Vec<ParamId> {
    graph.outputs.iter().flat_map(|o| graph.nodes[o.node].op.params()).collect()
}

/// Freezes every parameter but the classifier's (a linear probe on a pretrained backbone).
pub fn freeze_backbone(graph: &mut Graph) {
    let keep = classifier_params(graph);
    for (id, p) in graph.params.iter_mut().enumerate() {
        p.trainable = keep.contains(&id) && !p.kind.is_state();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{build, ModelOptions};

    #[test]
    fn dropout_override_and_freezing_touch_the_right_layers() {
        let mut g = build("small_cnn", &ModelOptions::new(10, [1, 28, 28])).unwrap();
        assert_eq!(override_dropout(&mut g, 0.1).unwrap(), 2);
        assert!(g.nodes.iter().all(|n| !matches!(n.op, Op::Dropout(d) if d.p() != 0.1)));

        let kept = freeze_all_but(&mut g, 2).unwrap();
        assert_eq!(kept, vec!["fc1".to_string(), "fc2".to_string()]);
        let trainable: Vec<&str> = g.params.iter().filter(|p| p.trainable).map(|p| p.name.as_str()).collect();
        assert_eq!(trainable, vec!["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);

        let err = freeze_all_but(&mut g, 99).unwrap_err().to_string();
        assert!(err.contains("only 6 layers"), "{err}");

        freeze_backbone(&mut g);
        let trainable: Vec<&str> = g.params.iter().filter(|p| p.trainable).map(|p| p.name.as_str()).collect();
        assert_eq!(trainable, vec!["fc2.weight", "fc2.bias"]);
        // googlenet's classifier includes its auxiliary heads' last layers.
        let g = build("googlenet", &ModelOptions::new(10, [3, 64, 64])).unwrap();
        let names: Vec<&str> = classifier_params(&g).into_iter().map(|id| g.params[id].name.as_str()).collect();
        assert_eq!(names.len(), 6, "{names:?}");
        assert!(names.contains(&"fc.weight") && names.contains(&"aux1.fc2.bias"), "{names:?}");
    }
}
