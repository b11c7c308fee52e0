//! The judged run: `ferronet train --dataset fashion-mnist --epochs 3` with no other flag (the
//! small_cnn recipe: Adam, lr 0.002 annealed by cosine, dropout 0.1, batch 64) reaches at least
//! 90% test accuracy on the CPU.
//! CI installs the files with `apt-get install -y dataset-fashion-mnist`.

use ferronet_test_support::cli_run::{ferronet_bin, run};
use ferronet_test_support::fashion_mnist_dir;
use ferronet_test_support::scratch_dir;
use std::process::Command;
use std::time::Instant;

#[test]
fn the_default_recipe_reaches_90_percent_on_fashion_mnist() {
    fashion_mnist_dir();
    let root = scratch_dir("fashion-mnist");
    let out_dir = root.join("run");
    let mut cmd = Command::new(ferronet_bin());
    // --device, --quiet and --out choose where and how it runs, not the recipe.
    cmd.args(["train", "--dataset", "fashion-mnist", "--epochs", "3", "--device", "cpu", "--quiet", "--out"]).arg(&out_dir);
    let start = Instant::now();
    let out = run(cmd);
    let seconds = start.elapsed().as_secs_f64();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metrics: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(out_dir.join("metrics.json")).unwrap()).unwrap();
    let top1 = metrics["val_top1"].as_f64().unwrap();
    eprintln!("fashion-mnist defaults: test top-1 {top1:.4} after 3 epochs in {seconds:.1} s");
    assert_eq!((metrics["evaluated_on"].as_str(), metrics["samples"].as_u64()), (Some("test"), Some(10_000)));
    let config = &metrics["config"];
    assert_eq!((config["optimizer"].as_str(), config["lr"].as_f64(), config["scheduler"].as_str()), (Some("Adam"), Some(0.002), Some("Cosine")));
    assert!(top1 >= 0.90, "test top-1 {top1:.4} is below 0.90");
    std::fs::remove_dir_all(&root).unwrap();
}
