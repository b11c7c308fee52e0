//! Learning-rate schedules stepped once per epoch, with PyTorch's semantics:
//! StepLR, CosineAnnealingLR (eta_min 0, T_max = the epochs after warm-up) and ReduceLROnPlateau
//! (relative threshold 1e-4, no cooldown, min_lr 0). A linear warm-up of W epochs runs first, as
//! `SequentialLR([LinearLR(start_factor=1/(W+1), total_iters=W), main], milestones=[W])`: epoch
//! e < W trains at base * (e+1)/(W+1), and the main schedule starts its own epoch 0 at epoch W.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
pub enum PlateauMode {
    /// The monitored value (validation loss) should fall.
    Min,
    /// The monitored value (validation top-1) should rise.
    Max,
}

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum ScheduleKind {
    Constant,
    Step { step_size: usize, gamma: f64 },
    Cosine,
    Plateau { mode: PlateauMode, factor: f64, patience: usize },
}

/// ReduceLROnPlateau's relative improvement threshold (PyTorch's default `threshold=1e-4`,
/// `threshold_mode='rel'`).
const PLATEAU_THRESHOLD: f64 = 1e-4;
/// PyTorch skips reductions smaller than this (`eps=1e-8`).
const PLATEAU_EPS: f64 = 1e-8;

/// The schedule with its state; serialisable so a resumed run continues it exactly.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LrSchedule {
    kind: ScheduleKind,
    base_lr: f64,
    warmup_epochs: usize,
    total_epochs: usize,
    /// ReduceLROnPlateau state: the current (reduced) rate, the best value seen, epochs since.
    plateau_lr: f64,
    plateau_best: Option<f64>,
    plateau_bad_epochs: usize,
}

impl LrSchedule {
    pub fn new(kind: ScheduleKind, base_lr: f64, warmup_epochs: usize, total_epochs: usize) -> Result<Self> {
        match kind {
            ScheduleKind::Step { step_size: 0, .. } => {
                return Err(Error::config("--step-size must be at least 1 epoch"));
            }
            ScheduleKind::Step { gamma, .. } if !(gamma > 0.0 && gamma <= 1.0) => {
                return Err(Error::config(format!("--gamma {gamma} must be in (0, 1]")));
            }
            ScheduleKind::Plateau { factor, .. } if !(factor > 0.0 && factor < 1.0) => {
                return Err(Error::config(format!("--plateau-factor {factor} must be in (0, 1)")));
            }
            _ => {}
        }
        if warmup_epochs >= total_epochs && total_epochs > 0 && warmup_epochs > 0 {
            return Err(Error::config(format!(
                "--warmup-epochs {warmup_epochs} must be fewer than --epochs {total_epochs}"
            )));
        }
        Ok(LrSchedule {
            kind,
            base_lr,
            warmup_epochs,
            total_epochs,
            plateau_lr: base_lr,
            plateau_best: None,
            plateau_bad_epochs: 0,
        })
    }

    /// The schedule of a run extended (or shortened) to `total_epochs` on `--resume --epochs`:
    /// cosine annealing then ends at the new last epoch; the other schedules do not depend on it.
    pub fn with_total_epochs(self, total_epochs: usize) -> Self {
        LrSchedule { total_epochs, ..self }
    }

    /// The learning rate of epoch `epoch` (0-based).
    pub fn lr(&self, epoch: usize) -> f64 {
        if epoch < self.warmup_epochs {
            return self.base_lr * (epoch + 1) as f64 / (self.warmup_epochs + 1) as f64;
        }
        let e = epoch - self.warmup_epochs;
        match self.kind {
            ScheduleKind::Constant => self.base_lr,
            ScheduleKind::Step { step_size, gamma } => self.base_lr * gamma.powi((e / step_size) as i32),
            ScheduleKind::Cosine => {
                let t_max = self.total_epochs.saturating_sub(self.warmup_epochs).max(1) as f64;
                self.base_lr * 0.5 * (1.0 + (std::f64::consts::PI * e as f64 / t_max).cos())
            }
            ScheduleKind::Plateau { .. } => self.plateau_lr,
        }
    }

    /// Reports the end of `epoch` with the monitored value (validation loss in `min` mode,
    /// validation top-1 in `max` mode). Only ReduceLROnPlateau uses it, and not during warm-up.
    pub fn end_epoch(&mut self, epoch: usize, monitored: f64) {
        let ScheduleKind::Plateau { mode, factor, patience } = self.kind else { return };
        if epoch < self.warmup_epochs {
            return;
        }
        let improved = match (self.plateau_best, mode) {
            (None, _) => true,
            (Some(best), PlateauMode::Min) => monitored < best * (1.0 - PLATEAU_THRESHOLD),
            (Some(best), PlateauMode::Max) => monitored > best * (1.0 + PLATEAU_THRESHOLD),
        };
        if improved {
            self.plateau_best = Some(monitored);
            self.plateau_bad_epochs = 0;
        } else {
            self.plateau_bad_epochs += 1;
        }
        if self.plateau_bad_epochs > patience {
            let reduced = self.plateau_lr * factor;
            if self.plateau_lr - reduced > PLATEAU_EPS {
                self.plateau_lr = reduced;
            }
            self.plateau_bad_epochs = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lrs(s: &LrSchedule, epochs: usize) -> Vec<f64> {
        (0..epochs).map(|e| s.lr(e)).collect()
    }

    fn assert_seq(got: &[f64], want: &[f64]) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((g - w).abs() < 1e-12, "epoch {i}: {g} vs {w} (all: {got:?})");
        }
    }

