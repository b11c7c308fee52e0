//! `--weights` (predict, eval), `train --init-from` and `export --format torchvision` with the
//! PyTorch fixtures of tests/fixtures/torchvision (see make_torchvision_fixtures.py): predictions
//! equal PyTorch's, training starts from the file's values, an export reads back exactly, and bad
//! files are one-line errors.

use ferronet::train::checkpoint;
use ferronet::weights::read_state_dict;
use ferronet_test_support::cli_run::{ferronet, path_arg, single_error_line};
use ferronet_test_support::scratch_dir;
use std::path::{Path, PathBuf};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torchvision").join(name)
}

/// PyTorch's softmax for the fixture image, normalised with ImageNet's mean and std.
fn pytorch_probabilities() -> Vec<f64> {
    let all: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(fixture("fixtures.json")).unwrap()).unwrap();
    all["shufflenet_v2_x0_5"]["png_probabilities"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap()).collect()
}

/// On the CPU and on the simulator (the CUDA kernels).
#[test]
fn predict_with_torchvision_weights_equals_pytorch() {
    let want = pytorch_probabilities();
    let image = fixture("shufflenet_v2_x0_5.png");
    for (file, device) in [("shufflenet_v2_x0_5.pth", "cpu"), ("shufflenet_v2_x0_5.safetensors", "cpu"), ("shufflenet_v2_x0_5.pth", "sim")] {
        let weights = fixture(file);
        let out = ferronet(&[
            "predict", "--weights", path_arg(&weights), "--model", "shufflenet_v2_x0_5", "--classes", "10", "--input", "3,64,64",
            "--normalize", "imagenet", "--top", "10", "--device", device, "--json", path_arg(&image),
        ]);
        assert_eq!(out.status.code(), Some(0), "{file}: {}", String::from_utf8_lossy(&out.stderr));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let top = got[0]["top"].as_array().unwrap();
        assert_eq!(top.len(), 10);
        let mut diff: f64 = 0.0;
        for entry in top {
            // Without class names, a class is its index.
            let class: usize = entry["class"].as_str().unwrap().parse().unwrap();
            diff = diff.max((entry["probability"].as_f64().unwrap() - want[class]).abs());
        }
        eprintln!("{file} on {device}: max |probability - PyTorch| = {diff:e}");
        assert!(diff < 1e-5, "{file} on {device}: probabilities differ from PyTorch's by {diff}");
    }
}

/// `--resize 12` fits the 29x37 image of tests/fixtures/resize as torchvision's Resize(12) and
/// CenterCrop(12) (the crop defaults to the input), not stretched to 12x12; a crop that is not the
/// model's input is refused.
#[test]
fn predict_resizes_and_crops_as_torchvision_when_asked() {
    let image = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resize/input.png");
    let weights = fixture("small_cnn.safetensors");
    let model = ["--weights", path_arg(&weights), "--model", "small_cnn", "--classes", "10", "--input", "1,12,12", "--normalize", "none"];
    let probabilities = |extra: &[&str]| {
        let out = ferronet(&[&["predict", "--top", "10", "--device", "cpu", "--json"], &model[..], extra, &[path_arg(&image)]].concat());
        assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
        let got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut top: Vec<(String, f64)> = got[0]["top"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["class"].as_str().unwrap().to_string(), e["probability"].as_f64().unwrap()))
            .collect();
        top.sort_by(|a, b| a.0.cmp(&b.0));
        top
    };
    let stretched = probabilities(&[]);
    let cropped = probabilities(&["--resize", "12"]);
    assert_eq!(probabilities(&["--resize", "12", "--center-crop", "12"]), cropped);
    let moved = cropped.iter().zip(&stretched).map(|(a, b)| (a.1 - b.1).abs()).fold(0.0, f64::max);
    assert!(moved > 1e-3, "resizing and cropping gave the stretched image's probabilities");
    let err = single_error_line(&ferronet(&[&["predict", "--device", "cpu", "--resize", "16", "--center-crop", "10"], &model[..], &[path_arg(&image)]].concat()));
    assert!(err.contains("--center-crop 10 gives 10x10 images but the model's input is 12x12"), "{err}");
}

