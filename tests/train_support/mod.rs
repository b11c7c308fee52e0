//! Helpers shared by the training tests: a quiet CPU configuration writing to a fresh directory.
#![allow(dead_code)] // each test binary uses a different subset

use ferronet::train::config::TrainConfig;
use std::path::PathBuf;

/// A fresh, empty directory under the system's temporary directory.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferronet-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The default configuration on the CPU, quiet, writing to `out`.
pub fn cpu_config(out: PathBuf) -> TrainConfig {
    TrainConfig { out: Some(out), quiet: true, device: "cpu".parse().unwrap(), ..TrainConfig::default() }
}
