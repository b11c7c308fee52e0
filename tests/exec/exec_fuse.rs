//! Batch norm -> (residual add) -> activation fused for training (`Executor::
//! fuse_batch_norm_activations`): every fused pattern, for every activation, trains a step with
//! the same loss, gradients and running statistics as the unfused ops (CPU f64, to rounding; the
//! GPU in f32 against the unfused f64 CPU, on the simulator and through the emulated driver),
//! resnet18 and mobilenet_v2 too, and fusion shrinks the planned training memory.

use ferronet::cpu::CpuBackend;
use ferronet::device::{ConvWorkspace, Device};
use ferronet::element::Element;
use ferronet::exec::{Batch, Executor, Mode, StepOptions};
use ferronet::graph::{ConvCfg, Graph, GraphBuilder, ParamKind};
use ferronet::models::summary::summarize;
use ferronet::models::{build, ModelOptions};
use ferronet::ops::{Activation, Backend, Dropout, Op};
use ferronet::rng::Rng;
use ferronet::tolerance::assert_close;
use ferronet_test_support::emulated_driver::run_own_tests;
use ferronet_test_support::gpu::gpu;
use ferronet_test_support::graphs::{batch, labels};

pub(crate) const N: usize = 3;
pub(crate) const CLASSES: usize = 3;

/// conv-BN-relu, then conv-BN (+ the relu's output) and `activation`, then the usual head;
/// input [3, 5, 5]. The first relu's output is also the residual, which the second convolution
/// reads too.
fn chain(activation: Activation, residual: bool) -> Graph {
    let mut b = GraphBuilder::new("chain", &[3, 5, 5]);
    let c1 = b.conv2d("conv1", 0, ConvCfg::new(4, 3).padding(1).bias(false)).unwrap();
    let n1 = b.batch_norm2d("bn1", c1, 1e-5, 0.1).unwrap();
    let a1 = b.activation("relu1", n1, Activation::Relu);
    let c2 = b.conv2d("conv2", a1, ConvCfg::new(4, 3).padding(1).bias(false)).unwrap();
    let n2 = b.batch_norm2d("bn2", c2, 1e-5, 0.1).unwrap();
    let pre = if residual { b.add("add", n2, a1).unwrap() } else { n2 };
    let a2 = b.activation("act2", pre, activation);
    let pooled = b.adaptive_avg_pool2d("avgpool", a2, (1, 1)).unwrap();
    let flat = b.flatten("flatten", pooled);
    let fc = b.linear("fc", flat, CLASSES, true).unwrap();
    b.output(fc, 1.0, false);
    b.finish().unwrap()
}

fn patterns() -> impl Iterator<Item = (Activation, bool)> {
    Activation::ALL.into_iter().flat_map(|a| [(a, false), (a, true)])
}

/// Batch-norm scales and shifts away from their identity initialisation (gamma up to 3 so relu6's
/// and hardswish's upper kinks are reached), the same on every executor of `graph`.
fn randomise_batch_norms<E: Element, B: Backend<E>>(ex: &mut Executor<E, B>, seed: u64) {
    let mut rng = Rng::new(seed);
    for spec in ex.graph().params.clone() {
        let (lo, hi) = match spec.kind {
            ParamKind::BnGamma => (0.5, 3.0),
            ParamKind::BnBeta => (-0.5, 0.5),
            _ => continue,
        };
        let values: Vec<E> = (0..spec.numel()).map(|_| E::from_f64(rng.uniform_range(lo, hi))).collect();
        ex.set_param_host(&spec.name, &values).unwrap();
    }
}

/// The loss, logits, input gradient, every parameter's gradient and every parameter (running
/// statistics included) after one training step of `ex` (its update is not applied).
pub(crate) struct StepResult {
    loss: f64,
    logits: Vec<f64>,
    input_grad: Vec<f64>,
    grads: Vec<(String, Vec<f64>)>,
    params: Vec<(String, Vec<f64>)>,
}

pub(crate) fn step<E: Element, B: Backend<E>>(ex: &mut Executor<E, B>, x: &[f64]) -> StepResult {
    let x: Vec<E> = x.iter().map(|&v| E::from_f64(v)).collect();
    let wide = |v: Vec<E>| v.into_iter().map(<E as Element>::to_f64).collect::<Vec<f64>>();
    let opts = StepOptions { input_grad: true, ..StepOptions::default() };
    let out = ex.train_step_readback(Batch::Host(&x), &labels(N, CLASSES), &opts).unwrap();
    let specs = ex.graph().params.clone();
    let grads = specs
        .iter()
        .enumerate()
        .filter_map(|(id, p)| ex.grad_host(id).unwrap().map(|g| (p.name.clone(), wide(g))))
        .collect();
    let params = specs.iter().map(|p| (p.name.clone(), wide(ex.param_host(&p.name).unwrap()))).collect();
    StepResult { loss: out.loss, logits: wide(out.logits), input_grad: wide(ex.input_grad_host().unwrap().unwrap()), grads, params }
}

#[track_caller]
pub(crate) fn assert_same_step(what: &str, got: &StepResult, want: &StepResult, atol: f64, rtol: f64) {
    assert!((got.loss - want.loss).abs() <= atol + rtol * want.loss.abs(), "{what}: loss {} vs {}", got.loss, want.loss);
    assert_close(&format!("{what} logits"), &got.logits, &want.logits, atol, rtol);
    assert_close(&format!("{what} input gradient"), &got.input_grad, &want.input_grad, atol, rtol);
    assert_eq!(got.grads.len(), want.grads.len(), "{what}: parameters with gradients");
    for ((name, g), (want_name, w)) in got.grads.iter().zip(&want.grads) {
        assert_eq!(name, want_name);
        assert_close(&format!("{what} gradient of {name}"), g, w, atol, rtol);
    }
    // Running statistics moved by the step, and every other parameter untouched.
    for ((name, p), (_, w)) in got.params.iter().zip(&want.params) {
        assert_close(&format!("{what} {name} after the step"), p, w, atol, rtol);
    }
}