#[test]
fn eval_with_weights_runs_on_a_dataset() {
    let weights = fixture("small_cnn.safetensors");
    let out = ferronet(&[
        "eval", "--weights", path_arg(&weights), "--model", "small_cnn", "--input", "1,12,12", "--dataset", "synthetic",
        "--normalize", "dataset", "--device", "cpu", "--json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["weights"], path_arg(&weights));
    assert_eq!(report["samples"], 1000);
}

#[test]
fn train_init_from_starts_from_the_files_weights_and_export_reads_back_exactly() {
    let dir = scratch_dir("init-from");
    let out_dir = dir.join("run");
    let weights = fixture("small_cnn_nested.pth");
    // A learning rate too small to move the weights in one epoch leaves the file's values.
    let out = ferronet(&[
        "train", "--init-from", path_arg(&weights), "--input", "1,12,12", "--epochs", "1", "--limit", "64", "--lr", "1e-9",
        "--weight-decay", "0", "--momentum", "0", "--device", "cpu", "--workers", "1", "--quiet", "--out", path_arg(&out_dir),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let (trained, _) = checkpoint::load(&out_dir.join("checkpoint.safetensors")).unwrap();
    let file = read_state_dict(&weights).unwrap();
    for name in ["conv1.weight", "conv2.weight", "fc1.weight", "fc2.bias"] {
        let got = &trained.iter().find(|t| t.name == name).unwrap().data;
        let want = &file.iter().find(|t| t.name == format!("module.{name}")).unwrap().data;
        let diff = got.iter().zip(want).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-6, "{name} moved by {diff} from the --init-from values");
    }

    let exported = dir.join("exported.safetensors");
    let out = ferronet(&["export", "--checkpoint", path_arg(&out_dir.join("checkpoint.safetensors")), "--format", "torchvision", "--out", path_arg(&exported)]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let mut back = read_state_dict(&exported).unwrap();
    // torchvision's BatchNorm2d counter: one per training step (64 images, batches of 64).
    for layer in ["bn1", "bn2"] {
        let counter = back.iter().position(|t| t.name == format!("{layer}.num_batches_tracked")).expect("strict loading needs it");
        assert_eq!((back[counter].shape.len(), back[counter].data[0]), (0, 1.0));
        back.remove(counter);
    }
    let mut model: Vec<_> = trained.into_iter().filter(|t| !t.name.starts_with("optimizer.")).collect();
    model.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(back, model, "the export holds exactly the checkpoint's parameters and statistics");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The tensor `name` of a state_dict or checkpoint.
fn values<'a>(tensors: &'a [ferronet::weights::NamedTensor], name: &str) -> &'a [f32] {
    &tensors.iter().find(|t| t.name == name).unwrap_or_else(|| panic!("no {name}")).data
}

#[test]
fn fine_tuning_replaces_the_classifier_and_trains_only_it() {
    let dir = scratch_dir("fine-tune");
    let out_dir = dir.join("run");
    let weights = fixture("small_cnn.pth");
    let out = ferronet(&[
        "train", "--init-from", path_arg(&weights), "--replace-classifier", "--freeze-backbone", "--input", "1,12,12",
        "--epochs", "1", "--limit", "128", "--lr", "0.01", "--device", "cpu", "--workers", "1", "--out", path_arg(&out_dir),
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("--replace-classifier: fc2.weight, fc2.bias keep their initialisation"), "{stderr}");
    let (trained, _) = checkpoint::load(&out_dir.join("checkpoint.safetensors")).unwrap();
    let file = read_state_dict(&weights).unwrap();
    // The frozen backbone keeps the file's values exactly; the classifier is neither the file's nor still its start.
    for name in ["conv1.weight", "bn2.bias", "fc1.weight", "fc1.bias"] {
        assert_eq!(values(&trained, name), values(&file, name), "{name}");
    }
    let (got, from_file) = (values(&trained, "fc2.weight"), values(&file, "fc2.weight"));
    assert!(got.iter().zip(from_file).all(|(a, b)| (a - b).abs() > 1e-6 || *b == 0.0), "fc2.weight was loaded from the file");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_weights_are_one_line_errors() {
    let dir = scratch_dir("bad-weights");
    let image = fixture("shufflenet_v2_x0_5.png");
    let predict = |weights: &Path, extra: &[&str]| {
        let mut args = vec!["predict", "--weights", path_arg(weights), "--device", "cpu"];
        args.extend_from_slice(extra);
        args.push(path_arg(&image));
        single_error_line(&ferronet(&args))
    };
    let shufflenet = ["--model", "shufflenet_v2_x0_5", "--input", "3,64,64"];

    let marker = Path::new("/tmp/ferronet-tampered-pth-was-executed");
    let _ = std::fs::remove_file(marker);
    let err = predict(&fixture("tampered.pth"), &shufflenet);
    assert!(err.contains("references posix.system, which is not a tensor"), "{err}");
    assert!(!marker.exists(), "the tampered file's command ran");

    let bytes = std::fs::read(fixture("shufflenet_v2_x0_5.pth")).unwrap();
    let truncated = dir.join("truncated.pth");
    std::fs::write(&truncated, &bytes[..bytes.len() / 3]).unwrap();
    let err = predict(&truncated, &shufflenet);
    assert!(err.contains("truncated.pth") && err.contains("truncated or corrupt"), "{err}");

    // The default --classes (1000) is not the file's 10.
    let err = predict(&fixture("shufflenet_v2_x0_5.pth"), &shufflenet);
    assert!(err.contains("fc.weight is [10, 1024] in the file, [1000, 1024] in the model"), "{err}");

    let err = predict(&fixture("shufflenet_v2_x0_5.pth"), &["--model", "resnet18", "--classes", "10"]);
    assert!(err.contains("does not hold every weight of resnet18: missing keys"), "{err}");
    assert!(err.contains("and 94 more; unexpected keys (ignored): conv1.0.weight"), "{err}");
    let err = predict(&fixture("shufflenet_v2_x0_5.pth"), &["--model", "no_such_net"]);
    assert!(err.contains("unknown model `no_such_net`"), "{err}");
    let err = predict(&dir.join("missing.pth"), &shufflenet);
    assert!(err.contains("missing.pth"), "{err}");

    let err = single_error_line(&ferronet(&[
        "train", "--init-from", path_arg(&fixture("tampered.pth")), "--device", "cpu", "--out", path_arg(&dir.join("run")),
    ]));
    assert!(err.contains("posix.system"), "{err}");
    let err = single_error_line(&ferronet(&["train", "--normalize", "imagenet", "--device", "cpu", "--out", path_arg(&dir.join("run"))]));
    assert!(err.contains("--normalize imagenet needs a 3-channel input, not 1"), "{err}");
    // Weights of another model fail once the model is built, after the data is read: the run
    // directory made for the run goes again, with the parents the run created.
    let run_dir = dir.join("runs/1");
    let err = single_error_line(&ferronet(&[
        "train", "--init-from", path_arg(&fixture("shufflenet_v2_x0_5.pth")), "--device", "cpu", "--out", path_arg(&run_dir),
    ]));
    assert!(err.contains("shares no parameter name with small_cnn"), "{err}");
    assert!(!dir.join("run").exists() && !dir.join("runs").exists(), "a failed run leaves no empty run directory");
    std::fs::remove_dir_all(&dir).unwrap();
}
