//! One training step of a reduced-width variant of every model family on the GPU backend (the
//! PTX simulator, sanitizer on, when there is no GPU) agrees with the same step on the CPU in f64:
//! loss, logits, the gradient of every trainable parameter, and every parameter and BN running
//! statistic after an SGD update. Each variant runs at (nearly) the smallest input its
//! architecture accepts, with the CIFAR stem where the model offers one.
//!
//! The f64 reference starts from the GPU's f32 weights widened exactly, and sees the same f32
//! inputs widened exactly, so the only difference left is f32 arithmetic.
//!
//! Tolerances. Gradient magnitudes span many orders of magnitude within one network (and some
//! are zero in exact arithmetic: the bias of a BN that feeds another conv+BN), and f32 rounding
//! error scales with the terms summed, not with the result. So each tensor gets an absolute
//! tolerance of `rel` times its largest reference magnitude, but never less than `rel` times
//! 1/1000 of the model's largest gradient (the error a cancellation-dominated tensor picks up).
//! `rel` was measured per family and set about 3x above the need; the same step on the CPU in f32
//! needs about the same slack as the GPU (the ill-conditioning is the network's, not a kernel's).
//!
//! Kink flips. A pre-activation within f32 rounding of a ReLU/ReLU6 kink takes the other branch
//! in one precision; the difference in that one element's gradient then reaches every gradient
//! upstream, amplified through the BN layers. Over 16 input seeds, 5 runs of the ten models had a
//! model whose upstream gradients moved by 3% to 22% of their tensor's scale (the CPU in f32 is
//! just as exposed). The forward values (loss,
//! logits, BN running statistics) and the classifier layers' gradients see no flip and are held
//! to `rel`; every other gradient, and the update SGD makes with it, to `KINK_REL` of its scale:
//! enough to catch a wrong layout, index, accumulation or missing term (errors of the order of
//! the values), not a subtle numeric drift (the per-op GPU tests hold those tightly).
//!
//! BN layers see at least 4 values per channel (batch 2, at least 2x2 at the last stage) except
//! inception_v3's auxiliary head, whose 1x1 output is fixed by the 299x299 input it needs; with
//! fewer, BN's input gradient is pure rounding noise (two values normalise to exactly -1/+1).

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, widen};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::exec::{Batch, Executor, Optimizer, OptimizerConfig, OptimizerKind, StepOptions};
use ferronet::models::summary::summarize;
use ferronet::models::{build, ModelOptions};
use ferronet::ops::NodeOp;
use ferronet::shape::Layout;
use std::time::Instant;

const CLASSES: usize = 5;
const BATCH: usize = 2;
/// The largest gradient of a model times this is the smallest scale any tensor is compared at.
const FLOOR: f64 = 1e-3;
/// Nets with no or a few BN layers (measured needs: below 3e-5).
const LIGHT_BN: f64 = 1e-4;
/// Depthwise-separable nets, BN after every conv (measured: up to 1.6e-4).
const MOBILE_BN: f64 = 5e-4;
/// 50+ BN layers in series on a handful of channels (measured: up to 1.1e-3).
const DEEP_BN: f64 = 3e-3;
/// Gradients a kink flip can reach (see the module comment).
const KINK_REL: f64 = 0.5;
const LR: f64 = 0.05;

fn sgd() -> OptimizerConfig {
    OptimizerConfig {
        kind: OptimizerKind::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false },
        lr: LR,
        weight_decay: 1e-4,
        decay_weights_only: true,
        clip_grad_norm: None,
    }
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// `got` within `rel * max(scale of want, floor)` of `want`, element by element.
#[track_caller]
fn assert_tensor_close(what: &str, got: &[f32], want: &[f64], rel: f64, floor: f64) {
    assert_close(what, got, want, rel * max_abs(want).max(floor), 0.0);
}

fn step_matches_cpu(model: &str, opts: ModelOptions, rel: f64) {
    step_matches_cpu_in(model, opts, rel, Layout::Nchw);
}

