//! Classification metrics: a confusion matrix with per-class and macro precision/recall/F1
//! (scikit-learn's definitions, an undefined ratio counting as 0), and the summary of an
//! evaluation pass from the counts the device accumulated (`exec::EvalCounts`; the row-level
//! rules, top-1 ties and top-5 ranks, are the metric ops' in `ops::loss`).

use crate::exec::EvalCounts;
use serde::Serialize;

/// Counts of (true class, predicted class) pairs; rows are true classes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfusionMatrix {
    classes: usize,
    counts: Vec<u64>,
}

/// `num / den`, or 0 when the denominator is 0 (scikit-learn's `zero_division=0`).
fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

impl ConfusionMatrix {
    pub fn new(classes: usize) -> Self {
        ConfusionMatrix { classes, counts: vec![0; classes * classes] }
    }

    /// A matrix from its counts, rows = true classes (`counts.len()` must be classes^2).
    pub fn from_counts(classes: usize, counts: Vec<u64>) -> Self {
        assert_eq!(counts.len(), classes * classes, "confusion counts must be classes x classes");
        ConfusionMatrix { classes, counts }
    }

    pub fn classes(&self) -> usize {
        self.classes
    }

    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth * self.classes + predicted] += 1;
    }

    pub fn count(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.classes + predicted]
    }

    /// Row-major counts, rows = true classes.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    fn row_sum(&self, truth: usize) -> u64 {
        self.counts[truth * self.classes..(truth + 1) * self.classes].iter().sum()
    }

    fn column_sum(&self, predicted: usize) -> u64 {
        (0..self.classes).map(|t| self.count(t, predicted)).sum()
    }

    /// Each row divided by its sum (the per-class recall distribution); empty rows stay 0.
    pub fn row_normalised(&self) -> Vec<f64> {
        let mut out = vec![0.0; self.counts.len()];
        for t in 0..self.classes {
            let sum = self.row_sum(t) as f64;
            for p in 0..self.classes {
                out[t * self.classes + p] = ratio(self.count(t, p) as f64, sum);
            }
        }
        out
    }

    /// Fraction of samples on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let correct: u64 = (0..self.classes).map(|c| self.count(c, c)).sum();
        ratio(correct as f64, self.total() as f64)
    }

    pub fn precision(&self, class: usize) -> f64 {
        ratio(self.count(class, class) as f64, self.column_sum(class) as f64)
    }

    pub fn recall(&self, class: usize) -> f64 {
        ratio(self.count(class, class) as f64, self.row_sum(class) as f64)
    }

    pub fn f1(&self, class: usize) -> f64 {
        let (p, r) = (self.precision(class), self.recall(class));
        ratio(2.0 * p * r, p + r)
    }

    fn macro_mean(&self, per_class: impl Fn(usize) -> f64) -> f64 {
        ratio((0..self.classes).map(per_class).sum(), self.classes as f64)
    }

    /// Unweighted mean over classes of the per-class precision.
    pub fn macro_precision(&self) -> f64 {
        self.macro_mean(|c| self.precision(c))
    }

    pub fn macro_recall(&self) -> f64 {
        self.macro_mean(|c| self.recall(c))
    }

    /// Mean of the per-class F1 scores (not the F1 of the macro precision and recall).
    pub fn macro_f1(&self) -> f64 {
        self.macro_mean(|c| self.f1(c))
    }
}

/// Log-probabilities of one row of logits, computed in f64 with the max subtracted.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let log_sum = logits.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
    logits.iter().map(|&v| v as f64 - log_sum).collect()
}

/// The summary of one evaluation pass.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EvalMetrics {
    pub loss: f64,
    pub top1: f64,
    pub top5: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_f1: f64,
    pub samples: usize,
    /// Mean wall time of one inference batch (forward only), in milliseconds.
    pub inference_ms_per_batch: f64,
    #[serde(skip)]
    pub confusion: ConfusionMatrix,
}

