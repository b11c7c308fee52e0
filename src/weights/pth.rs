//! The zip archive `torch.save` writes (PyTorch >= 1.6): `<root>/data.pkl` (the pickled object),
//! `<root>/byteorder` and one file `<root>/data/<key>` per storage. Tensors are strided views of
//! those storages; each is copied out in its logical (row-major) order.

use super::pickle::{unpickle, StorageRef, TensorRef, Value};
use super::NamedTensor;
use crate::error::{Error, Result};
use std::collections::HashMap;
use std::io::{Cursor, Read};
use std::path::Path;

/// Keys under which training scripts commonly nest the model's state_dict in a checkpoint.
const NESTING_KEYS: &[&str] = &["state_dict", "model_state_dict", "model"];

type Archive<'a> = zip::ZipArchive<Cursor<&'a [u8]>>;

fn corrupt(path: &Path, problem: impl std::fmt::Display) -> Error {
    Error::data(path, format!("is not a readable PyTorch archive ({problem}); is the file truncated or corrupt?"))
}

fn read_entry(path: &Path, archive: &mut Archive, name: &str) -> Result<Vec<u8>> {
    let mut entry = archive.by_name(name).map_err(|e| corrupt(path, format!("{name}: {e}")))?;
    let mut bytes = Vec::new();
    entry.read_to_end(&mut bytes).map_err(|e| corrupt(path, format!("{name}: {e}")))?;
    Ok(bytes)
}

/// Reads the state_dict a `torch.save` archive holds, directly or nested in a checkpoint dict.
pub fn read(path: &Path, bytes: &[u8]) -> Result<Vec<NamedTensor>> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).map_err(|e| corrupt(path, e))?;
    let pickle_name = archive
        .file_names()
        .filter_map(|name| name.ok())
        .find(|name| name.ends_with("/data.pkl") && name.matches('/').count() == 1)
        .map(|name| name.to_string())
        .ok_or_else(|| Error::data(path, "is a zip archive but not one torch.save wrote (it has no <name>/data.pkl)"))?;
    let root = pickle_name.trim_end_matches("data.pkl").to_string();
    if let Ok(order) = read_entry(path, &mut archive, &format!("{root}byteorder")) {
        if order != b"little" {
            return Err(Error::data(path, "was saved on a big-endian machine; only little-endian archives are read"));
        }
    }
    let pickle = read_entry(path, &mut archive, &pickle_name)?;
    let object = unpickle(&pickle).map_err(|problem| Error::data(path, problem))?;
    let items = state_dict_items(object).map_err(|problem| Error::data(path, problem))?;
    let mut storages: HashMap<String, Vec<f32>> = HashMap::new();
    let mut tensors = Vec::with_capacity(items.len());
    for (name, tensor) in items {
        let key = &tensor.storage.key;
        if !storages.contains_key(key) {
            let values = storage_values(path, &mut archive, &root, &tensor.storage)?;
            storages.insert(key.clone(), values);
        }
        let data = gather(&storages[key], &tensor).map_err(|problem| Error::data(path, format!("tensor {name}: {problem}")))?;
        tensors.push(NamedTensor { name, shape: tensor.size, data });
    }
    Ok(tensors)
}

