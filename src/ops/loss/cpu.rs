//! Softmax cross-entropy and softmax on the CPU, one row per rayon task, in f64 internally.

use super::{check_cross_entropy, check_labels, check_metric_rows, check_rows, check_step_loss, eval_words, set_word_f64, train_words as tw, word_f64, LossOps};
use crate::cpu::{CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::Result;
use rayon::prelude::*;

/// The row's maximum and log(sum(exp(x - max))): log-sum-exp = max + the second value, computed
/// without overflow whatever the magnitude of the logits.
fn max_and_log_sum_exp<E: Element>(row: &[E]) -> (f64, f64) {
    let max = row
        .iter()
        .map(|&v| v.to_f64())
        .fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = row.iter().map(|&v| (v.to_f64() - max).exp()).sum();
    (max, sum.ln())
}

/// The index of the largest logit, the first one on ties; a NaN never wins (kernels/loss.cu's
/// ferro_argmax).
fn argmax<E: Element>(row: &[E]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v.to_f64() > row[best].to_f64() {
            best = i;
        }
    }
    best
}

/// Whether `label` is among the 5 highest logits. Ties count against the label (an equal logit
/// at a lower index ranks above it) and a NaN ranks above everything, so a constant or broken
/// output is not "correct".
fn in_top5<E: Element>(row: &[E], label: usize) -> bool {
    let target = row[label].to_f64();
    let above = row
        .iter()
        .enumerate()
        .filter(|&(i, &v)| {
            let v = v.to_f64();
            v > target || (v == target && i < label) || v.is_nan()
        })
        .count();
    above < 5
}

/// -log softmax(row)[label] in f64, computed as the evaluation has always computed it: the max
/// folded in, exp summed in order, its log plus the max subtracted from the label's logit.
fn row_cross_entropy<E: Element>(row: &[E], label: usize) -> f64 {
    let max = row.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v.to_f64()));
    let log_sum = row.iter().map(|&v| (v.to_f64() - max).exp()).sum::<f64>().ln() + max;
    -(row[label].to_f64() - log_sum)
}

impl<E: Element> LossOps<E> for CpuBackend {
    fn softmax_cross_entropy(
        &self,
        logits: &CpuBuf<E>,
        labels: &CpuBuf<u32>,
        n: usize,
        classes: usize,
        label_smoothing: f64,
    ) -> Result<(CpuBuf<E>, CpuBuf<E>)> {
        check_cross_entropy(logits.len(), labels.len(), n, classes, label_smoothing)?;
        check_labels(labels, classes)?;
        let off_target = label_smoothing / classes as f64;
        let on_target = 1.0 - label_smoothing + off_target;
        let inv_n = 1.0 / n as f64;
        let mut dlogits = vec![E::zero(); n * classes];
        let row_losses: Vec<f64> = dlogits
            .par_chunks_mut(classes)
            .zip(logits.par_chunks(classes))
            .zip(labels.par_iter())
            .map(|((drow, row), &label)| {
                let (max, log_sum) = max_and_log_sum_exp(row);
                let mut loss = 0.0;
                for (k, (d, &x)) in drow.iter_mut().zip(row).enumerate() {
                    let target = if k == label as usize {
                        on_target
                    } else {
                        off_target
                    };
                    // -log softmax_k, never negative, so the weighted sum does not cancel.
                    let neg_log_p = log_sum - (x.to_f64() - max);
                    loss += target * neg_log_p;
                    *d = E::from_f64(((-neg_log_p).exp() - target) * inv_n);
                }
                loss
            })
            .collect();
        let mean_loss = row_losses.iter().sum::<f64>() * inv_n;
        Ok((self.wrap(vec![E::from_f64(mean_loss)]), self.wrap(dlogits)))
    }

    fn softmax(&self, logits: &CpuBuf<E>, n: usize, classes: usize) -> Result<CpuBuf<E>> {
        check_rows("softmax", logits.len(), n, classes)?;
        let mut probs = vec![E::zero(); n * classes];
        probs
            .par_chunks_mut(classes)
            .zip(logits.par_chunks(classes))
            .for_each(|(prow, row)| {
                let (max, log_sum) = max_and_log_sum_exp(row);
                for (p, &x) in prow.iter_mut().zip(row) {
                    *p = E::from_f64((x.to_f64() - max - log_sum).exp());
                }
            });
        Ok(self.wrap(probs))
    }

