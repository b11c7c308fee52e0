//! Dynamic loss scaling for fp16 training, as PyTorch's `torch.amp.GradScaler`: the loss is
//! multiplied by the scale before backward, so that small gradients stay above fp16's smallest
//! subnormal, and the gradients are divided by it again (in f32) before the optimiser. A step
//! whose gradients hold an inf or NaN (an fp16 overflow) is skipped and the scale halves; after
//! `GROWTH_INTERVAL` finite steps in a row it doubles.
//!
//! The overflow is found on the device, by the optimiser's non-finite gradient-norm check (the
//! one gradient clipping and --skip-nonfinite use), which leaves parameters and optimiser state
//! as they were; the scale is updated on the device from that check
//! (`Executor::start_dynamic_loss_scale`), with this arithmetic, so that no step reads anything
//! back and a CUDA graph can replay the steps. This host form is read back from the device where
//! it is needed (an epoch's history, a checkpoint) and uploaded when a run resumes.
//! As in PyTorch, a skipped step leaves the optimiser whole: its step counts do not advance, so
//! Adam's bias corrections and SGD's first momentum step come with the first step taken.

/// PyTorch's defaults.
pub const INIT_SCALE: f64 = 65536.0;
pub const GROWTH_FACTOR: f64 = 2.0;
pub const BACKOFF_FACTOR: f64 = 0.5;
pub const GROWTH_INTERVAL: usize = 2000;

use crate::exec::executor::LossScaleState;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LossScaler {
    scale: f64,
    growth_interval: usize,
    /// Finite steps since the last change of scale.
    good_steps: usize,
    /// Steps skipped for an overflow since the scaler started.
    overflow_skips: usize,
}

impl Default for LossScaler {
    fn default() -> Self {
        LossScaler::new(INIT_SCALE, GROWTH_INTERVAL)
    }
}

impl LossScaler {
    pub fn new(init_scale: f64, growth_interval: usize) -> Self {
        LossScaler { scale: init_scale, growth_interval: growth_interval.max(1), good_steps: 0, overflow_skips: 0 }
    }

    /// The scaler whose state the device holds (`Executor::read_loss_scale`).
    pub fn from_state(state: LossScaleState, growth_interval: usize) -> Self {
        LossScaler {
            scale: state.scale,
            growth_interval: growth_interval.max(1),
            good_steps: state.good_steps,
            overflow_skips: state.overflow_skips,
        }
    }

    /// The state to put on the device (`Executor::start_dynamic_loss_scale`).
    pub fn state(&self) -> LossScaleState {
        LossScaleState { scale: self.scale, good_steps: self.good_steps, overflow_skips: self.overflow_skips }
    }

    /// Finite steps in a row after which the scale doubles.
    pub fn growth_interval(&self) -> usize {
        self.growth_interval
    }

    /// The factor the next step's loss is multiplied by.
    pub fn scale(&self) -> f64 {
        self.scale
    }

    /// Steps skipped for an overflow so far.
    pub fn overflow_skips(&self) -> usize {
        self.overflow_skips
    }

    /// After a step: `overflow` when its gradients were not finite (the update was skipped).
    pub fn update(&mut self, overflow: bool) {
        if overflow {
            self.scale *= BACKOFF_FACTOR;
            self.good_steps = 0;
            self.overflow_skips += 1;
            return;
        }
        self.good_steps += 1;
        if self.good_steps == self.growth_interval {
            self.scale *= GROWTH_FACTOR;
            self.good_steps = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scale_backs_off_on_overflow_and_grows_after_a_run_of_finite_steps() {
        let mut s = LossScaler::new(1024.0, 3);
        s.update(false);
        s.update(false);
        assert_eq!(s.scale(), 1024.0);
        s.update(true);
        assert_eq!((s.scale(), s.overflow_skips()), (512.0, 1), "an overflow halves the scale");
        s.update(false);
        s.update(false);
        assert_eq!(s.scale(), 512.0, "the overflow restarted the count of finite steps");
        s.update(false);
        assert_eq!(s.scale(), 1024.0, "three finite steps in a row double it");
        for _ in 0..3 {
            s.update(false);
        }
        assert_eq!(s.scale(), 2048.0);
        s.update(true);
        s.update(true);
        assert_eq!((s.scale(), s.overflow_skips()), (512.0, 3));
    }

    #[test]
    fn the_device_state_round_trips() {
        let mut s = LossScaler::new(1024.0, 3);
        for overflow in [false, true, false, false] {
            s.update(overflow);
        }
        let state = s.state();
        assert_eq!((state.scale, state.good_steps, state.overflow_skips), (512.0, 2, 1));
        assert_eq!(LossScaler::from_state(state, s.growth_interval()), s);
    }

    #[test]
    fn pytorch_defaults() {
        let s = LossScaler::default();
        assert_eq!((s.scale(), s.growth_interval, s.overflow_skips()), (65536.0, 2000, 0));
    }
}