impl EvalMetrics {
    /// The summary of a pass from its counts (accumulated on the device by
    /// `Executor::infer_accumulate`), its batch count and the seconds its forward passes took.
    pub fn from_counts(counts: EvalCounts, classes: usize, batches: usize, seconds: f64) -> Self {
        let confusion = ConfusionMatrix::from_counts(classes, counts.confusion);
        let n = counts.samples as f64;
        EvalMetrics {
            loss: ratio(counts.loss_sum, n),
            top1: confusion.accuracy(),
            top5: ratio(counts.top5_hits as f64, n),
            macro_precision: confusion.macro_precision(),
            macro_recall: confusion.macro_recall(),
            macro_f1: confusion.macro_f1(),
            samples: counts.samples,
            inference_ms_per_batch: ratio(seconds * 1e3, batches as f64),
            confusion,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 3 classes, rows = truth:
    ///   [5 1 0]
    ///   [2 3 1]
    ///   [0 0 4]
    fn hand_made() -> ConfusionMatrix {
        ConfusionMatrix::from_counts(3, vec![5, 1, 0, 2, 3, 1, 0, 0, 4])
    }

    #[test]
    fn per_class_and_macro_metrics_match_hand_computation() {
        let m = hand_made();
        assert_eq!(m.total(), 16);
        assert!((m.accuracy() - 12.0 / 16.0).abs() < 1e-12);
        // precision = diagonal / column sum: 5/7, 3/4, 4/5
        let p = [5.0 / 7.0, 3.0 / 4.0, 4.0 / 5.0];
        // recall = diagonal / row sum: 5/6, 3/6, 4/4
        let r = [5.0 / 6.0, 0.5, 1.0];
        for c in 0..3 {
            assert!((m.precision(c) - p[c]).abs() < 1e-12, "precision {c}");
            assert!((m.recall(c) - r[c]).abs() < 1e-12, "recall {c}");
            assert!((m.f1(c) - 2.0 * p[c] * r[c] / (p[c] + r[c])).abs() < 1e-12, "f1 {c}");
        }
        assert!((m.macro_precision() - (p[0] + p[1] + p[2]) / 3.0).abs() < 1e-12);
        assert!((m.macro_recall() - (r[0] + r[1] + r[2]) / 3.0).abs() < 1e-12);
        // sklearn: f1 = [0.769230769, 0.6, 0.888888889], macro 0.752706553
        assert!((m.macro_f1() - 0.752_706_552_706_552_7).abs() < 1e-12, "{}", m.macro_f1());
        let rn = m.row_normalised();
        assert_eq!(&rn[3..6], &[2.0 / 6.0, 3.0 / 6.0, 1.0 / 6.0]);
        assert_eq!(&rn[6..9], &[0.0, 0.0, 1.0]);
    }

    #[test]
    fn never_predicted_and_absent_classes_count_as_zero() {
        // class 2 is never predicted and never present; class 1 is never predicted.
        let m = ConfusionMatrix::from_counts(3, vec![4, 0, 0, 2, 0, 0, 0, 0, 0]);
        assert_eq!(m.precision(1), 0.0);
        assert_eq!(m.recall(2), 0.0);
        assert_eq!(m.f1(2), 0.0);
        assert!((m.macro_precision() - (4.0 / 6.0) / 3.0).abs() < 1e-12);
        assert_eq!(&m.row_normalised()[6..9], &[0.0, 0.0, 0.0]);
    }

    #[test]
    fn a_pass_summary_from_its_counts() {
        // 3 samples: predictions 0, 2, 2 for labels 0, 1, 2; two of them in the top 5.
        let counts = EvalCounts { loss_sum: 1.5, samples: 3, top5_hits: 2, confusion: vec![1, 0, 0, 0, 0, 1, 0, 0, 1] };
        let m = EvalMetrics::from_counts(counts, 3, 2, 0.040);
        assert_eq!(m.samples, 3);
        assert_eq!(m.loss, 0.5);
        assert!((m.top1 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.top5 - 2.0 / 3.0).abs() < 1e-12);
        assert!((m.inference_ms_per_batch - 20.0).abs() < 1e-9);
        assert_eq!(m.confusion.count(1, 2), 1);
    }
}
