//! torchvision weights in: the state_dicts `tests/fixtures/make_torchvision_fixtures.py` saved
//! with PyTorch (.pth and safetensors) load into the zoo's models, whose eval-mode logits for the
//! fixed input then equal PyTorch's; tampered, truncated and mismatched files are one-line errors.

use ferronet::cpu::CpuBackend;
use ferronet::exec::{Batch, Executor};
use ferronet::models::{build, ModelOptions};
use ferronet::weights::{load_state_dict, read_state_dict};
use ferronet_test_support::scratch_dir;
use std::path::{Path, PathBuf};

/// The largest |ferronet - PyTorch| accepted for a logit (the logits are a few units).
const LOGIT_TOLERANCE: f32 = 1e-4;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torchvision").join(name)
}

/// PyTorch's record of one model: its input shape [N, C, H, W], classes and logits.
struct Expected {
    input: Vec<usize>,
    classes: usize,
    logits: Vec<f32>,
}

fn expected(model: &str) -> Expected {
    let text = std::fs::read_to_string(fixture("fixtures.json")).unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    let entry = &all[model];
    let numbers = |key: &str| entry[key].as_array().unwrap_or_else(|| panic!("{model}.{key}")).iter().map(|v| v.as_f64().unwrap()).collect::<Vec<_>>();
    Expected {
        input: numbers("input").into_iter().map(|v| v as usize).collect(),
        classes: entry["classes"].as_u64().unwrap() as usize,
        logits: numbers("logits").into_iter().map(|v| v as f32).collect(),
    }
}

fn read_f32(path: &Path) -> Vec<f32> {
    std::fs::read(path).unwrap().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}

/// Loads `file` into `model` on the CPU and returns the largest logit difference from PyTorch's.
fn max_logit_difference(model: &str, file: &str) -> f32 {
    let want = expected(model);
    let input = [want.input[1], want.input[2], want.input[3]];
    let graph = build(model, &ModelOptions::new(want.classes, input)).unwrap();
    let mut ex = Executor::<f32, _>::new(CpuBackend::new(), graph, 0).unwrap();
    let path = fixture(file);
    let tensors = read_state_dict(&path).unwrap_or_else(|e| panic!("{e}"));
    let report = load_state_dict(&mut ex, &tensors, &path).unwrap();
    assert!(report.lines().is_empty(), "{file}: {:?}", report.lines());
    assert_eq!(report.loaded, ex.graph().params.len(), "{file}");
    let x = read_f32(&fixture(&format!("{model}.input.f32")));
    let logits = ex.infer(Batch::Host(&x)).unwrap();
    assert_eq!(logits.len(), want.logits.len());
    logits.iter().zip(&want.logits).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
}

#[test]
fn torchvision_shufflenet_logits_equal_pytorch_from_pth_and_safetensors() {
    for file in ["shufflenet_v2_x0_5.pth", "shufflenet_v2_x0_5.safetensors"] {
        let diff = max_logit_difference("shufflenet_v2_x0_5", file);
        eprintln!("{file}: max |logit - PyTorch| = {diff:e}");
        assert!(diff <= LOGIT_TOLERANCE, "{file}: logits differ from PyTorch's by {diff}");
    }
}

/// f16, bf16 and f64 tensors, a transposed weight, a bias at an offset into a larger storage,
/// and (nested.pth) a DataParallel `module.` prefix inside a checkpoint's "state_dict".
#[test]
fn small_cnn_storage_layouts_and_types_load_exactly() {
    for file in ["small_cnn.pth", "small_cnn.safetensors", "small_cnn_nested.pth"] {
        let diff = max_logit_difference("small_cnn", file);
        eprintln!("{file}: max |logit - PyTorch| = {diff:e}");
        assert!(diff <= LOGIT_TOLERANCE, "{file}: logits differ from PyTorch's by {diff}");
    }
    let from_pth = read_state_dict(&fixture("small_cnn.pth")).unwrap();
    let mut from_safetensors = read_state_dict(&fixture("small_cnn.safetensors")).unwrap();
    let mut from_pth_sorted = from_pth.clone();
    from_pth_sorted.sort_by(|a, b| a.name.cmp(&b.name));
    from_safetensors.sort_by(|a, b| a.name.cmp(&b.name));
    assert_eq!(from_pth_sorted, from_safetensors);
    // torch.save keeps the state_dict's order.
    assert_eq!(from_pth[0].name, "conv1.weight");
}

#[test]
fn a_pickle_that_references_another_global_is_refused_unrun() {
    let marker = Path::new("/tmp/ferronet-tampered-pth-was-executed");
    let _ = std::fs::remove_file(marker);
    let err = read_state_dict(&fixture("tampered.pth")).unwrap_err().to_string();
    assert!(!err.contains('\n'), "{err}");
    assert!(err.contains("tampered.pth") && err.contains("references posix.system, which is not a tensor"), "{err}");
    assert!(!marker.exists(), "reading the file ran its command");
}