    fn accumulate_step_loss(&self, loss: &CpuBuf<E>, weight: f64, metrics: &mut CpuBuf<u32>) -> Result<()> {
        check_step_loss(loss.len(), metrics.len())?;
        let step = word_f64(metrics, tw::STEP_LOSS) + weight * loss[0].to_f64();
        set_word_f64(metrics, tw::STEP_LOSS, step);
        Ok(())
    }

    fn finish_train_step(&self, logits: &CpuBuf<E>, labels: &CpuBuf<u32>, n: usize, classes: usize, metrics: &mut CpuBuf<u32>) -> Result<()> {
        check_metric_rows("finish_train_step", logits.len(), labels.len(), n, classes, metrics.len(), tw::LEN)?;
        let m: &mut [u32] = metrics;
        m[tw::STEPS] += 1;
        let step = m[tw::STEPS];
        if let Some((i, &label)) = labels.iter().enumerate().find(|(_, &l)| l as usize >= classes) {
            if m[tw::BAD_STEP] == 0 {
                (m[tw::BAD_STEP], m[tw::BAD_SAMPLE], m[tw::BAD_LABEL]) = (step, i as u32, label);
            }
        }
        let hits = logits
            .chunks_exact(classes)
            .zip(labels.iter())
            .filter(|(row, &l)| (l as usize) < classes && argmax(row) == l as usize)
            .count() as u32;
        let loss = word_f64(m, tw::STEP_LOSS);
        if loss.is_finite() {
            set_word_f64(m, tw::LOSS_SUM, word_f64(m, tw::LOSS_SUM) + loss * n as f64);
            m[tw::SEEN] += n as u32;
            m[tw::CORRECT] += hits;
        } else {
            m[tw::SKIPPED] += 1;
            if m[tw::NONFINITE_STEP] == 0 {
                m[tw::NONFINITE_STEP] = step;
                set_word_f64(m, tw::NONFINITE_LOSS, loss);
            }
        }
        set_word_f64(m, tw::LAST_LOSS, loss);
        set_word_f64(m, tw::STEP_LOSS, 0.0);
        Ok(())
    }

