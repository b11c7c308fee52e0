//! What a training or evaluation pass reports, accumulated on the device by the metric ops of
//! `ops::loss` (loss sums, top-1/top-5 hits, the confusion matrix, the first out-of-range label
//! and the first non-finite step), and its host form, read in one small download when the caller
//! wants figures. A step or an evaluation batch itself reads nothing back.

use crate::error::{Error, Result};
use crate::ops::loss::{eval_words, label_error, set_word_f64, train_words as tw, word_f64};

/// The first step whose loss was NaN or infinite.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct NonFinite {
    /// The step number: the `steps` the accumulation started from, plus one per step.
    pub step: usize,
    pub loss: f64,
}

/// Running training figures. Started from a host value (zero, or what a checkpoint holds), so a
/// resumed epoch adds up in the same order as an uninterrupted one.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrainTotals {
    /// Sum over the finite steps of the step loss times its sample count (f64, in step order).
    pub loss_sum: f64,
    /// Top-1 hits of the finite steps.
    pub correct: usize,
    /// Samples of the finite steps.
    pub seen: usize,
    /// Steps whose loss was not finite.
    pub skipped_steps: usize,
    /// Steps finished.
    pub steps: usize,
    /// The weighted loss of the last step (not restored by a start).
    pub last_loss: f64,
    pub first_nonfinite: Option<NonFinite>,
}

/// A count the device keeps in a 32-bit word.
fn word(v: usize, what: &str) -> Result<u32> {
    u32::try_from(v).map_err(|_| Error::config(format!("{what} {v} exceeds the device's 32-bit metric counters")))
}

impl TrainTotals {
    /// The device words to start from (no recorded fault).
    pub(crate) fn to_words(&self) -> Result<Vec<u32>> {
        let mut words = vec![0u32; tw::LEN];
        set_word_f64(&mut words, tw::LOSS_SUM, self.loss_sum);
        words[tw::STEPS] = word(self.steps, "the step count")?;
        words[tw::SEEN] = word(self.seen, "the sample count")?;
        words[tw::CORRECT] = word(self.correct, "the correct count")?;
        words[tw::SKIPPED] = word(self.skipped_steps, "the skipped-step count")?;
        Ok(words)
    }

    /// The totals in `words`; a recorded out-of-range label is the error naming it.
    pub(crate) fn from_words(words: &[u32], classes: usize) -> Result<Self> {
        if words[tw::BAD_STEP] != 0 {
            return Err(label_error(words[tw::BAD_LABEL], words[tw::BAD_SAMPLE] as usize, classes));
        }
        let first_nonfinite = (words[tw::NONFINITE_STEP] != 0)
            .then(|| NonFinite { step: words[tw::NONFINITE_STEP] as usize, loss: word_f64(words, tw::NONFINITE_LOSS) });
        Ok(TrainTotals {
            loss_sum: word_f64(words, tw::LOSS_SUM),
            correct: words[tw::CORRECT] as usize,
            seen: words[tw::SEEN] as usize,
            skipped_steps: words[tw::SKIPPED] as usize,
            steps: words[tw::STEPS] as usize,
            last_loss: word_f64(words, tw::LAST_LOSS),
            first_nonfinite,
        })
    }
}

/// The figures of an evaluation pass so far.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalCounts {
    /// Sum over batches of the batch's mean cross-entropy times its sample count.
    pub loss_sum: f64,
    pub samples: usize,
    pub top5_hits: usize,
    /// classes x classes, rows = true classes.
    pub confusion: Vec<u64>,
}

impl EvalCounts {
    pub(crate) fn from_words(words: &[u32], classes: usize) -> Self {
        EvalCounts {
            loss_sum: word_f64(words, eval_words::LOSS_SUM),
            samples: words[eval_words::SAMPLES] as usize,
            top5_hits: words[eval_words::TOP5] as usize,
            confusion: words[eval_words::CONFUSION..eval_words::len(classes)].iter().map(|&c| u64::from(c)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn train_totals_survive_the_device_words() {
        let start = TrainTotals { loss_sum: 0.1 + 0.2, correct: 7, seen: 9, skipped_steps: 1, steps: 3, ..TrainTotals::default() };
        assert_eq!(TrainTotals::from_words(&start.to_words().unwrap(), 10).unwrap(), start);
        let mut words = start.to_words().unwrap();
        (words[tw::BAD_STEP], words[tw::BAD_SAMPLE], words[tw::BAD_LABEL]) = (4, 1, 12);
        assert_eq!(
            TrainTotals::from_words(&words, 10).unwrap_err().to_string(),
            "shape error: softmax_cross_entropy: label 12 of sample 1 is out of range for 10 classes (labels must be below 10)"
        );
        let too_many = TrainTotals { seen: usize::MAX, ..TrainTotals::default() };
        assert!(too_many.to_words().unwrap_err().to_string().contains("32-bit"));
    }
}
