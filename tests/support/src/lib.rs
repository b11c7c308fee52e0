//! Helpers shared by ferronet's integration tests (tests/<layer>/main.rs), one module per concern.
//! A library crate, so each test binary uses the subset it needs without dead code.

pub mod bench;
pub mod cli_run;
pub mod emulated_driver;
pub mod fuzz;
pub mod gpu;
pub mod graphs;
pub mod mnist_files;
pub mod parallel;
pub mod sim;
pub mod stored;
pub mod tiny_imagenet;
pub mod train;

use std::path::{Path, PathBuf};

/// A fresh, empty directory under the system's temporary directory, unique to this process and
/// `name` (tests of one binary share the process, so each passes its own name).
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferronet-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Where the `dataset-fashion-mnist` Debian package installs the real Fashion-MNIST files.
pub const FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// The Fashion-MNIST directory; fails naming the package to install when it is missing, so a test
/// that needs the real files never passes without them.
#[track_caller]
pub fn fashion_mnist_dir() -> &'static Path {
    let dir = Path::new(FASHION_MNIST);
    assert!(
        dir.is_dir(),
        "{FASHION_MNIST} is missing: install it with `apt-get update && apt-get install -y dataset-fashion-mnist` (bash .ci/run does)"
    );
    dir
}

/// Asserts that `err` is one line mentioning every one of `parts`.
#[track_caller]
pub fn assert_mentions(err: &ferronet::Error, parts: &[&str]) {
    let msg = err.to_string();
    assert!(!msg.contains('\n'), "errors are one line: {msg}");
    for p in parts {
        assert!(msg.contains(p), "expected {p:?} in: {msg}");
    }
}
