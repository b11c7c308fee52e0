//! `ferronet summary` and `ferronet models` from the command line.

use std::process::Command;

fn ferronet(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_ferronet")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn summary_json_has_the_totals_and_layers() {
    let (code, out, err) = ferronet(&["summary", "--model", "resnet18", "--classes", "1000", "--input", "3,224,224", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["trainable_params"], 11_689_512);
    assert_eq!(v["non_trainable_params"], 9_600);
    assert_eq!(v["total_params"], 11_699_112);
    assert_eq!(v["macs"], 1_814_073_344u64);
    assert!(v["activation_bytes"].as_u64().unwrap() > 0);
    let layers = v["layers"].as_array().unwrap();
    let conv1 = layers.iter().find(|l| l["name"] == "conv1").unwrap();
    assert_eq!(conv1["output_shape"], serde_json::json!([64, 112, 112]));
    assert_eq!(conv1["params"], 9_408);
}

#[test]
fn summary_table_and_model_list() {
    let (code, out, _) = ferronet(&["summary", "--model", "alexnet_bn", "--classes", "5"]);
    assert_eq!(code, 0);
    assert!(out.contains("trainable params:      58,304,581"), "{out}");
    assert!(out.contains("non-trainable params:  2,752"), "{out}");
    assert!(out.contains("total params:          58,307,333"), "{out}");
    let (code, out, _) = ferronet(&["models"]);
    assert_eq!(code, 0);
    assert_eq!(out.lines().count(), ferronet::models::names().len());
    assert!(out.lines().any(|l| l.starts_with("efficientnet_b0 ")));
}

#[test]
fn bad_flags_are_one_line_errors() {
    for (args, needle) in [
        (vec!["summary", "--model", "resnet99"], "known models: small_cnn"),
        (vec!["summary", "--model", "resnet18", "--input", "3x224x224"], "C,H,W"),
        (vec!["summary", "--model", "inception_v3", "--input", "3,32,32"], "cannot take a 3x32x32 input"),
        (vec!["summary", "--model", "resnet18", "--batch", "0"], "--batch"),
    ] {
        let (code, out, err) = ferronet(&args);
        assert_eq!(code, 2, "{args:?}");
        assert!(out.is_empty());
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
