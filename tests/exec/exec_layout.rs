//! Channels-last runs (`Executor::in_layout`, `graph::layout`): every model family trains a step
//! channels-last with the loss, logits, input gradient, parameter gradients and running
//! statistics of the channels-first step (CPU f64, to rounding); channels-last GPU steps (the
//! memory-plan test `exec_gpu::planned_peak_bounds_gpu_peak`) run through the emulated driver.

use super::exec_fuse::{assert_same_step, step, without_dropout, CLASSES, N};
use ferronet::cpu::CpuBackend;
use ferronet::exec::Executor;
use ferronet::graph::Graph;
use ferronet::models::{build, ModelOptions};
use ferronet::ops::Op;
use ferronet::shape::Layout;
use ferronet_test_support::emulated_driver::run_own_tests;
use ferronet_test_support::graphs::batch;

/// The model at a tiny width, without dropout: dropout's masks mix in node ids, which the
/// conversions renumber, and follow the element order (the same distribution, other draws).
fn tiny(name: &str, input: [usize; 3], divisor: usize, cifar_stem: bool) -> Graph {
    let opts = ModelOptions { cifar_stem, width_divisor: divisor, ..ModelOptions::new(CLASSES, input) };
    without_dropout(build(name, &opts).unwrap_or_else(|e| panic!("{name}: {e}")))
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
            assert_same_step(&what, &step(&mut nhwc, &x), &step(&mut nchw, &x), 1e-11, 1e-9);
        }
    }
}

/// The channels-last kernels and conversions through the emulated CUDA driver: the GPU memory
/// plan test trains channels-last steps (fp32 and bf16 on the tensor cores).
#[test]
fn channels_last_steps_through_the_emulated_driver() {
    run_own_tests("cuda", &["--exact", "exec_gpu::planned_peak_bounds_gpu_peak"]);
}
