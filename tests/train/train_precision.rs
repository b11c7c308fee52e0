//! Training at reduced precision (emulated storage: f32 buffers holding values rounded to the
//! format) on the CPU: small_cnn on Fashion-MNIST at bf16 reaches the fp32 run's test accuracy
//! within 0.5 points, and an fp16 run records its loss scale and overflow skips in history.csv.
//! The runs use the judged recipe (tests/train/train_fashion_mnist.rs) on the first images only,
//! so that the test stays short; the measured accuracies are printed.

use ferronet::train::history::parse_history_csv;
use ferronet_test_support::cli_run::{ferronet_bin, run};
use ferronet_test_support::fashion_mnist_dir;
use ferronet_test_support::scratch_dir;
use std::path::Path;
use std::process::Command;

/// Training images of each run.
const LIMIT: &str = "12000";

/// One epoch of the default recipe at `precision`; the test top-1 and the run directory.
fn train_at(root: &Path, precision: &str) -> (f64, std::path::PathBuf) {
    let out_dir = root.join(precision);
    let mut cmd = Command::new(ferronet_bin());
    cmd.args(["train", "--dataset", "fashion-mnist", "--epochs", "1", "--limit", LIMIT, "--device", "cpu", "--quiet"])
        .args(["--precision", precision, "--out"])
        .arg(&out_dir);
    let out = run(cmd);
    assert!(out.status.success(), "{precision}: {}", String::from_utf8_lossy(&out.stderr));
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("metrics.json")).unwrap()).unwrap();
    (metrics["val_top1"].as_f64().unwrap(), out_dir)
}

#[test]
fn bf16_reaches_the_fp32_accuracy_on_fashion_mnist_and_fp16_records_its_loss_scale() {
    fashion_mnist_dir();
    let root = scratch_dir("precision");
    let (fp32, _) = train_at(&root, "fp32");
    let (bf16, _) = train_at(&root, "bf16");
    let (fp16, fp16_dir) = train_at(&root, "fp16");
    eprintln!("fashion-mnist, {LIMIT} images, 1 epoch: test top-1 fp32 {fp32:.4}, bf16 {bf16:.4}, fp16 {fp16:.4}");
    assert!(bf16 >= fp32 - 0.005, "bf16 top-1 {bf16:.4} is more than 0.5 points below fp32's {fp32:.4}");
    assert!(fp16 >= fp32 - 0.005, "fp16 top-1 {fp16:.4} is more than 0.5 points below fp32's {fp32:.4}");
    let history = parse_history_csv(&std::fs::read_to_string(fp16_dir.join("history.csv")).unwrap()).unwrap();
    let last = history.last().unwrap();
    // 65536 at the start; one backoff per overflow, no growth within 2000 steps.
    assert_eq!(last.loss_scale, 65536.0 * 0.5f64.powi(last.overflow_skips as i32), "{last:?}");
    std::fs::remove_dir_all(&root).unwrap();
}