/// The name -> tensor items of the pickled object: a state_dict, or a dict holding one under a
/// usual key (other entries such as the epoch or optimiser state are ignored then).
fn state_dict_items(object: Value) -> std::result::Result<Vec<(String, TensorRef)>, String> {
    let Value::Dict(items) = object else {
        return Err("holds no state_dict (its pickle is not a dict); save model.state_dict()".into());
    };
    let nested = items.iter().find_map(|(k, v)| match (k, v) {
        (Value::Str(k), Value::Dict(inner)) if NESTING_KEYS.contains(&k.as_str()) => Some(inner.clone()),
        _ => None,
    });
    let items = match nested {
        Some(inner) if !items.iter().all(|(_, v)| matches!(v, Value::Tensor(_))) => inner,
        _ => items,
    };
    items
        .into_iter()
        .map(|(k, v)| match (k, v) {
            (Value::Str(name), Value::Tensor(t)) => Ok((name, t)),
            (Value::Str(name), other) => {
                Err(format!("holds no state_dict of tensors: {name} is {}; save model.state_dict()", kind(&other)))
            }
            (k, _) => Err(format!("holds no state_dict: it has a key {k:?} that is not a string")),
        })
        .collect()
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Dict(_) => "a dict",
        Value::List(_) | Value::Tuple(_) => "a sequence",
        Value::Int(_) | Value::Float(_) | Value::Bool(_) => "a number",
        Value::Str(_) => "a string",
        _ => "not a tensor",
    }
}

/// A storage's elements as f32.
fn storage_values(path: &Path, archive: &mut Archive, root: &str, storage: &StorageRef) -> Result<Vec<f32>> {
    let name = format!("{root}data/{}", storage.key);
    let bytes = read_entry(path, archive, &name)?;
    let needed = storage.numel.checked_mul(storage.element.size()).filter(|&n| n <= bytes.len()).ok_or_else(|| {
        corrupt(path, format!("storage {name} holds {} bytes, fewer than {} elements of {:?}", bytes.len(), storage.numel, storage.element))
    })?;
    Ok(storage.element.to_f32(&bytes[..needed]))
}

/// The tensor's elements in row-major order, read through its offset and strides.
fn gather(storage: &[f32], t: &TensorRef) -> std::result::Result<Vec<f32>, String> {
    let numel = t.size.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or("its size overflows")?;
    if numel == 0 {
        return Ok(Vec::new());
    }
    // The furthest element the view reaches must lie inside the storage.
    let last = t.size.iter().zip(&t.stride).try_fold(t.offset, |at, (&d, &s)| at.checked_add((d - 1).checked_mul(s)?));
    if !last.is_some_and(|last| last < storage.len()) {
        return Err(format!(
            "size {:?}, stride {:?} and offset {} reach past its storage of {} elements",
            t.size,
            t.stride,
            t.offset,
            storage.len()
        ));
    }
    let mut out = Vec::with_capacity(numel);
    let mut index = vec![0usize; t.size.len()];
    for _ in 0..numel {
        out.push(storage[t.offset + index.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<usize>()]);
        // Odometer increment of the multi-index, last dimension fastest.
        for dim in (0..index.len()).rev() {
            index[dim] += 1;
            if index[dim] < t.size[dim] {
                break;
            }
            index[dim] = 0;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::weights::ElementType;

    fn view(offset: usize, size: &[usize], stride: &[usize]) -> TensorRef {
        let storage = StorageRef { element: ElementType::F32, key: "0".into(), numel: 12 };
        TensorRef { storage, offset, size: size.to_vec(), stride: stride.to_vec() }
    }

    #[test]
    fn strided_views_read_in_row_major_order() {
        let storage: Vec<f32> = (0..12).map(|v| v as f32).collect();
        assert_eq!(gather(&storage, &view(0, &[2, 3], &[3, 1])).unwrap(), vec![0., 1., 2., 3., 4., 5.]);
        // A transposed 3x2 view of a row-major 2x3 block starting at element 5.
        assert_eq!(gather(&storage, &view(5, &[3, 2], &[1, 3])).unwrap(), vec![5., 8., 6., 9., 7., 10.]);
        assert_eq!(gather(&storage, &view(11, &[], &[])).unwrap(), vec![11.]);
        assert_eq!(gather(&storage, &view(3, &[0, 4], &[4, 1])).unwrap(), Vec::<f32>::new());
        let err = gather(&storage, &view(6, &[2, 4], &[4, 1])).unwrap_err();
        assert!(err.contains("reach past its storage of 12"), "{err}");
        assert!(gather(&storage, &view(0, &[2, usize::MAX], &[1, usize::MAX])).is_err());
    }
}
