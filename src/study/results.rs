//! What a study knows of a finished run, read from its directory as `ferronet train` wrote it
//! (metrics.json, history.csv) plus inference.json, the study's own timing of the trained model
//! on batches of 16.

use crate::bench::timing::{time_host, Timing};
use crate::device::DeviceRequest;
use crate::error::{Error, Result};
use crate::exec::Batch;
use crate::ops::Backend;
use crate::rng::Rng;
use crate::study::spec::PlannedRun;
use crate::train::checkpoint;
use crate::train::config::TrainConfig;
use crate::train::history::{parse_history_csv, EpochRecord};
use crate::train::metrics::ConfusionMatrix;
use crate::train::pretrained::RunnableModel;
use crate::train::session::{on_device, OnBackend};
use crate::train::trainer::checkpoint_path;
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// The batch size inference is timed at.
pub const INFERENCE_BATCH: usize = 16;
/// Untimed batches before the timed ones (kernel compilation, caches, the allocator).
const INFERENCE_WARMUP: usize = 2;
/// The timed batches: as many as fit in about this many seconds, within these bounds.
const INFERENCE_BUDGET_S: f64 = 2.0;
const INFERENCE_MIN_REPS: usize = 3;
const INFERENCE_MAX_REPS: usize = 50;

pub const INFERENCE_FILE: &str = "inference.json";
pub const METRICS_FILE: &str = "metrics.json";

/// inference.json: the trained model's eval-mode forward pass on a batch already on the device
/// (batch norms folded, as eval and predict run it), median of the timed batches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InferenceTiming {
    pub batch: usize,
    pub ms_per_batch: f64,
    pub ms_per_image: f64,
    pub timed_batches: usize,
    pub device: String,
}

#[derive(Deserialize)]
struct ClassEntry {
    class: String,
}

#[derive(Deserialize)]
struct ModelTotals {
    total_params: usize,
    macs_per_image: u64,
}

/// The part of a run's metrics.json a comparison uses.
#[derive(Deserialize)]
struct MetricsFile {
    device: String,
    evaluated_on: String,
    val_top1: f64,
    val_top5: f64,
    macro_precision: f64,
    macro_recall: f64,
    macro_f1: f64,
    best_epoch: usize,
    /// Absent in runs trained before ferronet recorded it.
    #[serde(default)]
    peak_memory_bytes: Option<usize>,
    per_class: Vec<ClassEntry>,
    confusion_matrix: Vec<Vec<u64>>,
    model_summary: ModelTotals,
    config: TrainConfig,
}

/// One finished run of a study, as its row, curves and confusion matrix need it.
pub struct RunResult {
    pub run: PlannedRun,
    pub parameters: usize,
    pub macs: u64,
    /// "test" or "validation": the set the final metrics are on.
    pub evaluated_on: String,
    pub top1: f64,
    pub top5: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub best_epoch: usize,
    pub peak_memory_bytes: Option<usize>,
    pub device: String,
    pub history: Vec<EpochRecord>,
    pub class_names: Vec<String>,
    pub confusion: ConfusionMatrix,
    pub inference: InferenceTiming,
}

impl RunResult {
    /// Mean wall time of an epoch (training and validation).
    pub fn seconds_per_epoch(&self) -> f64 {
        mean(self.history.iter().map(|r| r.epoch_seconds))
    }

    /// Mean training throughput over the epochs.
    pub fn train_images_per_second(&self) -> f64 {
        mean(self.history.iter().map(|r| r.train_images_per_second))
    }
}

fn mean(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let n = values.len();
    if n == 0 {
        f64::NAN
    } else {
        values.sum::<f64>() / n as f64
    }
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::data(path, format!("cannot be read ({e}); delete the run's directory to train it again")))
}

/// The configuration a finished run was trained with (its metrics.json).
pub fn finished_config(dir: &Path) -> Result<TrainConfig> {
    Ok(read_json::<MetricsFile>(&dir.join(METRICS_FILE))?.config)
}

/// Reads a finished, timed run from its directory.
pub fn read_run(run: &PlannedRun) -> Result<RunResult> {
    let dir = run.dir();
    let metrics: MetricsFile = read_json(&dir.join(METRICS_FILE))?;
    let inference: InferenceTiming = read_json(&dir.join(INFERENCE_FILE))?;
    let history_path = dir.join("history.csv");
    let text = std::fs::read_to_string(&history_path).map_err(|e| Error::io(&history_path, e))?;
    let history = parse_history_csv(&text).map_err(|problem| Error::data(&history_path, problem))?;
    let classes = metrics.confusion_matrix.len();
    let counts: Vec<u64> = metrics.confusion_matrix.iter().flatten().copied().collect();
    if counts.len() != classes * classes {
        return Err(Error::data(dir.join(METRICS_FILE), "its confusion matrix is not square"));
    }
    Ok(RunResult {
        run: run.clone(),
        parameters: metrics.model_summary.total_params,
        macs: metrics.model_summary.macs_per_image,
        evaluated_on: metrics.evaluated_on,
        top1: metrics.val_top1,
        top5: metrics.val_top5,
        macro_precision: metrics.macro_precision,
        macro_recall: metrics.macro_recall,
        macro_f1: metrics.macro_f1,
        best_epoch: metrics.best_epoch,
        peak_memory_bytes: metrics.peak_memory_bytes,
        device: metrics.device,
        history,
        class_names: metrics.per_class.into_iter().map(|c| c.class).collect(),
        confusion: ConfusionMatrix::from_counts(classes, counts),
        inference,
    })
}

/// Times the run's trained model (its checkpoint) on `device`.
pub fn time_inference(dir: &Path, device: DeviceRequest) -> Result<InferenceTiming> {
    let (tensors, meta) = checkpoint::load(&checkpoint_path(dir))?;
    on_device(device, InferenceTimer { model: RunnableModel::from_checkpoint(&meta, tensors) })
}

struct InferenceTimer {
    model: RunnableModel,
}

impl OnBackend for InferenceTimer {
    type Output = InferenceTiming;

    fn run<B: Backend<f32> + Clone>(self, backend: B, device: String) -> Result<InferenceTiming> {
        let mut ex = self.model.restore_for_inference(backend, true, None)?;
        let per_image: usize = self.model.input.iter().product();
        let mut rng = Rng::new(0);
        let images: Vec<f32> = (0..INFERENCE_BATCH * per_image).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
        let resident = ex.backend().upload(&images)?;
        let mut infer = || {
            let batch = Batch::Device(ex.backend().copy_buf(&resident)?);
            ex.infer(batch).map(drop)
        };
        let warmup_start = Instant::now();
        for _ in 0..INFERENCE_WARMUP {
            infer()?;
        }
        let warm_batch_s = warmup_start.elapsed().as_secs_f64() / INFERENCE_WARMUP as f64;
        let reps = ((INFERENCE_BUDGET_S / warm_batch_s.max(1e-9)) as usize).clamp(INFERENCE_MIN_REPS, INFERENCE_MAX_REPS);
        let Timing { median_s, reps, .. } = time_host(0, reps, infer)?;
        Ok(InferenceTiming {
            batch: INFERENCE_BATCH,
            ms_per_batch: median_s * 1e3,
            ms_per_image: median_s * 1e3 / INFERENCE_BATCH as f64,
            timed_batches: reps,
            device,
        })
    }
}
