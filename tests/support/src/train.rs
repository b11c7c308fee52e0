//! Helpers shared by the training tests: a quiet CPU configuration, the lock that keeps
//! in-process runs from consuming each other's stop countdown, and histories without wall times.

use ferronet::train::config::TrainConfig;
use ferronet::train::history::EpochRecord;
use std::path::PathBuf;
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// The default configuration on the CPU, quiet, writing to `out`.
pub fn cpu_config(out: PathBuf) -> TrainConfig {
    TrainConfig { out: Some(out), quiet: true, device: "cpu".parse().unwrap(), ..TrainConfig::default() }
}

/// Guards the process-wide stop countdown (`ferronet::train::interrupt::request_after`): every
/// in-process training run in a test binary counts its steps down on it, so a test that arms it
/// trains alone ([`exclusive_training`]) while the others share ([`shared_training`]).
static TRAINING: RwLock<()> = RwLock::new(());

/// Held by a test while it trains in this process without arming the stop countdown.
pub fn shared_training() -> RwLockReadGuard<'static, ()> {
    // A panicking test poisons the lock; the countdown it guards is still consistent.
    TRAINING.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Held by a test while it arms the stop countdown and trains in this process.
pub fn exclusive_training() -> RwLockWriteGuard<'static, ()> {
    TRAINING.write().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A run's history without its wall-clock columns, for comparing runs.
pub fn deterministic(history: &[EpochRecord]) -> Vec<EpochRecord> {
    history
        .iter()
        .map(|r| EpochRecord { epoch_seconds: 0.0, train_images_per_second: 0.0, inference_ms_per_batch: 0.0, ..r.clone() })
        .collect()
}
