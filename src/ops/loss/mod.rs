//! Fused softmax + cross-entropy: one pass gives the mean loss and its gradient with respect to
//! the logits, never materialising the probabilities. With label smoothing eps the target
//! distribution is (1 - eps) * onehot + eps / K, as PyTorch's CrossEntropyLoss.

mod cpu;
mod cuda;

use crate::device::Device;
use crate::element::Element;
use crate::error::Result;

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
