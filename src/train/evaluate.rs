//! One evaluation pass of a model over an image set: eval-mode forward passes (no tape) whose
//! loss, top-1/top-5 and confusion counts accumulate on the device and are read once, at the end;
//! and the inference time per batch.

use crate::data::{ImageSet, Loader};
use crate::error::{Error, Result};
use crate::exec::{Batch, Executor};
use crate::ops::Backend;
use crate::train::metrics::EvalMetrics;
use std::sync::Arc;
use std::time::Instant;

/// How the images are normalised and batched for evaluation.
pub struct EvalSetup<'a> {
    pub mean: &'a [f32],
    pub std: &'a [f32],
    pub batch_size: usize,
    pub workers: usize,
}

pub fn evaluate<B: Backend<f32>>(ex: &mut Executor<f32, B>, set: Arc<ImageSet>, setup: &EvalSetup) -> Result<EvalMetrics> {
    let classes = ex.graph().num_classes();
    let loader = Loader::new(set, setup.mean, setup.std, setup.batch_size, false, None, 0, setup.workers)?;
    let mut acc = ex.eval_metrics()?;
    // Host time of the forward passes; on a GPU, where batches queue, the final read waits for
    // the device and is counted too.
    let mut seconds = 0.0;
    let mut batches = 0;
    for batch in loader {
        if let Some(&bad) = batch.labels.iter().find(|&&l| l as usize >= classes) {
            return Err(Error::config(format!(
                "the data has class {bad} but the model has {classes} classes; evaluate on the dataset it was trained on"
            )));
        }
        let start = Instant::now();
        ex.infer_accumulate(Batch::HostF32(&batch.x), &batch.labels, &mut acc)?;
        seconds += start.elapsed().as_secs_f64();
        batches += 1;
    }
    let start = Instant::now();
    let counts = ex.read_eval_metrics(&acc)?;
    seconds += start.elapsed().as_secs_f64();
    Ok(EvalMetrics::from_counts(counts, classes, batches, seconds))
}
