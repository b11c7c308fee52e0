//! Weights from elsewhere: a PyTorch/torchvision `state_dict` read from a safetensors file or
//! from the zip archive `torch.save` writes (through a restricted unpickler that only builds
//! tensors and never runs anything), and its loading into a model by parameter name, reported as
//! PyTorch's `load_state_dict(strict=False)` reports (missing, unexpected, misshapen keys); and
//! a model's parameters written back as a torchvision state_dict, or with its evaluation graph
//! as an ONNX model.

mod export;
mod load;
pub mod onnx;
mod pickle;
mod pth;
mod safetensors_file;

pub use export::torchvision_safetensors;
pub use load::{load_state_dict, LoadReport, ShapeMismatch};

use crate::error::{Error, Result};
use std::path::Path;

/// A host tensor in f32.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// How a stored tensor's elements are encoded (little-endian); every type reads as f32.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ElementType {
    F32,
    F64,
    F16,
    BF16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl ElementType {
    fn size(self) -> usize {
        match self {
            ElementType::F64 | ElementType::I64 => 8,
            ElementType::F32 | ElementType::I32 => 4,
            ElementType::F16 | ElementType::BF16 | ElementType::I16 => 2,
            ElementType::I8 | ElementType::U8 | ElementType::Bool => 1,
        }
    }

    /// The values of `bytes` (a whole number of elements) as f32.
    fn to_f32(self, bytes: &[u8]) -> Vec<f32> {
        let elements = bytes.chunks_exact(self.size());
        match self {
            ElementType::F32 => elements.map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect(),
            ElementType::F64 => elements.map(|b| f64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
            ElementType::F16 => elements.map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            ElementType::BF16 => elements.map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
            ElementType::I64 => elements.map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
            ElementType::I32 => elements.map(|b| i32::from_le_bytes(b.try_into().unwrap()) as f32).collect(),
            ElementType::I16 => elements.map(|b| i16::from_le_bytes([b[0], b[1]]) as f32).collect(),
            ElementType::I8 => elements.map(|b| b[0] as i8 as f32).collect(),
            ElementType::U8 | ElementType::Bool => elements.map(|b| b[0] as f32).collect(),
        }
    }
}

/// The first bytes of every zip archive (a local file header).
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// How a pre-1.6 `torch.save` file starts: a protocol-2 pickle of its magic number, a long.
const LEGACY_TORCH_MAGIC: &[u8] = b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19";

/// Reads the tensors of a state_dict file in file order, every element type converted to f32:
/// a PyTorch `.pth`/`.pt` (the zip `torch.save` writes) or a safetensors file.
pub fn read_state_dict(path: &Path) -> Result<Vec<NamedTensor>> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if bytes.starts_with(ZIP_MAGIC) {
        pth::read(path, &bytes)
    } else if bytes.starts_with(LEGACY_TORCH_MAGIC) {
        Err(Error::data(
            path,
            "is in the pre-1.6 torch.save format; re-save it with a current PyTorch: torch.save(torch.load(f), f)",
        ))
    } else {
        safetensors_file::read(path, &bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn narrow_and_wide_types_read_as_f32() {
        let f16 = half::f16::from_f32(-1.5).to_le_bytes();
        let bf16 = half::bf16::from_f32(3.0).to_le_bytes();
        assert_eq!(ElementType::F16.to_f32(&f16), vec![-1.5]);
        assert_eq!(ElementType::BF16.to_f32(&bf16), vec![3.0]);
        assert_eq!(ElementType::F64.to_f32(&0.25f64.to_le_bytes()), vec![0.25]);
        assert_eq!(ElementType::I64.to_f32(&(-7i64).to_le_bytes()), vec![-7.0]);
        assert_eq!(ElementType::I8.to_f32(&[0xff]), vec![-1.0]);
    }
}
