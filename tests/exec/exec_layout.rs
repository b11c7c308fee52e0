//! Channels-last runs (`Executor::in_layout`, `graph::layout`): every model family trains a step
//! channels-last with the loss, logits, input gradient, parameter gradients and running
//! statistics of the channels-first step (CPU f64, to rounding). The GPU's memory plan of a
//! channels-last step: `exec_gpu::planned_peak_bounds_gpu_peak`.

use ferronet::cpu::CpuBackend;
use ferronet::element::Element;
use ferronet::exec::{Batch, Executor, StepOptions};
use ferronet::graph::Graph;
use ferronet::models::{build, ModelOptions};
use ferronet::ops::{Backend, Dropout, Op};
use ferronet::shape::Layout;
use ferronet::tolerance::assert_close;
use ferronet_test_support::graphs::{batch, labels};

const N: usize = 2;
const CLASSES: usize = 4;

/// The loss, logits, input gradient, every parameter gradient and every parameter (running
/// statistics moved by the step) after one training step (its update not applied).
struct StepResult {
    loss: f64,
    logits: Vec<f64>,
    input_grad: Vec<f64>,
    grads: Vec<(String, Option<Vec<f64>>)>,
    params: Vec<(String, Vec<f64>)>,
}

fn step<E: Element, B: Backend<E>>(ex: &mut Executor<E, B>, x: &[f64]) -> StepResult {
    let x: Vec<E> = x.iter().map(|&v| E::from_f64(v)).collect();
    let wide = |v: Vec<E>| v.into_iter().map(<E as Element>::to_f64).collect::<Vec<f64>>();
    let opts = StepOptions { input_grad: true, ..StepOptions::default() };
    let out = ex.train_step_readback(Batch::Host(&x), &labels(N, CLASSES), &opts).unwrap();
    let specs = ex.graph().params.clone();
    let grads = specs.iter().enumerate().map(|(id, p)| (p.name.clone(), ex.grad_host(id).unwrap().map(wide))).collect();
    let params = specs.iter().map(|p| (p.name.clone(), wide(ex.param_host(&p.name).unwrap()))).collect();
    StepResult { loss: out.loss, logits: wide(out.logits), input_grad: wide(ex.input_grad_host().unwrap().unwrap()), grads, params }
}

/// The model at a tiny width, without dropout: dropout's masks mix in node ids, which the
/// conversions renumber, and follow the element order (the same distribution, other draws).
fn tiny(name: &str, input: [usize; 3], divisor: usize, cifar_stem: bool) -> Graph {
    let opts = ModelOptions { cifar_stem, width_divisor: divisor, ..ModelOptions::new(CLASSES, input) };
    let mut graph = build(name, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    for node in &mut graph.nodes {
        if let Op::Dropout(_) = node.op {
            node.op = Op::Dropout(Dropout::new(0.0).unwrap());
        }
    }
    graph
}

/// Every family: pooling to 6x6 before a flatten (alexnet), max pooling with ceil mode and
/// concat (googlenet), depthwise convolutions (mobilenet_v2), channel split and shuffle
/// (shufflenet), squeeze-excitation gates (efficientnet), residual adds (resnet18), fused and
/// unfused batch norms.
fn models() -> Vec<(&'static str, Graph)> {
    vec![
        ("small_cnn", tiny("small_cnn", [1, 12, 12], 8, false)),
        ("alexnet", tiny("alexnet", [3, 63, 63], 16, false)),
        ("googlenet", tiny("googlenet", [3, 64, 64], 16, false)),
        ("resnet18", tiny("resnet18", [3, 16, 16], 8, true)),
        ("mobilenet_v2", tiny("mobilenet_v2", [3, 32, 32], 16, true)),
        ("shufflenet_v2_x0_5", tiny("shufflenet_v2_x0_5", [3, 16, 16], 4, true)),
        ("efficientnet_b0", tiny("efficientnet_b0", [3, 64, 64], 16, false)),
    ]
}

#[test]
fn every_family_trains_the_same_step_channels_last() {
    for (name, graph) in models() {
        for fused in [false, true] {
            let what = format!("{name} fused={fused}");
            let x = batch(&graph, N, 9);
            let new = || {
                let ex = Executor::<f64, _>::new(CpuBackend::new(), graph.clone(), 1).unwrap();
                if fused { ex.fuse_batch_norm_activations().0 } else { ex }
            };
            let mut nchw = new();
            let mut nhwc = new().in_layout(Layout::Nhwc);
            assert_eq!(nhwc.graph().layout, Layout::Nhwc, "{what}");
            let relayouts = nhwc.graph().nodes.iter().filter(|n| matches!(n.op, Op::Relayout(_))).count();
            assert!(relayouts >= 1, "{what}: no conversion");
            let (got, want) = (step(&mut nhwc, &x), step(&mut nchw, &x));
            let (atol, rtol) = (1e-11, 1e-9);
            assert!((got.loss - want.loss).abs() <= atol + rtol * want.loss.abs(), "{what}: loss {} vs {}", got.loss, want.loss);
            assert_close(&format!("{what} logits"), &got.logits, &want.logits, atol, rtol);
            assert_close(&format!("{what} input gradient"), &got.input_grad, &want.input_grad, atol, rtol);
            for ((param, g), (_, w)) in got.grads.iter().zip(&want.grads) {
                match (g, w) {
                    (Some(g), Some(w)) => assert_close(&format!("{what} gradient of {param}"), g, w, atol, rtol),
                    (None, None) => {}
                    _ => panic!("{what}: {param} has a gradient in one layout only"),
                }
            }
            for ((param, p), (_, w)) in got.params.iter().zip(&want.params) {
                assert_close(&format!("{what} {param} after the step"), p, w, atol, rtol);
            }
        }
    }
}