/// As `step_matches_cpu`, both executors keeping image tensors in `layout` (the CPU's
/// channels-last ops reorder around its channels-first reference).
fn step_matches_cpu_in(model: &str, opts: ModelOptions, rel: f64, layout: Layout) {
    let start = Instant::now();
    let graph = build(model, &opts).unwrap_or_else(|e| panic!("{model}: {e}"));
    let summary = summarize(&graph, BATCH, true).unwrap();
    for output in &graph.outputs {
        let name = &graph.nodes[output.node].name;
        assert_eq!(summary.layers[output.node].output_shape, vec![CLASSES], "{model}: summary of output {name}");
    }

    let x32 = random_f32(BATCH * opts.input.iter().product::<usize>(), 12, -2.0, 2.0);
    let labels: Vec<u32> = (0..BATCH).map(|i| (i % CLASSES) as u32).collect();
    let step = StepOptions { dropout_seed: Some(5), ..StepOptions::default() };

    let mut gpu = Executor::<f32, _>::new(gpu(), graph.clone(), 3).unwrap().in_layout(layout);
    let mut cpu = Executor::<f64, _>::new(CpuBackend::new(), graph.clone(), 3).unwrap().in_layout(layout);
    let names: Vec<String> = graph.params.iter().map(|p| p.name.clone()).collect();
    for name in &names {
        cpu.set_param_host(name, &widen(&gpu.param_host(name).unwrap())).unwrap();
    }
    Device::<f32>::take_kernel_log(gpu.backend());
    let got = gpu.train_step_readback(Batch::HostF32(&x32), &labels, &step).unwrap_or_else(|e| panic!("{model} on the GPU: {e}"));
    if layout == Layout::Nhwc {
        // Channels-last end to end: the NHWC convolutions ran, no channels-first one did.
        let launched = Device::<f32>::take_kernel_log(gpu.backend());
        assert!(launched.iter().any(|k| k.starts_with("conv::conv_nhwc_gemm")), "{model}: {launched:?}");
        let nchw = ["conv::conv_forward_gemm", "conv::conv_filter_gemm", "conv::conv_data_direct_gemm", "conv::conv_data_phase_gemm", "conv::depthwise_"];
        let stray: Vec<&String> = launched.iter().filter(|k| nchw.iter().any(|p| k.starts_with(p))).collect();
        assert!(stray.is_empty(), "{model}: channels-first kernels ran channels-last: {stray:?}");
    }
    let want = cpu.train_step_readback(Batch::Host(&widen(&x32)), &labels, &step).unwrap();

    assert_eq!(got.logits.len(), BATCH * CLASSES, "{model}: logits");
    assert!((got.loss - want.loss).abs() <= rel * want.loss.abs(), "{model}: loss {} vs reference {}", got.loss, want.loss);
    assert_tensor_close(&format!("{model} logits"), &got.logits, &want.logits, rel, 0.0);

    // Classifier layers (the parameters of each loss output) see only forward values upstream,
    // so no kink flip reaches their gradients.
    let classifier: Vec<&str> =
        graph.outputs.iter().flat_map(|o| graph.nodes[o.node].op.params()).map(|id| graph.params[id].name.as_str()).collect();
    let grad_rel = |name: &str| if classifier.contains(&name) { rel } else { KINK_REL };

    let mut grads = Vec::new();
    for name in &names {
        match (gpu.grad_host_by_name(name).unwrap(), cpu.grad_host_by_name(name).unwrap()) {
            (Some(g), Some(w)) => grads.push((name.as_str(), g, w)),
            (None, None) => {}
            (g, w) => panic!("{model}: gradient of {name} on the GPU: {}, on the CPU: {}", g.is_some(), w.is_some()),
        }
    }
    let largest_grad = grads.iter().map(|(_, _, w)| max_abs(w)).fold(0.0, f64::max);
    for (name, g, w) in &grads {
        assert_tensor_close(&format!("{model} grad {name}"), g, w, grad_rel(name), FLOOR * largest_grad);
    }

    let (mut opt_cpu, mut opt_gpu) = (Optimizer::new(sgd()).unwrap(), Optimizer::new(sgd()).unwrap());
    cpu.optimizer_step(&mut opt_cpu).unwrap();
    gpu.optimizer_step(&mut opt_gpu).unwrap();
    let after: Vec<(Vec<f32>, Vec<f64>)> =
        names.iter().map(|name| (gpu.param_host(name).unwrap(), cpu.param_host(name).unwrap())).collect();
    // BN running statistics (and frozen parameters) moved with the batch statistics; a running
    // mean that is zero in exact arithmetic (a BN fed by a bias-free conv of a BN's output) is
    // compared at the scale of the model's other statistics.
    let largest_state =
        graph.params.iter().zip(&after).filter(|(p, _)| p.kind.is_state()).map(|(_, (_, w))| max_abs(w)).fold(0.0, f64::max);
    for ((name, spec), (got, want)) in names.iter().zip(&graph.params).zip(&after) {
        let what = format!("{model} {name} after SGD");
        match grads.iter().find(|(n, _, _)| n == name) {
            // The update moves a weight by LR times its gradient (momentum and decay add nothing
            // on the first step beyond f32 rounding of the weight itself).
            Some((_, _, w)) => {
                let atol = LR * grad_rel(name) * max_abs(w).max(FLOOR * largest_grad) + 1e-6 * max_abs(want);
                assert_close(&what, got, want, atol, 0.0);
            }
            None => {
                assert!(spec.kind.is_state() || !spec.trainable, "{model}: {name} is trainable but has no gradient");
                assert_tensor_close(&what, got, want, rel, FLOOR * largest_state);
            }
        }
    }
    println!("{model}: {:.2} s", start.elapsed().as_secs_f64());
}

