//! Classification metrics: a confusion matrix with per-class and macro precision/recall/F1
//! (scikit-learn's definitions, an undefined ratio counting as 0), and an accumulator that adds
//! up loss, top-1 and top-5 over the batches of an evaluation pass.

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

/// Whether `label` is among the `k` highest of `logits`. Ties count against the label (a logit
/// equal to the label's, at a lower index, ranks above it), so a constant output is not "correct".
pub fn in_top_k(logits: &[f32], label: usize, k: usize) -> bool {
    let target = logits[label];
    let above = logits
        .iter()
        .enumerate()
        .filter(|&(i, &v)| v > target || (v == target && i < label) || v.is_nan())
        .count();
    above < k
}

/// The index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in logits.iter().enumerate() {
        if v > logits[best] {
            best = i;
        }
    }
    best
}

/// Log-probabilities of one row of logits, computed in f64 with the max subtracted.
pub fn log_softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
    let log_sum = logits.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() + max;
    logits.iter().map(|&v| v as f64 - log_sum).collect()
}

/// Mean cross-entropy of rows of `classes` logits against `labels` (no label smoothing: the
/// validation loss PyTorch users compare).
pub fn cross_entropy(logits: &[f32], labels: &[u32], classes: usize) -> f64 {
    let total: f64 = logits.chunks_exact(classes).zip(labels).map(|(row, &l)| -log_softmax(row)[l as usize]).sum();
    ratio(total, labels.len() as f64)
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

/// Sums loss, top-1/top-5 hits and the confusion matrix over the batches of one pass.
pub struct EvalAccumulator {
    confusion: ConfusionMatrix,
    loss_sum: f64,
    top5_hits: usize,
    samples: usize,
    batches: usize,
    inference_seconds: f64,
}

impl EvalAccumulator {
    pub fn new(classes: usize) -> Self {
        EvalAccumulator {
            confusion: ConfusionMatrix::new(classes),
            loss_sum: 0.0,
            top5_hits: 0,
            samples: 0,
            batches: 0,
            inference_seconds: 0.0,
        }
    }

    /// One batch: logits [n, classes] row-major, its labels and its forward time.
    pub fn add_batch(&mut self, logits: &[f32], labels: &[u32], seconds: f64) {
        let k = self.confusion.classes();
        for (row, &label) in logits.chunks_exact(k).zip(labels) {
            let label = label as usize;
            self.confusion.add(label, argmax(row));
            self.top5_hits += usize::from(in_top_k(row, label, 5));
        }
        self.loss_sum += cross_entropy(logits, labels, k) * labels.len() as f64;
        self.samples += labels.len();
        self.batches += 1;
        self.inference_seconds += seconds;
    }

    pub fn finish(self) -> EvalMetrics {
        let n = self.samples as f64;
        EvalMetrics {
            loss: ratio(self.loss_sum, n),
            top1: self.confusion.accuracy(),
            top5: ratio(self.top5_hits as f64, n),
            macro_precision: self.confusion.macro_precision(),
            macro_recall: self.confusion.macro_recall(),
            macro_f1: self.confusion.macro_f1(),
            samples: self.samples,
            inference_ms_per_batch: ratio(self.inference_seconds * 1e3, self.batches as f64),
            confusion: self.confusion,
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
    fn top_k_and_accumulated_pass() {
        let logits = [0.1, 0.9, 0.3, 0.2, 0.8, 0.0, 0.5];
        assert!(in_top_k(&logits, 1, 1));
        assert!(!in_top_k(&logits, 4, 1));
        assert!(in_top_k(&logits, 4, 2));
        assert!(!in_top_k(&logits, 5, 5)); // 0.0 is the lowest of 7
        assert!(in_top_k(&logits, 5, 7));
        // Ties: a constant output is correct only for the first class at k = 1.
        assert!(in_top_k(&[1.0, 1.0], 0, 1));
        assert!(!in_top_k(&[1.0, 1.0], 1, 1));

        let mut acc = EvalAccumulator::new(3);
        // batch 1: predictions 0, 2 for labels 0, 1; batch 2: prediction 2 for label 2.
        acc.add_batch(&[3.0, 1.0, 0.0, 0.0, 1.0, 2.0], &[0, 1], 0.010);
        acc.add_batch(&[0.0, 0.0, 1.0], &[2], 0.030);
        let m = acc.finish();
        assert_eq!(m.samples, 3);
        // -log softmax: [3,1,0] at 0, [0,1,2] at 1, [0,0,1] at 2
        let ce = |row: [f64; 3], l: usize| row.iter().map(|v| v.exp()).sum::<f64>().ln() - row[l];
        let want = (ce([3.0, 1.0, 0.0], 0) + ce([0.0, 1.0, 2.0], 1) + ce([0.0, 0.0, 1.0], 2)) / 3.0;
        assert!((m.loss - want).abs() < 1e-12, "{} vs {want}", m.loss);
        assert!((cross_entropy(&[1000.0, 0.0], &[1], 2) - 1000.0).abs() < 1e-9, "stable for large logits");
        assert!((m.top1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.top5, 1.0); // fewer than 5 classes: always in the top 5
        assert!((m.inference_ms_per_batch - 20.0).abs() < 1e-9);
        assert_eq!(m.confusion.count(1, 2), 1);
    }
}
