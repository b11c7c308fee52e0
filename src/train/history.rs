//! What a run records: one [`EpochRecord`] per epoch, written as history.csv, as JSON lines for
//! `--log-json`, and the confusion matrix as confusion.csv.

use crate::train::metrics::ConfusionMatrix;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// One epoch of training. Accuracies are fractions of 1; epochs count from 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub lr: f64,
    pub train_loss: f64,
    pub train_acc: f64,
    pub val_loss: f64,
    pub val_top1: f64,
    pub val_top5: f64,
    pub val_macro_precision: f64,
    pub val_macro_recall: f64,
    pub val_macro_f1: f64,
    /// Steps skipped because their loss was NaN/inf (`--skip-nonfinite`).
    pub skipped_steps: usize,
    /// Steps fp16's dynamic loss scaling skipped because a gradient overflowed.
    #[serde(default)]
    pub overflow_skips: usize,
    /// The loss scale at the end of the epoch (1 without loss scaling).
    #[serde(default = "no_loss_scale")]
    pub loss_scale: f64,
    /// Wall time of the epoch's training steps and its validation pass.
    pub epoch_seconds: f64,
    /// Training images per second over the epoch's steps.
    pub train_images_per_second: f64,
    /// Mean wall time of one validation forward pass.
    pub inference_ms_per_batch: f64,
}

/// Records written before loss scaling existed.
fn no_loss_scale() -> f64 {
    1.0
}

/// The columns of history.csv, in order. Files written before the last two existed (14
/// columns) read with no overflow skips and a loss scale of 1.
pub const HISTORY_COLUMNS: [&str; 16] = [
    "epoch",
    "lr",
    "train_loss",
    "train_acc",
    "val_loss",
    "val_top1",
    "val_top5",
    "val_macro_precision",
    "val_macro_recall",
    "val_macro_f1",
    "skipped_steps",
    "epoch_seconds",
    "train_images_per_second",
    "inference_ms_per_batch",
    "overflow_skips",
    "loss_scale",
];

/// How many columns history.csv had before `overflow_skips` and `loss_scale`.
const OLD_COLUMNS: usize = 14;

impl EpochRecord {
    /// The record's values in [`HISTORY_COLUMNS`] order. Shortest round-trip formatting, so the
    /// CSV holds exactly the values computed.
    fn csv_row(&self) -> String {
        format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
            self.epoch,
            self.lr,
            self.train_loss,
            self.train_acc,
            self.val_loss,
            self.val_top1,
            self.val_top5,
            self.val_macro_precision,
            self.val_macro_recall,
            self.val_macro_f1,
            self.skipped_steps,
            self.epoch_seconds,
            self.train_images_per_second,
            self.inference_ms_per_batch,
            self.overflow_skips,
            self.loss_scale
        )
    }
}

/// Reads history.csv back (what [`history_csv`] writes); the error says what is wrong with it.
pub fn parse_history_csv(text: &str) -> std::result::Result<Vec<EpochRecord>, String> {
    let mut lines = text.lines();
    let header = HISTORY_COLUMNS.join(",");
    let columns = match lines.next() {
        Some(h) if h == header => HISTORY_COLUMNS.len(),
        Some(h) if h == HISTORY_COLUMNS[..OLD_COLUMNS].join(",") => OLD_COLUMNS,
        _ => return Err(format!("its first line is not the header `{header}`")),
    };
    lines
        .enumerate()
        .map(|(row, line)| {
            let cells: Vec<&str> = line.split(',').collect();
            let bad = |column: usize| format!("row {} has no number in column {}", row + 1, HISTORY_COLUMNS[column]);
            if cells.len() != columns {
                return Err(format!("row {} has {} columns, not {columns}", row + 1, cells.len()));
            }
            let newer = columns > OLD_COLUMNS;
            let real = |column: usize| cells[column].parse::<f64>().map_err(|_| bad(column));
            let count = |column: usize| cells[column].parse::<usize>().map_err(|_| bad(column));
            Ok(EpochRecord {
                epoch: count(0)?,
                lr: real(1)?,
                train_loss: real(2)?,
                train_acc: real(3)?,
                val_loss: real(4)?,
                val_top1: real(5)?,
                val_top5: real(6)?,
                val_macro_precision: real(7)?,
                val_macro_recall: real(8)?,
                val_macro_f1: real(9)?,
                skipped_steps: count(10)?,
                epoch_seconds: real(11)?,
                train_images_per_second: real(12)?,
                inference_ms_per_batch: real(13)?,
                overflow_skips: if newer { count(14)? } else { 0 },
                loss_scale: if newer { real(15)? } else { 1.0 },
            })
        })
        .collect()
}

