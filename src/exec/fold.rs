//! The values of a folded graph (`graph::fold`): each convolution's weights scaled per output
//! channel by its batch norm's gamma / sqrt(running_var + eps), and its bias
//! beta + (bias - running_mean) * that scale; computed once on the host in f64.

use super::ParamStore;
use crate::device::Device;
use crate::element::Element;
use crate::error::Result;
use crate::graph::fold::FoldedGraph;
use crate::graph::ParamId;

/// Rewrites `params` (the source graph's) into the folded graph's: folded weights in place, biases
/// replaced or appended in the folded graph's order.
pub fn fold_values<E: Element, B: Device<E>>(backend: &B, params: &mut ParamStore<E, B>, folded: &FoldedGraph) -> Result<()> {
    for fold in &folded.folds {
        let host = |params: &ParamStore<E, B>, id: ParamId| -> Result<Vec<f64>> {
            Ok(backend.download(params.value(id))?.into_iter().map(<E as Element>::to_f64).collect())
        };
        let bn = &fold.bn;
        let (gamma, beta) = (host(params, bn.gamma)?, host(params, bn.beta)?);
        let (mean, var) = (host(params, bn.running_mean)?, host(params, bn.running_var)?);
        let scale: Vec<f64> = gamma.iter().zip(&var).map(|(g, v)| g / (v + fold.eps).sqrt()).collect();
        let weight = host(params, fold.weight)?;
        let per_channel = weight.len() / scale.len();
        let weight: Vec<E> = weight
            .chunks(per_channel)
            .zip(&scale)
            .flat_map(|(row, s)| row.iter().map(move |w| <E as Element>::from_f64(w * s)))
            .collect();
        let source_bias = match fold.source_bias {
            Some(id) => host(params, id)?,
            None => vec![0.0; scale.len()],
        };
        let bias: Vec<E> = (0..scale.len()).map(|o| <E as Element>::from_f64(beta[o] + (source_bias[o] - mean[o]) * scale[o])).collect();
        *params.value_mut(fold.weight) = backend.upload(&weight)?;
        let bias = backend.upload(&bias)?;
        match fold.source_bias {
            Some(id) => *params.value_mut(id) = bias,
            None => {
                let id = params.push(folded.graph.params[fold.bias].clone(), bias)?;
                debug_assert_eq!(id, fold.bias, "new biases are appended in the folded graph's order");
            }
        }
    }
    Ok(())
}
