//! `--no-aux` on train, eval and predict: inception_v3 and googlenet without their auxiliary
//! classifiers, so inception_v3 takes inputs below 299x299 and weights without AuxLogits load.

use ferronet::train::checkpoint;
use ferronet_test_support::cli_run::{ferronet, path_arg, single_error_line};
use ferronet_test_support::scratch_dir;


#[test]
fn inception_v3_below_299_needs_no_aux_and_leaves_no_run_directory() {
    let dir = scratch_dir("no-aux-inception");
    let out_dir = dir.join("runs/1");
    let args = ["train", "--model", "inception_v3", "--input", "3,75,75", "--device", "cpu", "--out", path_arg(&out_dir)];
    let line = single_error_line(&ferronet(&args));
    assert!(line.contains("299x299") && line.contains("--no-aux"), "{line}");
    assert!(!dir.join("runs").exists(), "a refused run creates no directory");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// googlenet at 32x32 trained with --no-aux has no aux1/aux2 tensors; its weights predict and
/// evaluate as googlenet only with --no-aux, and its checkpoint evaluates as it was trained.
#[test]
fn googlenet_trains_predicts_and_evaluates_without_its_auxiliary_heads() {
    let dir = scratch_dir("no-aux-googlenet");
    let out_dir = dir.join("run");
    let common = ["--device", "cpu", "--workers", "1"];
    let out = ferronet(&[
        &["train", "--model", "googlenet", "--no-aux", "--input", "3,32,32", "--limit", "16", "--batch-size", "8", "--epochs", "1"][..],
        &common,
        &["--quiet", "--out", path_arg(&out_dir)],
    ]
    .concat());
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let ckpt = out_dir.join("checkpoint.safetensors");
    let (tensors, meta) = checkpoint::load(&ckpt).unwrap();
    assert!(meta.config.no_aux);
    assert!(tensors.iter().any(|t| t.name.starts_with("inception5b.")));
    assert!(!tensors.iter().any(|t| t.name.starts_with("aux")), "no auxiliary head was built");

    let image = dir.join("image.png");
    image::RgbImage::from_pixel(40, 40, image::Rgb([90, 160, 30])).save(&image).unwrap();
    let weights = ["--weights", path_arg(&ckpt), "--model", "googlenet", "--input", "3,32,32", "--classes", "10"];
    let predict = |no_aux: &[&str]| ferronet(&[&["predict"][..], &weights, no_aux, &common[..2], &["--json", path_arg(&image)]].concat());
    let line = single_error_line(&predict(&[]));
    assert!(line.contains("missing keys") && line.contains("aux1."), "{line}");
    let out = predict(&["--no-aux"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let predictions: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(predictions[0]["top"].as_array().unwrap().len(), 5);

    // The checkpoint remembers --no-aux; --no-aux on eval is accepted with it too.
    for extra in [&[][..], &["--no-aux"][..]] {
        let out = ferronet(&[&["eval", "--checkpoint", path_arg(&ckpt), "--json"][..], &common, extra].concat());
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!((report["model"].as_str(), report["samples"].as_u64()), (Some("googlenet"), Some(1000)));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
