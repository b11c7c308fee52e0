//! Batch norm folded into convolutions and activations fused into their bias pass, for
//! evaluation (`Executor::fold_batch_norms`): every zoo model evaluates the same logits folded and
//! unfolded (CPU f64, to rounding), and the folded model on the GPU matches the unfolded CPU
//! reference without launching a batch-norm kernel.

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::element::Element;
use ferronet::exec::{Batch, Executor};
use ferronet::graph::{Graph, ParamKind};
use ferronet::models::{build, names, ModelOptions};
use ferronet::ops::{Backend, Op};
use ferronet::rng::Rng;
use ferronet::shape::Layout;
use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::gpu;

const N: usize = 2;

fn tiny(name: &str) -> Graph {
    let input = match name {
        "small_cnn" => [1, 28, 28],
        "inception_v3" => [3, 75, 75],
        "alexnet" | "alexnet_bn" => [3, 67, 67],
        _ => [3, 32, 32],
    };
    let opts = ModelOptions { width_divisor: 8, aux_logits: false, ..ModelOptions::new(10, input) };
    build(name, &opts).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Batch-norm parameters and statistics away from their identity initialisation, as after training.
fn randomise_batch_norms<E: Element, B: Backend<E>>(ex: &mut Executor<E, B>, seed: u64) {
    let mut rng = Rng::new(seed);
    let specs = ex.graph().params.clone();
    for spec in specs {
        let (lo, hi) = match spec.kind {
            ParamKind::BnGamma => (0.5, 1.5),
            ParamKind::BnBeta | ParamKind::BnRunningMean => (-0.5, 0.5),
            ParamKind::BnRunningVar => (0.5, 2.0),
            ParamKind::Weight | ParamKind::Bias => continue,
        };
        let values: Vec<E> = (0..spec.numel()).map(|_| E::from_f64(rng.uniform_range(lo, hi))).collect();
        ex.set_param_host(&spec.name, &values).unwrap();
    }
}

fn batch_norms(graph: &Graph) -> usize {
    graph.nodes.iter().filter(|n| matches!(n.op, Op::BatchNorm2d(_))).count()
}

fn input(graph: &Graph, seed: u64) -> Vec<f64> {
    let mut rng = Rng::new(seed);
    (0..N * graph.input_shape().iter().product::<usize>()).map(|_| rng.normal()).collect()
}

#[test]
fn every_zoo_model_evaluates_the_same_folded() {
    for name in names() {
        let graph = tiny(name);
        let before = batch_norms(&graph);
        let x = input(&graph, 3);
        let mut ex = Executor::<f64, _>::new(CpuBackend::new(), graph, 1).unwrap();
        randomise_batch_norms(&mut ex, 2);
        let want = ex.infer(Batch::Host(&x)).unwrap();
        let (mut folded, count) = ex.fold_batch_norms().unwrap();
        assert_eq!(batch_norms(folded.graph()), before - count.batch_norms, "{name}");
        if before > 0 {
            assert!(count.batch_norms > 0, "{name}: none of its {before} batch norms was folded");
        }
        assert!(count.activations > 0, "{name}: no activation was fused");
        let got = folded.infer(Batch::Host(&x)).unwrap();
        assert_close(&format!("{name} folded logits"), &got, &want, 1e-12, 1e-9);
        // Channels-last, the fused bias and activation over [pixels, C] included.
        let got = folded.in_layout(Layout::Nhwc).infer(Batch::Host(&x)).unwrap();
        assert_close(&format!("{name} folded logits channels-last"), &got, &want, 1e-12, 1e-9);
    }
}

#[test]
fn folded_models_on_the_gpu_match_the_unfolded_cpu_reference() {
    for (name, layout) in [("resnet18", Layout::Nchw), ("mobilenet_v2", Layout::Nchw), ("mobilenet_v2", Layout::Nhwc)] {
        let opts = ModelOptions { cifar_stem: true, width_divisor: 8, ..ModelOptions::new(10, [3, 16, 16]) };
        let graph = build(name, &opts).unwrap();
        let x = input(&graph, 5);
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let mut cpu = Executor::<f64, _>::new(CpuBackend::new(), graph.clone(), 1).unwrap();
        randomise_batch_norms(&mut cpu, 4);
        let want = cpu.infer(Batch::Host(&x)).unwrap();
        let mut gpu_ex = Executor::<f32, _>::new(gpu(), graph, 1).unwrap();
        randomise_batch_norms(&mut gpu_ex, 4);
        let (folded, count) = gpu_ex.fold_batch_norms().unwrap();
        let mut folded = folded.in_layout(layout);
        assert!(count.batch_norms > 0 && count.activations > 0, "{name}: {count:?}");
        Device::<f32>::take_kernel_log(folded.backend());
        let got = folded.infer(Batch::HostF32(&x32)).unwrap();
        let launched = Device::<f32>::take_kernel_log(folded.backend());
        assert!(launched.iter().any(|k| k.starts_with("conv")), "{name}: no convolution ran: {launched:?}");
        assert!(!launched.iter().any(|k| k.starts_with("norm")), "{name}: a batch-norm kernel ran: {launched:?}");
        assert!(launched.iter().any(|k| k == "activation::bias_activation"), "{name}: no fused epilogue ran: {launched:?}");
        assert_close(&format!("{name} {layout:?} folded logits on the GPU"), &got, &want, 1e-4, 1e-4);
    }
}
