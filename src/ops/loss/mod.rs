//! Fused softmax + cross-entropy: one pass gives the mean loss and its gradient with respect to
//! the logits, never materialising the probabilities. With label smoothing eps the target
//! distribution is (1 - eps) * onehot + eps / K, as PyTorch's CrossEntropyLoss.
//!
//! The metric ops next to it accumulate what a training or evaluation pass reports (loss sums,
//! top-1/top-5 hits, the confusion matrix, the first bad label and the first non-finite step) in
//! a buffer of 32-bit words on the device, so a step queues work and reads nothing back; the
//! host reads the words when it wants figures ([`train_words`], [`eval_words`] give the layouts).

pub mod cases;
mod cpu;
mod cuda;

use crate::device::Device;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::check::expect_len;

pub trait LossOps<E: Element>: Device<E> {
    /// logits [N, K], labels [N] in 0..K. Returns (loss [1] = mean over N,
    /// dlogits [N, K] = d(mean loss)/d logits = (softmax - target) / N). A label >= K is an error
    /// on the CPU; a GPU does not stop to look at the labels: such a row gets a NaN loss and no
    /// target (never a read outside the row), and `finish_train_step` records the label.
    fn softmax_cross_entropy(
        &self,
        logits: &Self::Buf,
        labels: &Self::IdxBuf,
        n: usize,
        classes: usize,
        label_smoothing: f64,
    ) -> Result<(Self::Buf, Self::Buf)>;
    /// Row-wise softmax probabilities [N, K] (inference, predict).
    fn softmax(&self, logits: &Self::Buf, n: usize, classes: usize) -> Result<Self::Buf>;

    /// Training metrics ([`train_words`]): STEP_LOSS += weight * loss[0], in f64.
    fn accumulate_step_loss(&self, loss: &Self::Buf, weight: f64, metrics: &mut Self::IdxBuf) -> Result<()>;
    /// Training metrics ([`train_words`]): ends a step of `n` samples. Counts the step, records
    /// the first out-of-range label, and, when STEP_LOSS is finite, adds STEP_LOSS * n to
    /// LOSS_SUM, n to SEEN and the top-1 hits of `logits` [N, K] to CORRECT; else counts the step
    /// as SKIPPED and records the first such step and its loss. STEP_LOSS moves to LAST_LOSS.
    fn finish_train_step(&self, logits: &Self::Buf, labels: &Self::IdxBuf, n: usize, classes: usize, metrics: &mut Self::IdxBuf) -> Result<()>;
    /// Evaluation metrics ([`eval_words`]) of one batch: adds the batch's summed cross-entropy
    /// (f64, no smoothing), its sample count, top-5 hits, and each (label, top-1 prediction)
    /// pair to the confusion counts. Rows with an out-of-range label are left out.
    fn accumulate_eval(&self, logits: &Self::Buf, labels: &Self::IdxBuf, n: usize, classes: usize, metrics: &mut Self::IdxBuf) -> Result<()>;
}

/// Word offsets of the training metrics buffer (kernels/loss.cu mirrors them). An f64 takes two
/// words, low word first, at an even offset; counters are u32; a recorded step counts from 1 and
/// 0 means none.
pub mod train_words {
    /// Sum over finished finite steps of the step loss times its sample count.
    pub const LOSS_SUM: usize = 0;
    /// The weighted loss of the step in progress.
    pub const STEP_LOSS: usize = 2;
    /// The weighted loss of the last finished step.
    pub const LAST_LOSS: usize = 4;
    /// The loss of the first step whose loss was NaN or infinite.
    pub const NONFINITE_LOSS: usize = 6;
    /// Steps finished (started from the value the host uploads).
    pub const STEPS: usize = 8;
    pub const SEEN: usize = 9;
    /// Top-1 hits.
    pub const CORRECT: usize = 10;
    /// Steps whose loss was not finite.
    pub const SKIPPED: usize = 11;
    pub const NONFINITE_STEP: usize = 12;
    /// The step, sample and value of the first out-of-range label.
    pub const BAD_STEP: usize = 13;
    pub const BAD_SAMPLE: usize = 14;
    pub const BAD_LABEL: usize = 15;
    pub const LEN: usize = 16;
}