fn tiny(input: [usize; 3], divisor: usize) -> ModelOptions {
    ModelOptions { width_divisor: divisor, ..ModelOptions::new(CLASSES, input) }
}

fn cifar(input: [usize; 3], divisor: usize) -> ModelOptions {
    ModelOptions { cifar_stem: true, ..tiny(input, divisor) }
}

#[test]
fn small_cnn() {
    step_matches_cpu("small_cnn", tiny([1, 12, 12], 8), LIGHT_BN);
}

/// 63x63 is the smallest input AlexNet's three max-pools accept.
#[test]
fn alexnet() {
    step_matches_cpu("alexnet", tiny([3, 63, 63], 16), LIGHT_BN);
}

/// 67x67: alexnet_bn's first conv has no padding.
#[test]
fn alexnet_bn() {
    step_matches_cpu("alexnet_bn", tiny([3, 67, 67], 16), LIGHT_BN);
}

/// 32x32: five 2x2 max-pools.
#[test]
fn vgg11_bn() {
    step_matches_cpu("vgg11_bn", tiny([3, 32, 32], 16), LIGHT_BN);
}

/// 16x16 with the CIFAR stem: the last stage is 2x2.
#[test]
fn resnet18() {
    step_matches_cpu("resnet18", cifar([3, 16, 16], 8), LIGHT_BN);
}

#[test]
fn resnet50() {
    step_matches_cpu("resnet50", cifar([3, 16, 16], 16), DEEP_BN);
}

/// 32x32 with the CIFAR stem: four stride-2 stages leave 2x2.
#[test]
fn mobilenet_v2() {
    step_matches_cpu("mobilenet_v2", cifar([3, 32, 32], 16), MOBILE_BN);
}

#[test]
fn shufflenet_v2() {
    step_matches_cpu("shufflenet_v2_x0_5", cifar([3, 16, 16], 4), MOBILE_BN);
}

/// The auxiliary classifier needs 17x17 at Mixed_6e, hence 299x299; the width divisor leaves
/// the stem's convs a single channel, the least the model can have.
#[test]
fn inception_v3_with_aux() {
    step_matches_cpu("inception_v3", tiny([3, 299, 299], 64), DEEP_BN);
}

/// 64x64 leaves inception5 at 2x2 (both auxiliary heads included).
#[test]
fn googlenet_with_aux() {
    step_matches_cpu("googlenet", tiny([3, 64, 64], 16), LIGHT_BN);
}

/// No CIFAR stem: 64x64 leaves the last stage at 2x2.
#[test]
fn efficientnet_b0() {
    step_matches_cpu("efficientnet_b0", tiny([3, 64, 64], 16), MOBILE_BN);
}

/// Channels-last end to end on the GPU: every family whose ops differ by layout (convolutions,
/// depthwise, pooling, batch norm, concat, split, shuffle, squeeze-excitation, the flatten of a
/// 6x6 map).
#[test]
fn alexnet_channels_last() {
    step_matches_cpu_in("alexnet", tiny([3, 63, 63], 16), LIGHT_BN, Layout::Nhwc);
}

#[test]
fn resnet18_channels_last() {
    step_matches_cpu_in("resnet18", cifar([3, 16, 16], 8), LIGHT_BN, Layout::Nhwc);
}

#[test]
fn mobilenet_v2_channels_last() {
    step_matches_cpu_in("mobilenet_v2", cifar([3, 32, 32], 16), MOBILE_BN, Layout::Nhwc);
}

#[test]
fn shufflenet_v2_channels_last() {
    step_matches_cpu_in("shufflenet_v2_x0_5", cifar([3, 16, 16], 4), MOBILE_BN, Layout::Nhwc);
}

#[test]
fn googlenet_channels_last() {
    step_matches_cpu_in("googlenet", tiny([3, 64, 64], 16), LIGHT_BN, Layout::Nhwc);
}

#[test]
fn efficientnet_b0_channels_last() {
    step_matches_cpu_in("efficientnet_b0", tiny([3, 64, 64], 16), MOBILE_BN, Layout::Nhwc);
}
