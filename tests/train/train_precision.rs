//! Training at reduced precision (emulated storage: f32 buffers holding values rounded to the
//! format) on the CPU: small_cnn on Fashion-MNIST at bf16 reaches the fp32 run's test accuracy
//! within 0.5 points, and an fp16 run records its loss scale and overflow skips in history.csv.
//! The Fashion-MNIST runs use the judged recipe (tests/train/train_fashion_mnist.rs) for one
//! epoch on the first images only (each run's evaluation on the 10000 test images is a fixed
//! cost); the measured accuracies are printed. Measured when written: fp32 0.8293, bf16 0.8286
//! (fp16 0.8284, with 2 overflow skips and a final scale of 16384).

use ferronet::train::history::parse_history_csv;
use ferronet_test_support::cli_run::{ferronet_bin, run};
use ferronet_test_support::fashion_mnist_dir;
use ferronet_test_support::scratch_dir;
use std::path::Path;
use std::process::Command;

/// Training images of each run.
const LIMIT: &str = "6000";

/// One epoch of the default recipe at `precision`: the test top-1.
fn train_at(root: &Path, precision: &str) -> f64 {
    let out_dir = root.join(precision);
    let mut cmd = Command::new(ferronet_bin());
    cmd.args(["train", "--dataset", "fashion-mnist", "--epochs", "1", "--limit", LIMIT, "--device", "cpu", "--quiet"])
        .args(["--precision", precision, "--out"])
        .arg(&out_dir);
    let out = run(cmd);
    assert!(out.status.success(), "{precision}: {}", String::from_utf8_lossy(&out.stderr));
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("metrics.json")).unwrap()).unwrap();
    metrics["val_top1"].as_f64().unwrap()
}

#[test]
fn bf16_reaches_the_fp32_accuracy_on_fashion_mnist() {
    fashion_mnist_dir();
    let root = scratch_dir("precision-fashion-mnist");
    let fp32 = train_at(&root, "fp32");
    let bf16 = train_at(&root, "bf16");
    eprintln!("fashion-mnist, {LIMIT} images, 1 epoch: test top-1 fp32 {fp32:.4}, bf16 {bf16:.4}");
    assert!(bf16 >= fp32 - 0.005, "bf16 top-1 {bf16:.4} is more than 0.5 points below fp32's {fp32:.4}");
    std::fs::remove_dir_all(&root).unwrap();
}

#[test]
fn an_fp16_run_records_its_loss_scale_and_overflow_skips() {
    let root = scratch_dir("precision-fp16");
    let out_dir = root.join("run");
    let mut cmd = Command::new(ferronet_bin());
    cmd.args(["train", "--device", "cpu", "--quiet", "--workers", "1", "--model", "lenet5", "--dataset", "synthetic"])
        .args(["--limit", "256", "--batch-size", "64", "--epochs", "2", "--precision", "fp16", "--out"])
        .arg(&out_dir);
    let out = run(cmd);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let history = parse_history_csv(&std::fs::read_to_string(out_dir.join("history.csv")).unwrap()).unwrap();
    assert_eq!(history.len(), 2);
    for r in &history {
        // 65536 at the start; one backoff per overflow so far, no growth within 2000 steps.
        let skipped: usize = history.iter().take_while(|h| h.epoch <= r.epoch).map(|h| h.overflow_skips).sum();
        assert_eq!(r.loss_scale, 65536.0 * 0.5f64.powi(skipped as i32), "{r:?}");
        assert!(r.train_loss.is_finite());
    }
    std::fs::remove_dir_all(&root).unwrap();
}
