//! Datasets as a user names them on the command line.

use ferronet_test_support::scratch_dir;
use ferronet_test_support::tiny_imagenet::{write, VAL_CLASSES};
use std::process::Command;

fn ferronet(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferronet")).args(args).output().expect("ferronet runs");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_tiny_imagenet_directory_trains_and_evaluates() {
    let root = scratch_dir("cli-tiny-imagenet");
    let data = write(&root.join("tiny-imagenet-200"));
    let data = data.to_str().unwrap();
    let run = root.join("run");
    let (ok, stdout, stderr) = ferronet(&[
        "train", "--dataset", "tiny-imagenet", "--data-dir", data, "--input", "3,16,16", "--model", "small_cnn", "--epochs", "1",
        "--batch-size", "4", "--device", "cpu", "--workers", "1", "--quiet", "--out", run.to_str().unwrap(),
    ]);
    assert!(ok, "train failed:\n{stdout}{stderr}");
    let checkpoint = run.join("checkpoint.safetensors");
    let (ok, stdout, stderr) = ferronet(&["eval", "--checkpoint", checkpoint.to_str().unwrap(), "--device", "cpu", "--json"]);
    assert!(ok, "eval failed:\n{stdout}{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    // Evaluated on the labelled validation images, every one counted, classes named by words.txt.
    assert_eq!((report["dataset"].as_str(), report["evaluated_on"].as_str()), (Some("tiny-imagenet"), Some("test")), "{report}");
    assert_eq!(report["samples"].as_u64(), Some(VAL_CLASSES.len() as u64), "{report}");
    let rows = report["confusion_matrix"].as_array().expect("a confusion matrix");
    let counted: u64 = rows.iter().flat_map(|row| row.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(counted, VAL_CLASSES.len() as u64, "{report}");
    assert_eq!(report["per_class"][0]["class"].as_str(), Some("goldfish"), "{report}");
    let _ = std::fs::remove_dir_all(&root);
}
