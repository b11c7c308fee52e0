//! `ferronet export --format onnx`: the exported models give ferronet's CPU logits in
//! onnxruntime (driven by tests/onnx_check.py; `bash .ci/run` installs onnxruntime) within 1e-4,
//! for a checkpoint, for torchvision weights and for every node kind of the zoo; and
//! `export --weights ... --format torchvision` reads back exactly.

use ferronet::cpu::CpuBackend;
use ferronet::exec::{Batch, Executor};
use ferronet::graph::{Graph, ParamKind};
use ferronet::models::{build, ModelOptions};
use ferronet::train::checkpoint;
use ferronet::train::pretrained::{NormalizeChoice, RunnableModel, WeightsArgs};
use ferronet::train::session::model_tensors;
use ferronet::weights::onnx::{onnx_model, ModelDescription};
use ferronet::weights::read_state_dict;
use ferronet_test_support::cli_run::{ferronet_bin, run};
use ferronet_test_support::gpu::random_f32;
use ferronet_test_support::graphs::op_zoo;
use ferronet_test_support::scratch_dir;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What the issue asks of the exported model: ferronet's logits within 1e-4.
const TOLERANCE: f64 = 1e-4;

fn manifest() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn fixture(name: &str) -> PathBuf {
    manifest().join("tests/fixtures/torchvision").join(name)
}

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// Runs `model` in onnxruntime on `input` ([N, C, H, W] as `shape`) and asserts that its logits
/// equal `logits` within TOLERANCE; fails naming the install command when onnxruntime is missing.
#[track_caller]
fn assert_onnxruntime_gives(model: &Path, input: &[f32], shape: [usize; 4], logits: &[f32]) {
    let probe = Command::new("python3").args(["-c", "import onnxruntime"]).output().expect("python3 runs");
    assert!(probe.status.success(), "onnxruntime is missing: python3 -m pip install onnxruntime (bash .ci/run installs it)");
    let dir = model.parent().unwrap();
    let (input_path, logits_path) = (dir.join("input.f32"), dir.join("logits.f32"));
    std::fs::write(&input_path, f32_bytes(input)).unwrap();
    std::fs::write(&logits_path, f32_bytes(logits)).unwrap();
    let shape = shape.map(|d| d.to_string()).join(",");
    let out = Command::new("python3")
        .arg(manifest().join("tests/onnx_check.py"))
        .args([model, &input_path, &logits_path])
        .args([shape, TOLERANCE.to_string()])
        .output()
        .expect("python3 runs");
    let report = String::from_utf8_lossy(&out.stdout);
    eprintln!("{}", report.trim());
    assert!(out.status.success(), "{}: {report}{}", model.display(), String::from_utf8_lossy(&out.stderr));
}

fn ferronet(args: &[&str]) {
    let out = run({
        let mut cmd = Command::new(ferronet_bin());
        cmd.args(args);
        cmd
    });
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
}

