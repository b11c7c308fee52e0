//! A state_dict saved as safetensors (`safetensors.torch.save_file`), in any of the element types
//! a model's tensors use.

use super::{ElementType, NamedTensor};
use crate::error::{Error, Result};
use safetensors::tensor::{Dtype, SafeTensors};
use std::path::Path;

fn element_type(dtype: Dtype) -> Option<ElementType> {
    Some(match dtype {
        Dtype::F32 => ElementType::F32,
        Dtype::F64 => ElementType::F64,
        Dtype::F16 => ElementType::F16,
        Dtype::BF16 => ElementType::BF16,
        Dtype::I64 => ElementType::I64,
        Dtype::I32 => ElementType::I32,
        Dtype::I16 => ElementType::I16,
        Dtype::I8 => ElementType::I8,
        Dtype::U8 => ElementType::U8,
        Dtype::BOOL => ElementType::Bool,
        _ => return None,
    })
}

/// The tensors of a safetensors file by name (its header is an unordered JSON object), as f32.
pub fn read(path: &Path, bytes: &[u8]) -> Result<Vec<NamedTensor>> {
    let file = SafeTensors::deserialize(bytes).map_err(|e| {
        Error::data(path, format!("is neither a PyTorch .pth/.pt archive nor a safetensors file ({e}); is it truncated?"))
    })?;
    let mut tensors = Vec::with_capacity(file.len());
    for (name, view) in file.iter() {
        let element = element_type(view.dtype())
            .ok_or_else(|| Error::data(path, format!("tensor {name} is {:?}, which is not a type model weights use", view.dtype())))?;
        let data = element.to_f32(view.data());
        tensors.push(NamedTensor { name: name.to_string(), shape: view.shape().to_vec(), data });
    }
    tensors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tensors)
}
