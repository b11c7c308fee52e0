//! One evaluation pass of a model over an image set: eval-mode forward passes (no tape), with
//! the loss, top-1/top-5, confusion matrix and inference time per batch.

use crate::data::{ImageSet, Loader};
use crate::error::{Error, Result};
use crate::exec::{Batch, Executor};
use crate::ops::Backend;
use crate::train::metrics::{EvalAccumulator, EvalMetrics};
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
    let mut acc = EvalAccumulator::new(classes);
    for batch in loader {
        if let Some(&bad) = batch.labels.iter().find(|&&l| l as usize >= classes) {
            return Err(Error::config(format!(
                "the data has class {bad} but the model has {classes} classes; evaluate on the dataset it was trained on"
            )));
        }
        let start = Instant::now();
        let logits = ex.infer(Batch::HostF32(&batch.x))?;
        acc.add_batch(&logits, &batch.labels, start.elapsed().as_secs_f64());
    }
    Ok(acc.finish())
}
