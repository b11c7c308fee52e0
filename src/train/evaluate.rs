//! One evaluation pass of a model over an image set: eval-mode forward passes (no tape) whose
//! loss, top-1/top-5 and confusion counts accumulate on the device and are read once, at the end;
//! and the inference time per batch.

use crate::data::{ImageSet, Loader, Shard};
use crate::dist::ProcessGroup;
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
    evaluate_in_group(ex, set, setup, &ProcessGroup::alone())
}

/// `evaluate` split over the ranks of `group` (each rank a disjoint slice of the set, with the
/// same model), the counts summed over the ranks: every rank gets the whole set's metrics.
pub fn evaluate_in_group<B: Backend<f32>>(
    ex: &mut Executor<f32, B>,
    set: Arc<ImageSet>,
    setup: &EvalSetup,
    group: &ProcessGroup,
) -> Result<EvalMetrics> {
    let classes = ex.graph().num_classes();
    let shard = Shard::evaluation(group.rank(), group.world_size());
    let loader = Loader::sharded(set, setup.mean, setup.std, setup.batch_size, false, None, 0, setup.workers, shard)?;
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
    let mut counts = ex.read_eval_metrics(&acc)?;
    seconds += start.elapsed().as_secs_f64();
    if group.world_size() > 1 {
        // Counts below 2^53 add exactly in f64.
        let mut sums: Vec<f64> = [counts.loss_sum, counts.samples as f64, counts.top5_hits as f64]
            .into_iter()
            .chain(counts.confusion.iter().map(|&c| c as f64))
            .collect();
        group.all_reduce_sum(&mut sums)?;
        counts.loss_sum = sums[0];
        [counts.samples, counts.top5_hits] = [sums[1] as usize, sums[2] as usize];
        counts.confusion = sums[3..].iter().map(|&c| c as u64).collect();
    }
    Ok(EvalMetrics::from_counts(counts, classes, batches, seconds))
}
