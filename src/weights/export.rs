//! A model's parameters written as a torchvision state_dict in safetensors, which
//! `model.load_state_dict(safetensors.torch.load_file(FILE))` accepts with strict=True.

use super::NamedTensor;
use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, TensorView};

/// The suffix of the running mean of a batch-norm layer, beside which torchvision's
/// BatchNorm2d keeps its step counter.
const RUNNING_MEAN: &str = ".running_mean";

/// The safetensors bytes of `tensors` (f32, under their torchvision-style names) plus, for each
/// batch-norm layer, the int64 scalar `num_batches_tracked` that strict loading requires, set to
/// `batches_tracked` (the training steps the running statistics saw).
pub fn torchvision_safetensors(tensors: &[NamedTensor], batches_tracked: i64) -> Result<Vec<u8>> {
    let mut entries: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for t in tensors {
        entries.push((t.name.clone(), Dtype::F32, t.shape.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect()));
        if let Some(layer) = t.name.strip_suffix(RUNNING_MEAN) {
            entries.push((format!("{layer}.num_batches_tracked"), Dtype::I64, vec![], batches_tracked.to_le_bytes().to_vec()));
        }
    }
    let views = entries
        .iter()
        .map(|(name, dtype, shape, bytes)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|view| (name.clone(), view))
                .map_err(|e| Error::shape(format!("tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize(views, None).map_err(|e| Error::shape(format!("cannot encode the state_dict: {e}")))
}
