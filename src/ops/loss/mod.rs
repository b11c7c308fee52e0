//! Fused softmax + cross-entropy: one pass gives the mean loss and its gradient with respect to
//! the logits, never materialising the probabilities. With label smoothing eps the target
//! distribution is (1 - eps) * onehot + eps / K, as PyTorch's CrossEntropyLoss.

pub mod cases;
mod cpu;
mod cuda;

use crate::device::Device;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::check::expect_len;

pub trait LossOps<E: Element>: Device<E> {
    /// logits [N, K], labels [N] in 0..K. Returns (loss [1] = mean over N,
    /// dlogits [N, K] = d(mean loss)/d logits = (softmax - target) / N). A label >= K is an error.
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

/// The labels as host values must lie in 0..classes. Devices index each row by its label, so an
/// out-of-range label must be caught here, before any kernel runs.
pub(crate) fn check_labels(labels: &[u32], classes: usize) -> Result<()> {
    match labels.iter().enumerate().find(|(_, &l)| l as usize >= classes) {
        Some((i, &label)) => Err(Error::shape(format!(
            "{CROSS_ENTROPY}: label {label} of sample {i} is out of range for {classes} classes (labels must be below {classes})"
        ))),
        None => Ok(()),
    }
}

const CROSS_ENTROPY: &str = "softmax_cross_entropy";
