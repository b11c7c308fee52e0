//! Every model family runs a forward and backward pass on the CPU at a small batch and input
//! (tiny widths where the full model is too slow), with logits and gradients of the shapes the
//! summary describes.

use ferronet::cpu::CpuBackend;
use ferronet::exec::{Batch, Executor, StepOptions};
use ferronet::models::summary::summarize;
use ferronet::models::{build, ModelOptions};
use ferronet::rng::Rng;

const BATCH: usize = 2;
const CLASSES: usize = 5;

fn run(name: &str, opts: ModelOptions) {
    let graph = build(name, &opts).unwrap_or_else(|e| panic!("{name}: {e}"));
    let summary = summarize(&graph, BATCH, true).unwrap();
    let logits_node = graph.main_output().node;
    assert_eq!(summary.layers[logits_node].output_shape, vec![CLASSES], "{name}");
    let params = graph.params.clone();
    let mut ex = Executor::<f32, _>::new(CpuBackend::new(), graph, 1).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut rng = Rng::new(2);
    let x: Vec<f32> = (0..BATCH * opts.input.iter().product::<usize>()).map(|_| rng.normal() as f32).collect();
    let labels: Vec<u32> = (0..BATCH as u32).map(|i| i % CLASSES as u32).collect();
    let out = ex.train_step_readback(Batch::Host(&x), &labels, &StepOptions::default()).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert!(out.loss.is_finite() && out.loss > 0.0, "{name}: loss {}", out.loss);
    assert_eq!(out.logits.len(), BATCH * CLASSES, "{name}");
    let mut nonzero = 0;
    for (id, p) in params.iter().enumerate() {
        let grad = ex.grad_host(id).unwrap();
        if p.kind.is_state() {
            assert!(grad.is_none(), "{name}: running statistic {} has a gradient", p.name);
            continue;
        }
        let grad = grad.unwrap_or_else(|| panic!("{name}: no gradient for {}", p.name));
        assert_eq!(grad.len(), p.numel(), "{name}: gradient of {}", p.name);
        assert!(grad.iter().all(|g| g.is_finite()), "{name}: non-finite gradient of {}", p.name);
        nonzero += grad.iter().any(|&g| g != 0.0) as usize;
    }
    assert!(nonzero * 2 > summary.layers.iter().filter(|l| l.params > 0).count(), "{name}: most layers should get gradient");
    let logits = ex.infer(Batch::Host(&x)).unwrap();
    assert_eq!(logits.len(), BATCH * CLASSES, "{name}");
}

fn tiny(input: [usize; 3], divisor: usize) -> ModelOptions {
    ModelOptions { width_divisor: divisor, ..ModelOptions::new(CLASSES, input) }
}

#[test]
fn small_cnn_full_width() {
    run("small_cnn", ModelOptions::new(CLASSES, [1, 28, 28]));
}

#[test]
fn alexnets() {
    run("alexnet", tiny([3, 63, 63], 16));
    run("alexnet_bn", tiny([3, 67, 67], 16));
}

#[test]
fn vggs() {
    run("vgg11", tiny([3, 32, 32], 16));
    run("vgg13_bn", tiny([3, 32, 32], 16));
}

#[test]
fn resnets() {
    run("resnet18", ModelOptions { cifar_stem: true, ..tiny([3, 16, 16], 8) });
    run("resnet50", tiny([3, 32, 32], 16));
}

#[test]
fn mobilenet_v2() {
    run("mobilenet_v2", ModelOptions { cifar_stem: true, ..tiny([3, 16, 16], 8) });
    run("mobilenet_v2", ModelOptions { width_mult: 0.35, ..tiny([3, 32, 32], 1) });
}

#[test]
fn shufflenets() {
    run("shufflenet_v2_x0_5", tiny([3, 32, 32], 4));
    run("shufflenet_v2_x1_0", ModelOptions { cifar_stem: true, ..tiny([3, 16, 16], 8) });
}

#[test]
fn inception_v3_with_aux() {
    run("inception_v3", tiny([3, 299, 299], 32));
}

#[test]
fn googlenet_with_aux() {
    run("googlenet", tiny([3, 64, 64], 16));
}

#[test]
fn efficientnet_b0() {
    run("efficientnet_b0", tiny([3, 32, 32], 8));
}