    fn accumulate_eval(&self, logits: &CpuBuf<E>, labels: &CpuBuf<u32>, n: usize, classes: usize, metrics: &mut CpuBuf<u32>) -> Result<()> {
        check_metric_rows("accumulate_eval", logits.len(), labels.len(), n, classes, metrics.len(), eval_words::len(classes))?;
        let m: &mut [u32] = metrics;
        let mut total = 0.0;
        for (row, &label) in logits.chunks_exact(classes).zip(labels.iter()) {
            let label = label as usize;
            if label >= classes {
                continue;
            }
            total += row_cross_entropy(row, label);
            m[eval_words::CONFUSION + label * classes + argmax(row)] += 1;
            m[eval_words::TOP5] += u32::from(in_top5(row, label));
        }
        // The batch's mean times its size, as the per-batch figures were always added up.
        let sum = word_f64(m, eval_words::LOSS_SUM) + total / n as f64 * n as f64;
        set_word_f64(m, eval_words::LOSS_SUM, sum);
        m[eval_words::SAMPLES] += n as u32;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testutil::{assert_close, buf, error_text, finite_diff, narrow, random, widen};

    fn loss_and_grad(
        cpu: &CpuBackend,
        logits: &[f64],
        labels: &[u32],
        k: usize,
        eps: f64,
    ) -> (f64, Vec<f64>) {
        let (loss, d) = cpu
            .softmax_cross_entropy(
                &buf(cpu, logits),
                &cpu.wrap(labels.to_vec()),
                labels.len(),
                k,
                eps,
            )
            .unwrap();
        (loss[0], d.to_vec())
    }

    #[test]
    fn loss_by_hand() {
        let cpu = CpuBackend::new();
        let (loss, _) = loss_and_grad(&cpu, &[0.0, 0.0], &[0], 2, 0.0);
        assert!((loss - 2f64.ln()).abs() < 1e-15);
        // Two rows: mean of -log softmax at the label.
        let lse = (1f64.exp() + 2f64.exp() + 3f64.exp()).ln();
        let (loss, _) = loss_and_grad(&cpu, &[1.0, 2.0, 3.0, 1.0, 2.0, 3.0], &[2, 0], 3, 0.0);
        assert!((loss - ((lse - 3.0) + (lse - 1.0)) / 2.0).abs() < 1e-14);
        // Smoothing 0.3 over 3 classes: targets 0.8, 0.1, 0.1.
        let (loss, grad) = loss_and_grad(&cpu, &[1.0, 2.0, 3.0], &[0], 3, 0.3);
        assert!((loss - (0.8 * (lse - 1.0) + 0.1 * (lse - 2.0) + 0.1 * (lse - 3.0))).abs() < 1e-14);
        let p: Vec<f64> = [1.0f64, 2.0, 3.0].iter().map(|x| (x - lse).exp()).collect();
        assert_close(
            "smoothed grad",
            &grad,
            &[p[0] - 0.8, p[1] - 0.1, p[2] - 0.1],
            1e-15,
        );
    }

    #[test]
    fn gradient_matches_finite_differences_with_and_without_smoothing() {
        let cpu = CpuBackend::new();
        let (n, k) = (3, 5);
        let logits = random(n * k, 21);
        let labels = [4, 0, 2];
        for eps in [0.0, 0.1] {
            let (_, grad) = loss_and_grad(&cpu, &logits, &labels, k, eps);
            let numeric = finite_diff(&logits, 1e-5, |l| loss_and_grad(&cpu, l, &labels, k, eps).0);
            assert_close(&format!("dlogits, smoothing {eps}"), &grad, &numeric, 1e-8);
        }
    }

    #[test]
    fn huge_logits_stay_finite() {
        let cpu = CpuBackend::new();
        let (loss, grad) = loss_and_grad(&cpu, &[1000.0, 0.0, -1000.0], &[1], 3, 0.0);
        assert_eq!(loss, 1000.0);
        assert_eq!(grad, vec![1.0, -1.0, 0.0]);
        let probs = cpu
            .softmax(&cpu.wrap(vec![1e30f32, 0.0, 89.0, 88.0]), 2, 2)
            .unwrap();
        assert!(probs.iter().all(|p| p.is_finite()));
        assert_eq!((probs[0], probs[1]), (1.0, 0.0));
        assert!((probs[2] - 1.0 / (1.0 + (-1f32).exp())).abs() < 1e-6);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_f32_agrees_with_f64() {
        let cpu = CpuBackend::new();
        let logits = random(4 * 7, 8);
        let p64 = cpu.softmax(&buf(&cpu, &logits), 4, 7).unwrap();
        for row in p64.chunks(7) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-14);
        }
        let l32 = narrow(&logits);
        let p32 = cpu.softmax(&cpu.wrap(l32.clone()), 4, 7).unwrap();
        assert_close("softmax f32", &widen(&p32), &p64, 1e-6);
        let labels = cpu.wrap(vec![0u32, 6, 3, 3]);
        let (loss32, d32) = cpu
            .softmax_cross_entropy(&cpu.wrap(l32), &labels, 4, 7, 0.1)
            .unwrap();
        let (loss64, d64) = loss_and_grad(&cpu, &logits, &[0, 6, 3, 3], 7, 0.1);
        assert_close("loss f32", &[loss32[0] as f64], &[loss64], 1e-6);
        assert_close("dlogits f32", &widen(&d32), &d64, 1e-6);
    }

    #[test]
    fn bad_labels_and_sizes_are_errors() {
        let cpu = CpuBackend::new();
        let logits = buf(&cpu, &[0.0; 6]);
        let err = error_text(cpu.softmax_cross_entropy(&logits, &cpu.wrap(vec![1, 3]), 2, 3, 0.0));
        assert_eq!(
            err,
            "shape error: softmax_cross_entropy: label 3 of sample 1 is out of range for 3 classes (labels must be below 3)"
        );
        let err = error_text(cpu.softmax_cross_entropy(&logits, &cpu.wrap(vec![1]), 2, 3, 0.0));
        assert_eq!(
            err,
            "shape error: softmax_cross_entropy: labels has 1 elements but 2 are needed"
        );
        let err = error_text(cpu.softmax_cross_entropy(&logits, &cpu.wrap(vec![0, 0]), 2, 3, 1.5));
        assert_eq!(
            err,
            "invalid configuration: label smoothing must be in [0, 1], got 1.5"
        );
        let err = error_text(cpu.softmax(&logits, 0, 3));
        assert_eq!(
            err,
            "shape error: softmax needs at least one sample and one class, got N=0 K=3"
        );
    }
}
