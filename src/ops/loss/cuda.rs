//! GPU softmax and fused softmax cross-entropy: kernels/loss.cu, one block per row; the mean
//! loss is reduce_sum over the per-row losses.

use super::LossOps;
use crate::device::{Buffer, Device};
use crate::error::{Error, Result};
use crate::gpu::driver::KernelArg;
use crate::ops::check::expect_len;
use crate::gpu::grid::{int, reduction};
use crate::gpu::{GpuBackend, GpuBuf};

fn check_rows(op: &str, logits: &GpuBuf<f32>, n: usize, classes: usize) -> Result<()> {
    if n == 0 || classes == 0 {
        return Err(Error::shape(format!("{op} needs at least one row and one class, got N={n} K={classes}")));
    }
    expect_len(op, "logits", logits.len(), n * classes)?;
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
        const OP: &str = "softmax_cross_entropy";
        check_rows(OP, logits, n, classes)?;
        expect_len(OP, "labels", labels.len(), n)?;
        if !(0.0..=1.0).contains(&label_smoothing) {
            return Err(Error::config(format!("label smoothing must be in [0, 1], got {label_smoothing}")));
        }
        // The kernel indexes the row by its label: an out-of-range label must never reach it.
        if let Some((row, label)) = self.download_idx(labels)?.into_iter().enumerate().find(|&(_, l)| l as usize >= classes) {
            return Err(Error::shape(format!(
                "{OP}: label {label} of sample {row} is out of range for {classes} classes (labels must be below {classes})"
            )));
        }
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
        let loss = self.reduce_to_scalar(&row_loss, false, (1.0 / n as f64) as f32, OP)?;
        Ok((loss, dlogits))
    }

    fn softmax(&self, logits: &GpuBuf<f32>, n: usize, classes: usize) -> Result<GpuBuf<f32>> {
        check_rows("softmax", logits, n, classes)?;
        let probs = self.alloc::<f32>(n * classes)?;
        let args = [logits.arg(), probs.arg(), KernelArg::I32(classes as i32)];
        self.launch("loss", "softmax", reduction(n, classes)?, &args)?;
        Ok(probs)
    }
}
