//! The files of a run directory besides the checkpoint: history.csv and the curves (rewritten
//! after every epoch, so an interrupted run keeps them), and at the end metrics.json,
//! confusion.csv and the confusion heat map.

use crate::error::Result;
use crate::train::config::TrainConfig;
use crate::train::files::write_atomic;
use crate::train::history::{confusion_csv, history_csv, EpochRecord};
use crate::train::metrics::EvalMetrics;
use crate::train::plot::{confusion_heatmap, line_chart, Series};
use serde::Serialize;
use std::path::Path;

const TRAIN_COLOR: &str = "#1f77b4";
const VAL_COLOR: &str = "#ff7f0e";
const TOP5_COLOR: &str = "#2ca02c";

/// history.csv, loss.svg and accuracy.svg from the epochs so far.
pub fn write_history(dir: &Path, records: &[EpochRecord]) -> Result<()> {
    write_atomic(&dir.join("history.csv"), history_csv(records).as_bytes())?;
    let column = |f: fn(&EpochRecord) -> f64| records.iter().map(f).collect::<Vec<f64>>();
    let loss = line_chart(
        "Loss",
        "cross-entropy",
        &[
            Series { label: "train", values: column(|r| r.train_loss), color: TRAIN_COLOR },
            Series { label: "validation", values: column(|r| r.val_loss), color: VAL_COLOR },
        ],
    );
    write_atomic(&dir.join("loss.svg"), loss.as_bytes())?;
    let accuracy = line_chart(
        "Accuracy",
        "accuracy",
        &[
            Series { label: "train", values: column(|r| r.train_acc), color: TRAIN_COLOR },
            Series { label: "val top-1", values: column(|r| r.val_top1), color: VAL_COLOR },
            Series { label: "val top-5", values: column(|r| r.val_top5), color: TOP5_COLOR },
        ],
    );
    write_atomic(&dir.join("accuracy.svg"), accuracy.as_bytes())
}

#[derive(Serialize)]
pub struct ClassMetrics {
    pub class: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: u64,
}

/// Totals of the model summary that metrics.json reports.
#[derive(Serialize)]
pub struct ModelTotals {
    pub trainable_params: usize,
    pub non_trainable_params: usize,
    pub total_params: usize,
    pub macs_per_image: u64,
}

/// metrics.json. Accuracies are fractions of 1; the `val_*` figures are computed on the test set
/// when the dataset has one (`evaluated_on` says which).
#[derive(Serialize)]
pub struct FinalMetrics<'a> {
    pub model: &'a str,
    pub dataset: &'a str,
    pub device: &'a str,
    pub evaluated_on: &'a str,
    pub val_top1: f64,
    pub val_top5: f64,
    pub val_loss: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub inference_ms_per_batch: f64,
    pub samples: usize,
    pub best_epoch: usize,
    pub best_val_top1: f64,
    pub epochs_run: usize,
    pub train_seconds: f64,
    pub stopped_early: bool,
    /// The most device bytes held at once during a training step (parameters, gradients,
    /// optimiser state, activations, workspace), over the steps this process ran; None when it
    /// ran none (a resumed run that had finished its epochs).
    pub peak_memory_bytes: Option<usize>,
    pub per_class: Vec<ClassMetrics>,
    pub confusion_matrix: Vec<Vec<u64>>,
    pub confusion_matrix_normalised: Vec<Vec<f64>>,
    pub model_summary: ModelTotals,
    pub config: &'a TrainConfig,
}

/// Per-class figures and the confusion matrix as rows, for metrics.json.
pub fn class_breakdown(m: &EvalMetrics, class_names: &[String]) -> (Vec<ClassMetrics>, Vec<Vec<u64>>, Vec<Vec<f64>>) {
    let c = &m.confusion;
    let k = c.classes();
    let per_class = (0..k)
        .map(|i| ClassMetrics {
            class: class_names.get(i).cloned().unwrap_or_else(|| i.to_string()),
            precision: c.precision(i),
            recall: c.recall(i),
            f1: c.f1(i),
            support: (0..k).map(|p| c.count(i, p)).sum(),
        })
        .collect();
    let counts = c.counts().chunks(k.max(1)).map(<[u64]>::to_vec).collect();
    let normalised = c.row_normalised().chunks(k.max(1)).map(<[f64]>::to_vec).collect();
    (per_class, counts, normalised)
}

/// metrics.json, confusion.csv and confusion.svg.
pub fn write_final(dir: &Path, metrics: &FinalMetrics, eval: &EvalMetrics, class_names: &[String]) -> Result<()> {
    let json = serde_json::to_string_pretty(metrics).expect("metrics serialise");
    write_atomic(&dir.join("metrics.json"), json.as_bytes())?;
    write_atomic(&dir.join("confusion.csv"), confusion_csv(&eval.confusion, class_names).as_bytes())?;
    let title = format!("Confusion matrix ({} set, top-1 {:.2}%)", metrics.evaluated_on, eval.top1 * 100.0);
    write_atomic(&dir.join("confusion.svg"), confusion_heatmap(&title, &eval.confusion, class_names).as_bytes())
}
