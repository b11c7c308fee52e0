//! checkpoint.safetensors: the model's parameters (torchvision-style names, BN running statistics
//! included), the optimiser's state under `optimizer.`-prefixed names, and in the metadata, one
//! JSON value per field of [`CheckpointMeta`] (model, classes, mean/std, configuration, epoch,
//! RNG state, schedule, history) so `--resume`, `eval` and `predict` rebuild everything.

use crate::error::{Error, Result};
use crate::train::config::TrainConfig;
use crate::train::files::write_atomic;
use crate::train::history::EpochRecord;
use crate::train::loss_scale::LossScaler;
use crate::train::schedule::LrSchedule;
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub use crate::weights::NamedTensor;

/// Bumped when the layout changes incompatibly.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    pub format_version: u32,
    pub model: String,
    pub class_names: Vec<String>,
    /// The model's input [C, H, W].
    pub input: [usize; 3],
    /// Per-channel normalisation in [0, 1] pixel units.
    pub mean: Vec<f32>,
    pub std: Vec<f32>,
    pub config: TrainConfig,
    /// Epochs completed.
    pub epochs_done: usize,
    /// The trainer's RNG (one draw per epoch seeds its shuffling and augmentation).
    pub rng_state: [u64; 4],
    /// The executor's RNG (one dropout seed per step).
    pub executor_rng_state: [u64; 4],
    /// Optimiser steps taken per parameter (Adam's bias correction needs them).
    pub optimizer_steps: Vec<(String, u64)>,
    pub schedule: LrSchedule,
    pub history: Vec<EpochRecord>,
    /// Set when the run was interrupted inside epoch `epochs_done + 1`.
    pub partial_epoch: Option<PartialEpoch>,
    /// fp16's loss scaling where the run stopped (None for other precisions and older files).
    #[serde(default)]
    pub loss_scaler: Option<LossScaler>,
}

/// How far an interrupted epoch got, so a resumed run replays it exactly.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    /// Seed of the epoch's shuffling and augmentation.
    pub seed: u64,
    pub steps_done: usize,
    /// Sums over the steps done: loss x images, correct predictions, images, skipped steps.
    pub loss_sum: f64,
    pub correct: usize,
    pub seen: usize,
    pub skipped_steps: usize,
    /// Steps fp16's loss scaling skipped for an overflow (`train::loss_scale`).
    #[serde(default)]
    pub overflow_skips: usize,
    /// Wall time spent in those steps.
    pub seconds: f64,
}

fn meta_error(path: &Path, problem: impl std::fmt::Display) -> Error {
    Error::data(path, format!("not a ferronet checkpoint ({problem}); train one with `ferronet train --out DIR`"))
}

/// Writes the checkpoint atomically (temporary file, fsync, rename).
pub fn save(path: &Path, tensors: &[NamedTensor], meta: &CheckpointMeta) -> Result<()> {
    let bytes: Vec<Vec<u8>> = tensors.iter().map(|t| t.data.iter().flat_map(|v| v.to_le_bytes()).collect()).collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|(t, b)| {
            TensorView::new(Dtype::F32, t.shape.clone(), b)
                .map(|v| (t.name.clone(), v))
                .map_err(|e| Error::shape(format!("checkpoint tensor {}: {e}", t.name)))
        })
        .collect::<Result<Vec<_>>>()?;
    let fields = match serde_json::to_value(meta).expect("checkpoint metadata serialises") {
        serde_json::Value::Object(fields) => fields,
        _ => unreachable!("a struct serialises to a JSON object"),
    };
    let metadata: HashMap<String, String> = fields.into_iter().map(|(k, v)| (k, v.to_string())).collect();
    let file = safetensors::serialize(views, Some(metadata))
        .map_err(|e| Error::data(path, format!("cannot encode the checkpoint: {e}")))?;
    write_atomic(path, &file)
}

/// Reads a checkpoint: its tensors in file order and its metadata.
pub fn load(path: &Path) -> Result<(Vec<NamedTensor>, CheckpointMeta)> {
    let file = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, header) = SafeTensors::read_metadata(&file).map_err(|e| meta_error(path, e))?;
    let fields = header.metadata().as_ref().ok_or_else(|| meta_error(path, "no metadata"))?;
    let object = fields
        .iter()
        .map(|(k, v)| serde_json::from_str(v).map(|v| (k.clone(), v)))
        .collect::<std::result::Result<serde_json::Map<String, serde_json::Value>, _>>()
        .map_err(|e| meta_error(path, e))?;
    let meta: CheckpointMeta = serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| meta_error(path, e))?;
    if meta.format_version != FORMAT_VERSION {
        return Err(Error::data(
            path,
            format!("checkpoint format {} is not the supported {FORMAT_VERSION}", meta.format_version),
        ));
    }
    let st = SafeTensors::deserialize(&file).map_err(|e| meta_error(path, e))?;
    let mut tensors = Vec::new();
    for (name, view) in st.tensors() {
        if view.dtype() != Dtype::F32 {
            return Err(Error::data(path, format!("tensor {name} is {:?}, expected F32", view.dtype())));
        }
        let data = view.data().chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        tensors.push(NamedTensor { name, shape: view.shape().to_vec(), data });
    }
    Ok((tensors, meta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::schedule::ScheduleKind;

    #[test]
    fn round_trip_keeps_tensors_and_metadata_exactly() {
        let config = TrainConfig { epochs: 4, lr: 0.1, ..TrainConfig::default() };
        let mut schedule = LrSchedule::new(ScheduleKind::Cosine, 0.1, 0, 4).unwrap();
        schedule.end_epoch(0, 0.5);
        let meta = CheckpointMeta {
            format_version: FORMAT_VERSION,
            model: "small_cnn".into(),
            class_names: vec!["zero".into(), "one".into()],
            input: [1, 28, 28],
            mean: vec![0.2860],
            std: vec![0.3530],
            config,
            epochs_done: 1,
            rng_state: [1, u64::MAX, 3, 0x9E37_79B9_7F4A_7C15],
            executor_rng_state: [5, 6, 7, 8],
            optimizer_steps: vec![("conv1.weight".into(), 17)],
            schedule,
            history: vec![],
            partial_epoch: Some(PartialEpoch { seed: u64::MAX - 1, steps_done: 3, loss_sum: 0.1 + 0.2, ..Default::default() }),
            loss_scaler: Some(LossScaler::new(8192.0, 2000)),
        };
        let tensors = vec![
            NamedTensor { name: "conv1.weight".into(), shape: vec![2, 1, 1, 1], data: vec![0.1, -3.5e-8] },
            NamedTensor { name: "optimizer.conv1.weight.momentum".into(), shape: vec![2], data: vec![f32::MIN, 1.0 / 3.0] },
        ];
        let dir = std::env::temp_dir().join(format!("ferronet-ckpt-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("checkpoint.safetensors");
        save(&path, &tensors, &meta).unwrap();
        let (got_tensors, got_meta) = load(&path).unwrap();
        let mut got_tensors = got_tensors;
        got_tensors.sort_by(|a, b| a.name.cmp(&b.name));
        assert_eq!(got_tensors, tensors);
        assert_eq!(got_meta, meta);

        std::fs::write(&path, b"\x08\0\0\0\0\0\0\0{}      ").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("not a ferronet checkpoint") && !err.contains('\n'), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