fn fused<E: Element, B: Backend<E>>(ex: Executor<E, B>, what: &str) -> Executor<E, B> {
    let source_nodes = ex.graph().nodes.len();
    let (ex, counts) = ex.fuse_batch_norm_activations();
    let chains = counts.batch_norm_activations + counts.batch_norm_add_activations;
    assert!(chains > 0, "{what}: nothing fused");
    assert_eq!(ex.graph().nodes.len(), source_nodes - chains - counts.batch_norm_add_activations, "{what}: {counts:?}");
    ex
}

#[test]
fn every_fused_pattern_trains_as_the_unfused_ops_on_the_cpu() {
    for (activation, residual) in patterns() {
        let what = format!("{} residual={residual}", activation.name());
        let graph = chain(activation, residual);
        let x = batch(&graph, N, 7);
        let mut unfused = Executor::<f64, _>::new(CpuBackend::new(), graph.clone(), 1).unwrap();
        randomise_batch_norms(&mut unfused, 2);
        let mut ex = fused(Executor::<f64, _>::new(CpuBackend::new(), graph, 1).unwrap(), &what);
        randomise_batch_norms(&mut ex, 2);
        assert_same_step(&what, &step(&mut ex, &x), &step(&mut unfused, &x), 1e-12, 1e-10);
    }
}

#[test]
fn fused_patterns_on_the_gpu_match_the_unfused_cpu_reference() {
    for (activation, residual) in patterns() {
        let what = format!("{} residual={residual} on the GPU", activation.name());
        let graph = chain(activation, residual);
        let x = batch(&graph, N, 7);
        let mut cpu = Executor::<f64, _>::new(CpuBackend::new(), graph.clone(), 1).unwrap();
        randomise_batch_norms(&mut cpu, 2);
        let mut ex = fused(Executor::<f32, _>::new(gpu(), graph, 1).unwrap(), &what);
        randomise_batch_norms(&mut ex, 2);
        Device::<f32>::take_kernel_log(ex.backend());
        let got = step(&mut ex, &x);
        let launched = Device::<f32>::take_kernel_log(ex.backend());
        for kernel in ["norm::bn_act_apply", "norm::bn_act_partial_grads", "norm::bn_act_backward_apply"] {
            assert!(launched.iter().any(|k| k == kernel), "{what}: {kernel} did not run: {launched:?}");
        }
        assert!(!launched.iter().any(|k| k.starts_with("activation::") || k == "norm::bn_apply"), "{what}: an unfused kernel ran: {launched:?}");
        assert_same_step(&what, &got, &step(&mut cpu, &x), 2e-4, 2e-3);
    }
}

#[test]
fn fused_patterns_through_the_emulated_driver() {
    run_own_tests("cuda", &["--exact", "exec_fuse::fused_patterns_on_the_gpu_match_the_unfused_cpu_reference"]);
}

/// The model at a tiny width, without dropout: dropout's masks mix in node ids, which fusion
/// renumbers (the same distribution, other draws).
fn tiny(name: &str) -> Graph {
    let opts = ModelOptions { cifar_stem: true, width_divisor: 8, ..ModelOptions::new(10, [3, 16, 16]) };
    without_dropout(build(name, &opts).unwrap_or_else(|e| panic!("{name}: {e}")))
}

/// `graph` with every dropout's probability 0.
pub(crate) fn without_dropout(mut graph: Graph) -> Graph {
    for node in &mut graph.nodes {
        if let Op::Dropout(_) = node.op {
            node.op = Op::Dropout(Dropout::new(0.0).unwrap());
        }
    }
    graph
}

#[test]
fn resnet18_and_mobilenet_v2_train_the_same_fused() {
    for name in ["resnet18", "mobilenet_v2"] {
        let graph = tiny(name);
        let x = batch(&graph, N, 9);
        let mut unfused = Executor::<f64, _>::new(CpuBackend::new(), graph.clone(), 1).unwrap();
        let mut ex = fused(Executor::<f64, _>::new(CpuBackend::new(), graph, 1).unwrap(), name);
        assert_same_step(name, &step(&mut ex, &x), &step(&mut unfused, &x), 1e-11, 1e-9);
    }
}

#[test]
fn fusion_shrinks_the_planned_training_memory() {
    for name in ["resnet18", "mobilenet_v2"] {
        let graph = tiny(name);
        let (plain, fused_summary) = (summarize(&graph, 8, false).unwrap(), summarize(&graph, 8, true).unwrap());
        assert_eq!(plain.fused_chains, 0);
        assert!(fused_summary.fused_chains > 0, "{name}");
        assert!(fused_summary.activation_bytes < plain.activation_bytes, "{name}: {fused_summary:?} vs {plain:?}");
        assert!(fused_summary.peak_step_bytes < plain.peak_step_bytes, "{name}");
        let unfused = Executor::<f32, _>::new(CpuBackend::new(), graph, 1).unwrap();
        let workspace = ConvWorkspace::columns(64 << 20);
        let before = unfused.planned_peak_bytes(8, Mode::Train, workspace).unwrap();
        let after = unfused.fuse_batch_norm_activations().0.planned_peak_bytes(8, Mode::Train, workspace).unwrap();
        assert!(after < before, "{name}: planned peak {after} fused vs {before}");
    }
}
