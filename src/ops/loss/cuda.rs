//! GPU softmax and fused softmax cross-entropy: kernels/loss.cu, one block per row; the mean
//! loss is reduce_sum over the per-row losses.

use super::{check_cross_entropy, check_labels, check_rows, LossOps};
use crate::device::{Buffer, Device};
use crate::error::Result;
use crate::device::driver::KernelArg;
use crate::gpu::grid::{int, reduction};
use crate::gpu::{GpuBackend, GpuBuf};

/// The flat logits index of the kernels must fit an int.
fn check_index_range(op: &str, n: usize, classes: usize) -> Result<()> {
    int(n * classes, &format!("the element count of the {op} logits")).map(|_| ())
}

impl LossOps<f32> for GpuBackend {
    fn softmax_cross_entropy(
        &self,
        logits: &GpuBuf<f32>,
        labels: &GpuBuf<u32>,
        n: usize,
        classes: usize,
        label_smoothing: f64,
    ) -> Result<(GpuBuf<f32>, GpuBuf<f32>)> {
        check_cross_entropy(logits.len(), labels.len(), n, classes, label_smoothing)?;
        check_index_range("softmax_cross_entropy", n, classes)?;
        // The kernel indexes each row by its label: the labels are checked on the host first.
        check_labels(&self.download_idx(labels)?, classes)?;
        let row_loss = self.alloc::<f32>(n)?;
        let dlogits = self.alloc::<f32>(n * classes)?;
        let args = [
            logits.arg(),
            labels.arg(),
            row_loss.arg(),
            dlogits.arg(),
            KernelArg::I32(classes as i32),
            KernelArg::F32(label_smoothing as f32),
            KernelArg::F32((1.0 / n as f64) as f32),
        ];
        self.launch("loss", "softmax_cross_entropy", reduction(n, classes)?, &args)?;
        let loss = self.reduce_to_scalar(&row_loss, false, (1.0 / n as f64) as f32, "softmax_cross_entropy")?;
        Ok((loss, dlogits))
    }

    fn softmax(&self, logits: &GpuBuf<f32>, n: usize, classes: usize) -> Result<GpuBuf<f32>> {
        check_rows("softmax", logits.len(), n, classes)?;
        check_index_range("softmax", n, classes)?;
        let probs = self.alloc::<f32>(n * classes)?;
        let args = [logits.arg(), probs.arg(), KernelArg::I32(classes as i32)];
        self.launch("loss", "softmax", reduction(n, classes)?, &args)?;
        Ok(probs)
    }
}
