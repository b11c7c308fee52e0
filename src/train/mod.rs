//! Training, evaluation and prediction: the configuration, the learning-rate schedules, the
//! metrics, and what a run writes (history, metrics, plots, checkpoints) in its directory.

pub mod checkpoint;
pub mod config;
pub mod files;
pub mod history;
pub mod metrics;
pub mod plot;
pub mod schedule;