/// Word offsets of the evaluation metrics buffer (kernels/loss.cu mirrors them).
pub mod eval_words {
    /// Sum over batches of the batch's mean cross-entropy times its sample count (f64).
    pub const LOSS_SUM: usize = 0;
    pub const SAMPLES: usize = 2;
    pub const TOP5: usize = 3;
    /// classes x classes counts, rows = true classes.
    pub const CONFUSION: usize = 4;
    /// The buffer's length for `classes` classes.
    pub fn len(classes: usize) -> usize {
        CONFUSION + classes * classes
    }
}

/// The f64 stored at word `at` (two words, low first).
pub fn word_f64(words: &[u32], at: usize) -> f64 {
    f64::from_bits(u64::from(words[at]) | (u64::from(words[at + 1]) << 32))
}

/// Stores `v` at word `at` (two words, low first).
pub fn set_word_f64(words: &mut [u32], at: usize, v: f64) {
    let bits = v.to_bits();
    words[at] = bits as u32;
    words[at + 1] = (bits >> 32) as u32;
}

/// Shape checks of both ops, shared by every device so their errors read alike.
pub(crate) fn check_rows(op: &str, logits_len: usize, n: usize, classes: usize) -> Result<()> {
    if n == 0 || classes == 0 {
        return Err(Error::shape(format!("{op} needs at least one sample and one class, got N={n} K={classes}")));
    }
    expect_len(op, "logits", logits_len, n * classes)
}

/// The shape and option checks of softmax_cross_entropy.
pub(crate) fn check_cross_entropy(
    logits_len: usize,
    labels_len: usize,
    n: usize,
    classes: usize,
    label_smoothing: f64,
) -> Result<()> {
    check_rows(CROSS_ENTROPY, logits_len, n, classes)?;
    expect_len(CROSS_ENTROPY, "labels", labels_len, n)?;
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::config(format!("label smoothing must be in [0, 1], got {label_smoothing}")));
    }
    Ok(())
}

/// The shape checks of the metric ops over logits [N, K] and a metrics buffer of `want_words`.
pub(crate) fn check_metric_rows(
    op: &str,
    logits_len: usize,
    labels_len: usize,
    n: usize,
    classes: usize,
    metrics_len: usize,
    want_words: usize,
) -> Result<()> {
    check_rows(op, logits_len, n, classes)?;
    expect_len(op, "labels", labels_len, n)?;
    expect_len(op, "metrics", metrics_len, want_words)
}

/// The shape checks of accumulate_step_loss: a scalar loss and a training metrics buffer.
pub(crate) fn check_step_loss(loss_len: usize, metrics_len: usize) -> Result<()> {
    expect_len("accumulate_step_loss", "loss", loss_len, 1)?;
    expect_len("accumulate_step_loss", "metrics", metrics_len, train_words::LEN)
}

/// The labels as host values must lie in 0..classes (the CPU checks them before computing; GPU
/// kernels skip such rows and `finish_train_step` records the first one on the device).
pub(crate) fn check_labels(labels: &[u32], classes: usize) -> Result<()> {
    match labels.iter().enumerate().find(|(_, &l)| l as usize >= classes) {
        Some((i, &label)) => Err(label_error(label, i, classes)),
        None => Ok(()),
    }
}

/// The error of an out-of-range label, whether the host or the device found it.
pub fn label_error(label: u32, sample: usize, classes: usize) -> Error {
    Error::shape(format!(
        "{CROSS_ENTROPY}: label {label} of sample {sample} is out of range for {classes} classes (labels must be below {classes})"
    ))
}

const CROSS_ENTROPY: &str = "softmax_cross_entropy";
