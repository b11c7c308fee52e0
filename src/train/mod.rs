//! Training, evaluation and prediction: the configuration, the learning-rate schedules, the
//! metrics, and what a run writes (history, metrics, plots, checkpoints) in its directory.

pub mod checkpoint;
pub mod config;
pub mod evaluate;
pub mod files;
pub mod history;
pub mod interrupt;
pub mod loss_scale;
pub mod lr_find;
pub mod metrics;
pub mod model_setup;
pub mod outputs;
pub mod plot;
pub mod pretrained;
pub mod progress;
pub mod recipe;
pub mod resume;
pub mod schedule;
pub mod session;
pub mod trainer;
