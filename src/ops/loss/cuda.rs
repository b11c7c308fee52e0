//! GPU softmax and fused softmax cross-entropy: kernels/loss.cu, one block per row; the mean
//! loss is reduce_sum over the per-row losses. The metric launchers read nothing back.

use super::{check_cross_entropy, check_metric_rows, check_rows, check_step_loss, eval_words, train_words, LossOps};
use crate::device::driver::{KernelArg, LaunchConfig};
use crate::device::Buffer;
use crate::error::Result;
use crate::gpu::grid::{int, reduction};
use crate::gpu::{GpuBackend, GpuBuf};

/// accumulate_eval's block: kernels/loss.cu's EVAL_BLOCK.
const EVAL_BLOCK: u32 = 256;

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

    fn accumulate_step_loss(&self, loss: &GpuBuf<f32>, weight: f64, metrics: &mut GpuBuf<u32>) -> Result<()> {
        check_step_loss(loss.len(), metrics.len())?;
        let args = [loss.arg(), KernelArg::F64(weight), metrics.arg()];
        self.launch("loss", "accumulate_step_loss", LaunchConfig::linear(1, 1), &args)
    }

    fn finish_train_step(&self, logits: &GpuBuf<f32>, labels: &GpuBuf<u32>, n: usize, classes: usize, metrics: &mut GpuBuf<u32>) -> Result<()> {
        check_metric_rows("finish_train_step", logits.len(), labels.len(), n, classes, metrics.len(), train_words::LEN)?;
        check_index_range("finish_train_step", n, classes)?;
        let args = [logits.arg(), labels.arg(), int(n, "the batch")?, int(classes, "the class count")?, metrics.arg()];
        self.launch("loss", "finish_train_step", reduction(1, n)?, &args)
    }

    fn accumulate_eval(&self, logits: &GpuBuf<f32>, labels: &GpuBuf<u32>, n: usize, classes: usize, metrics: &mut GpuBuf<u32>) -> Result<()> {
        let words = eval_words::len(classes);
        check_metric_rows("accumulate_eval", logits.len(), labels.len(), n, classes, metrics.len(), words)?;
        check_index_range("accumulate_eval", n, classes)?;
        int(words, "the confusion matrix's size")?;
        let args = [logits.arg(), labels.arg(), int(n, "the batch")?, int(classes, "the class count")?, metrics.arg()];
        self.launch("loss", "accumulate_eval", LaunchConfig::linear(EVAL_BLOCK as usize, EVAL_BLOCK), &args)
    }
}