    #[test]
    fn step_lr_matches_pytorch() {
        // torch StepLR(SGD(lr=0.1), step_size=3, gamma=0.1) over 8 epochs.
        let s = LrSchedule::new(ScheduleKind::Step { step_size: 3, gamma: 0.1 }, 0.1, 0, 8).unwrap();
        assert_seq(&lrs(&s, 8), &[0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001]);
    }

    #[test]
    fn cosine_matches_pytorch() {
        // torch CosineAnnealingLR(SGD(lr=0.1), T_max=4) over 4 epochs:
        // 0.1, 0.08535533905932738, 0.05, 0.014644660940672627
        let s = LrSchedule::new(ScheduleKind::Cosine, 0.1, 0, 4).unwrap();
        assert_seq(&lrs(&s, 4), &[0.1, 0.085_355_339_059_327_38, 0.05, 0.014_644_660_940_672_627]);
    }

    #[test]
    fn warmup_then_cosine_matches_sequential_lr() {
        // SequentialLR([LinearLR(start_factor=1/3, total_iters=2), CosineAnnealingLR(T_max=4)], [2])
        // with lr 0.3 over 6 epochs.
        let s = LrSchedule::new(ScheduleKind::Cosine, 0.3, 2, 6).unwrap();
        assert_seq(&lrs(&s, 6), &[0.1, 0.2, 0.3, 0.256_066_017_177_982_1, 0.15, 0.043_933_982_822_017_88]);
        let constant = LrSchedule::new(ScheduleKind::Constant, 0.4, 3, 5).unwrap();
        assert_seq(&lrs(&constant, 5), &[0.1, 0.2, 0.3, 0.4, 0.4]);
    }

    #[test]
    fn plateau_min_reduces_after_patience_as_pytorch() {
        // torch ReduceLROnPlateau(SGD(lr=1.0), mode='min', factor=0.5, patience=2) fed these losses;
        // the lr used in each epoch (before that epoch's step) is asserted below.
        let losses = [1.0, 0.9, 0.9, 0.95, 0.9, 0.89999, 0.91, 0.92, 0.5, 0.6];
        let kind = ScheduleKind::Plateau { mode: PlateauMode::Min, factor: 0.5, patience: 2 };
        let mut s = LrSchedule::new(kind, 1.0, 0, 10).unwrap();
        let mut got = vec![];
        for (e, &loss) in losses.iter().enumerate() {
            got.push(s.lr(e));
            s.end_epoch(e, loss);
        }
        // Epochs 2, 3, 4 do not improve on 0.9 (0.9 is not below 0.9 * (1 - 1e-4)): the third
        // bad epoch (4) exceeds patience 2 and halves the rate from epoch 5; 0.89999 is no
        // relative improvement either, nor are 0.91, 0.92: epoch 7 halves it again from epoch 8.
        assert_seq(&got, &[1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25]);
    }

    #[test]
    fn plateau_max_and_warmup_skip() {
        let kind = ScheduleKind::Plateau { mode: PlateauMode::Max, factor: 0.1, patience: 0 };
        let mut s = LrSchedule::new(kind, 0.2, 1, 5).unwrap();
        let accs = [0.1, 0.5, 0.6, 0.6, 0.7];
        let mut got = vec![];
        for (e, &a) in accs.iter().enumerate() {
            got.push(s.lr(e));
            s.end_epoch(e, a);
        }
        // warm-up epoch 0 at 0.1 is not monitored; 0.5 sets the best, 0.6 improves, the second
        // 0.6 is a bad epoch beyond patience 0: epoch 4 runs at 0.02.
        assert_seq(&got, &[0.1, 0.2, 0.2, 0.2, 0.020_000_000_000_000_004]);
    }

    #[test]
    fn impossible_settings_are_errors() {
        assert!(LrSchedule::new(ScheduleKind::Step { step_size: 0, gamma: 0.1 }, 0.1, 0, 3).is_err());
        assert!(LrSchedule::new(ScheduleKind::Step { step_size: 1, gamma: 0.0 }, 0.1, 0, 3).is_err());
        let kind = ScheduleKind::Plateau { mode: PlateauMode::Min, factor: 1.5, patience: 1 };
        assert!(LrSchedule::new(kind, 0.1, 0, 3).is_err());
        assert!(LrSchedule::new(ScheduleKind::Cosine, 0.1, 3, 3).is_err());
    }
}