#[test]
fn truncated_and_corrupt_files_are_one_line_errors() {
    let dir = scratch_dir("weights-corrupt");
    for name in ["small_cnn.pth", "small_cnn.safetensors"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        for keep in [0, 3, 100, bytes.len() / 2, bytes.len() - 1] {
            let path = dir.join(name);
            std::fs::write(&path, &bytes[..keep]).unwrap();
            let err = read_state_dict(&path).unwrap_err().to_string();
            assert!(!err.contains('\n') && err.contains(name), "{name} cut at {keep}: {err}");
            assert!(err.contains("truncated"), "{name} cut at {keep}: {err}");
        }
    }
    // Flipped bytes in the archive: the zip's CRC, the pickle or the storage checks catch them.
    let bytes = std::fs::read(fixture("small_cnn.pth")).unwrap();
    let path = dir.join("flipped.pth");
    for at in (0..bytes.len()).step_by(997) {
        let mut flipped = bytes.clone();
        flipped[at] ^= 0x20;
        std::fs::write(&path, &flipped).unwrap();
        if let Err(e) = read_state_dict(&path) {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn mismatches_are_reported_like_load_state_dict_strict_false() {
    // torchvision's 10-class shufflenet into a 5-class one: the classifier's shapes differ.
    let graph = build("shufflenet_v2_x0_5", &ModelOptions::new(5, [3, 64, 64])).unwrap();
    let mut ex = Executor::<f32, _>::new(CpuBackend::new(), graph, 0).unwrap();
    let path = fixture("shufflenet_v2_x0_5.pth");
    let mut tensors = read_state_dict(&path).unwrap();
    tensors.retain(|t| t.name != "conv5.1.running_var");
    tensors[0].name = "extra.weight".into();
    let report = load_state_dict(&mut ex, &tensors, &path).unwrap();
    assert_eq!(report.missing, ["conv1.0.weight", "conv5.1.running_var"]);
    assert_eq!(report.unexpected, ["extra.weight"]);
    let mismatched: Vec<&str> = report.mismatched.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(mismatched, ["fc.weight", "fc.bias"]);
    let lines = report.lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(lines[2].contains("fc.weight is [10, 1024] in the file, [5, 1024] in the model"), "{lines:?}");
    let err = report.require_complete(&path, "shufflenet_v2_x0_5").unwrap_err().to_string();
    assert!(!err.contains('\n') && err.contains("--classes"), "{err}");

    // Weights of another model share no name with it.
    let graph = build("small_cnn", &ModelOptions::new(10, [1, 12, 12])).unwrap();
    let mut ex = Executor::<f32, _>::new(CpuBackend::new(), graph, 0).unwrap();
    let err = load_state_dict(&mut ex, &read_state_dict(&path).unwrap(), &path).unwrap_err().to_string();
    assert!(err.contains("shares no parameter name with small_cnn"), "{err}");
}

/// Every zoo model torchvision also has takes torchvision's state_dict as it is: the same keys
/// (num_batches_tracked aside) with the same shapes. (The order is torchvision's too, except
/// googlenet's auxiliary heads, which ferronet builds where they branch off.)
#[test]
fn zoo_parameters_are_torchvisions_state_dict_keys() {
    let text = std::fs::read_to_string(fixture("torchvision_keys.json")).unwrap();
    let all: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut differing = Vec::new();
    for (model, keys) in all.as_object().unwrap() {
        let mut want: Vec<(String, Vec<usize>)> = keys
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k[0].as_str().unwrap().to_string(), k[1].as_array().unwrap().iter().map(|d| d.as_u64().unwrap() as usize).collect()))
            .collect();
        let input = ferronet::models::default_input(model).unwrap();
        let graph = build(model, &ModelOptions::new(1000, input)).unwrap();
        let mut got: Vec<(String, Vec<usize>)> = graph.params.iter().map(|p| (p.name.clone(), p.shape.clone())).collect();
        want.sort();
        got.sort();
        if got != want {
            let missing: Vec<&String> = want.iter().filter(|w| !got.contains(w)).map(|w| &w.0).take(3).collect();
            let extra: Vec<&String> = got.iter().filter(|g| !want.contains(g)).map(|g| &g.0).take(3).collect();
            differing.push(format!("{model}: torchvision's not in ferronet {missing:?}, ferronet's not in torchvision {extra:?}"));
        }
    }
    assert_eq!(all.as_object().unwrap().len(), 18);
    assert!(differing.is_empty(), "{differing:#?}");
}