fn path_arg(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The graph with random weights and batch-norm statistics (so evaluation-mode batch norm is
/// not the identity), its ONNX export and ferronet's CPU logits for a random batch of 2.
fn export_and_infer(graph: Graph, seed: u64, onnx: &Path) -> (Vec<f32>, [usize; 4], Vec<f32>) {
    let backend = CpuBackend::new();
    let specs = graph.params.clone();
    let mut ex = Executor::new(backend.clone(), graph, seed).unwrap();
    for (i, spec) in specs.iter().enumerate() {
        let range = match spec.kind {
            ParamKind::BnRunningMean | ParamKind::BnBeta => (-0.2, 0.2),
            ParamKind::BnRunningVar | ParamKind::BnGamma => (0.5, 1.5),
            ParamKind::Weight | ParamKind::Bias => continue,
        };
        let values = random_f32(spec.numel(), seed + i as u64, range.0, range.1);
        ex.params_mut().set_host(&backend, &spec.name, &values).unwrap();
    }
    let [c, h, w]: [usize; 3] = ex.graph().input_shape().try_into().unwrap();
    let shape = [2, c, h, w];
    let input = random_f32(shape.iter().product(), seed, -2.0, 2.0);
    let logits = ex.infer(Batch::HostF32(&input)).unwrap();
    let classes: Vec<String> = (0..ex.graph().num_classes()).map(|k| k.to_string()).collect();
    let about = ModelDescription { model: &ex.graph().name, class_names: &classes, mean: &vec![0.5; c], std: &vec![0.25; c] };
    let bytes = onnx_model(ex.graph(), &model_tensors(&ex).unwrap(), &about).unwrap();
    std::fs::write(onnx, bytes).unwrap();
    (input, shape, logits)
}

/// Every node kind at small sizes: the op zoo (split with a gap, hardswish, shuffle, SE gating,
/// mul, max pooling in ceil mode, average pooling, dropout, an auxiliary head), AlexNet's adaptive
/// pooling of 1x1 to 6x6, GoogLeNet's ceil-mode pooling with its auxiliary heads dropped,
/// Inception v3's average pooling counting padding, EfficientNet's SiLU and squeeze-excitation,
/// MobileNetV2's ReLU6 and residuals, ResNet's downsampling shortcut.
#[test]
fn onnx_export_of_every_node_kind_gives_ferronets_logits_in_onnxruntime() {
    let dir = scratch_dir("onnx-zoo");
    let model = |name: &str, input: [usize; 3], width_divisor: usize, aux_logits: bool| {
        let mut opts = ModelOptions::new(10, input);
        opts.width_divisor = width_divisor;
        opts.aux_logits = aux_logits;
        build(name, &opts).unwrap()
    };
    let graphs = [
        op_zoo(),
        model("alexnet", [3, 63, 63], 16, true),
        model("googlenet", [3, 64, 64], 8, true),
        model("inception_v3", [3, 75, 75], 8, false),
        model("efficientnet_b0", [3, 32, 32], 4, true),
        model("mobilenet_v2", [3, 32, 32], 4, true),
        model("resnet18", [3, 32, 32], 4, true),
    ];
    for (seed, graph) in graphs.into_iter().enumerate() {
        let onnx = dir.join(format!("{}.onnx", graph.name));
        let (input, shape, logits) = export_and_infer(graph, seed as u64 + 1, &onnx);
        assert_onnxruntime_gives(&onnx, &input, shape, &logits);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A checkpoint (small_cnn) and torchvision weights (shufflenet_v2_x0_5) exported by the CLI.
#[test]
fn exported_checkpoint_and_torchvision_weights_give_ferronets_logits_in_onnxruntime() {
    let dir = scratch_dir("onnx-cli");
    let run_dir = dir.join("run");
    ferronet(&["train", "--epochs", "1", "--limit", "64", "--device", "cpu", "--workers", "1", "--quiet", "--out", path_arg(&run_dir)]);
    let checkpoint_path = run_dir.join("checkpoint.safetensors");
    let onnx = dir.join("small_cnn.onnx");
    ferronet(&["export", "--checkpoint", path_arg(&checkpoint_path), "--format", "onnx", "--out", path_arg(&onnx)]);
    let (tensors, meta) = checkpoint::load(&checkpoint_path).unwrap();
    let model = RunnableModel::from_checkpoint(&meta, tensors);
    let [c, h, w] = model.input;
    let input = random_f32(3 * c * h * w, 7, -2.0, 2.0);
    let logits = model.restore(CpuBackend::new()).unwrap().infer(Batch::HostF32(&input)).unwrap();
    assert_onnxruntime_gives(&onnx, &input, [3, c, h, w], &logits);

    let weights = fixture("shufflenet_v2_x0_5.pth");
    let onnx = dir.join("shufflenet.onnx");
    let model_args = ["--weights", path_arg(&weights), "--model", "shufflenet_v2_x0_5", "--classes", "10", "--input", "3,64,64"];
    ferronet(&[&["export", "--format", "onnx", "--out", path_arg(&onnx)], &model_args[..]].concat());
    let args = WeightsArgs {
        weights: Some(weights.clone()),
        model: Some("shufflenet_v2_x0_5".into()),
        classes: Some(10),
        input: Some([3, 64, 64]),
        cifar_stem: false,
        normalize: NormalizeChoice::Imagenet,
    };
    let model = RunnableModel::from_weights(&args, 10, None).unwrap().unwrap();
    // PyTorch's fixed input of the fixtures.
    let input: Vec<f32> = std::fs::read(fixture("shufflenet_v2_x0_5.input.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    let logits = model.restore(CpuBackend::new()).unwrap().infer(Batch::HostF32(&input)).unwrap();
    assert_onnxruntime_gives(&onnx, &input, [2, 3, 64, 64], &logits);

    // The same weights as a torchvision state_dict read back exactly.
    let exported = dir.join("shufflenet.safetensors");
    ferronet(&[&["export", "--format", "torchvision", "--out", path_arg(&exported)], &model_args[..]].concat());
    let original = read_state_dict(&weights).unwrap();
    let back = read_state_dict(&exported).unwrap();
    assert_eq!(back.len(), original.len(), "every tensor of the file, num_batches_tracked included, is written");
    for tensor in &back {
        let want = original.iter().find(|t| t.name == tensor.name).unwrap_or_else(|| panic!("{} is not in the file", tensor.name));
        if tensor.name.ends_with("num_batches_tracked") {
            assert_eq!(tensor.data, [0.0], "{}: weights that were not trained here have seen no batch", tensor.name);
        } else {
            assert_eq!(tensor, want, "{} changed", tensor.name);
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