pub fn history_csv(records: &[EpochRecord]) -> String {
    let mut out = HISTORY_COLUMNS.join(",");
    out.push('\n');
    for r in records {
        out.push_str(&r.csv_row());
        out.push('\n');
    }
    out
}

/// A CSV field: quoted when it holds a comma, quote or line break.
pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// confusion.csv: a header row of predicted classes, then one row per true class with its counts.
pub fn confusion_csv(matrix: &ConfusionMatrix, class_names: &[String]) -> String {
    let mut out = String::from("true\\predicted");
    for name in class_names {
        out.push(',');
        out.push_str(&csv_field(name));
    }
    out.push('\n');
    let k = matrix.classes();
    for (t, name) in class_names.iter().enumerate() {
        out.push_str(&csv_field(name));
        for p in 0..k {
            let _ = write!(out, ",{}", matrix.count(t, p));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_outputs_have_one_row_per_record_and_class() {
        let record = EpochRecord {
            epoch: 1,
            lr: 0.1,
            train_loss: 0.5,
            train_acc: 0.75,
            val_loss: 0.25,
            val_top1: 0.875,
            val_top5: 1.0,
            val_macro_precision: 0.8,
            val_macro_recall: 0.7,
            val_macro_f1: 0.74,
            skipped_steps: 0,
            overflow_skips: 2,
            loss_scale: 32768.0,
            epoch_seconds: 1.5,
            train_images_per_second: 1000.0,
            inference_ms_per_batch: 2.5,
        };
        let csv = history_csv(&[record.clone(), EpochRecord { epoch: 2, ..record }]);
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 3);
        assert_eq!(lines[0].split(',').count(), HISTORY_COLUMNS.len());
        assert_eq!(lines[2], "2,0.1,0.5,0.75,0.25,0.875,1,0.8,0.7,0.74,0,1.5,1000,2.5,2,32768");
        let nan_loss = EpochRecord { epoch: 3, val_loss: f64::NAN, ..record.clone() };
        let read = parse_history_csv(&history_csv(&[record.clone(), nan_loss])).unwrap();
        assert_eq!(read[0], record);
        assert!(read[1].val_loss.is_nan() && read[1].epoch == 3);
        assert!(parse_history_csv("epoch,lr\n1,0.1\n").unwrap_err().contains("header"));
        let short = format!("{}\n1,0.1\n", HISTORY_COLUMNS.join(","));
        assert!(parse_history_csv(&short).unwrap_err().contains("row 1 has 2 columns"));
        let old = format!("{}\n1,0.1,0.5,0.75,0.25,0.875,1,0.8,0.7,0.74,0,1.5,1000,2.5\n", HISTORY_COLUMNS[..OLD_COLUMNS].join(","));
        let read = parse_history_csv(&old).unwrap();
        assert_eq!(read[0], EpochRecord { epoch: 1, overflow_skips: 0, loss_scale: 1.0, ..record.clone() });

        let m = ConfusionMatrix::from_counts(2, vec![3, 1, 0, 4]);
        let names = vec!["T-shirt/top".to_string(), "a,b".to_string()];
        assert_eq!(confusion_csv(&m, &names), "true\\predicted,T-shirt/top,\"a,b\"\nT-shirt/top,3,1\n\"a,b\",0,4\n");
    }
}
