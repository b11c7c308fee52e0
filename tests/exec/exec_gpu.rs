//! The executor on the GPU backend (a real GPU when present, else the PTX simulator): a training
//! step and an optimiser step agree with the CPU f64 reference from the same seed.

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::gpu;
use ferronet_test_support::graphs::{batch, conv_chain, inverted_residual, labels, op_zoo, residual_block};

use ferronet::cpu::CpuBackend;
use ferronet::exec::{Batch, Executor, Optimizer, OptimizerConfig, OptimizerKind, StepOptions};
use ferronet::graph::Graph;

const N: usize = 2;

/// SGD rather than Adam: Adam's first step moves every parameter by about lr whatever its
/// gradient's size, so f32 noise on a near-zero gradient would decide the comparison.
fn sgd() -> OptimizerConfig {
    OptimizerConfig {
        kind: OptimizerKind::Sgd { momentum: 0.9, dampening: 0.0, nesterov: true },
        lr: 0.1,
        weight_decay: 0.01,
        decay_weights_only: true,
        clip_grad_norm: Some(1.0),
    }
}

fn step_matches_cpu(graph: Graph) {
    let x = batch(&graph, N, 4);
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let y = labels(N, graph.num_classes());
    let opts = StepOptions { dropout_seed: Some(3), input_grad: true, ..StepOptions::default() };
    let mut cpu = Executor::<f64, _>::new(CpuBackend::new(), graph.clone(), 7).unwrap();
    let mut gpu = Executor::<f32, _>::new(gpu(), graph.clone(), 7).unwrap();
    let want = cpu.train_step_readback(Batch::Host(&x), &y, &opts).unwrap();
    let got = gpu.train_step_readback(Batch::HostF32(&x32), &y, &opts).unwrap();
    let launched = ferronet::device::Device::<f32>::take_kernel_log(gpu.backend());
    assert!(launched.iter().any(|k| k.starts_with("conv")), "{}: no convolution kernel ran: {launched:?}", graph.name);
    assert!((want.loss - got.loss).abs() < 1e-4 * want.loss.abs().max(1.0), "{}: loss {} vs {}", graph.name, got.loss, want.loss);
    assert_close(&format!("{} logits", graph.name), &got.logits, &want.logits, 1e-4, 1e-4);
    let dx = gpu.input_grad_host().unwrap().unwrap();
    assert_close(&format!("{} input grad", graph.name), &dx, &cpu.input_grad_host().unwrap().unwrap(), 1e-5, 1e-3);
    let names: Vec<String> = cpu.params().iter().map(|(_, p)| p.spec.name.clone()).collect();
    for name in &names {
        if let Some(want) = cpu.grad_host_by_name(name).unwrap() {
            let got = gpu.grad_host_by_name(name).unwrap().expect("same trainable parameters");
            assert_close(&format!("{} grad {name}", graph.name), &got, &want, 1e-5, 1e-3);
        }
    }
    let (mut opt_cpu, mut opt_gpu) = (Optimizer::new(sgd()).unwrap(), Optimizer::new(sgd()).unwrap());
    let norm_cpu = cpu.optimizer_step(&mut opt_cpu).unwrap().unwrap();
    let norm_gpu = gpu.optimizer_step(&mut opt_gpu).unwrap().unwrap();
    assert!((norm_cpu - norm_gpu).abs() < 1e-4 * norm_cpu, "{}: grad norm {norm_gpu} vs {norm_cpu}", graph.name);
    for name in &names {
        let want = cpu.param_host(name).unwrap();
        assert_close(&format!("{} {name} after SGD", graph.name), &gpu.param_host(name).unwrap(), &want, 1e-5, 1e-4);
    }
    let eval_cpu = cpu.infer(Batch::Host(&x)).unwrap();
    assert_close(&format!("{} eval logits", graph.name), &gpu.infer(Batch::HostF32(&x32)).unwrap(), &eval_cpu, 1e-4, 1e-4);
}

#[test]
fn residual_block_step_matches_cpu() {
    step_matches_cpu(residual_block());
}

#[test]
fn inverted_residual_step_matches_cpu() {
    step_matches_cpu(inverted_residual());
}

#[test]
fn op_zoo_step_matches_cpu() {
    step_matches_cpu(op_zoo());
}

/// The memory planner's prediction holds for the GPU backend's workspaces too.
#[test]
fn planned_peak_bounds_gpu_peak() {
    use ferronet::exec::Mode;
    use ferronet::device::DEFAULT_WORKSPACE_MB;
    for graph in [conv_chain(3), residual_block(), op_zoo()] {
        let x: Vec<f32> = batch(&graph, N, 4).iter().map(|&v| v as f32).collect();
        let y = labels(N, graph.num_classes());
        let mut gpu = Executor::<f32, _>::new(gpu(), graph.clone(), 7).unwrap();
        let planned = gpu.planned_peak_bytes(N, Mode::Train, DEFAULT_WORKSPACE_MB << 20).unwrap();
        gpu.train_step(Batch::HostF32(&x), &y, &StepOptions::default()).unwrap();
        let measured = gpu.last_peak_bytes();
        println!("{}: planned {planned} measured {measured}", graph.name);
        assert!(measured <= planned && planned <= measured * 11 / 10, "{}: planned {planned} measured {measured}", graph.name);
    }
}

/// A step reads nothing back: an out-of-range label does not stop it, and the next read of the
/// training metrics is the error naming the label.
#[test]
fn a_bad_label_is_named_when_the_metrics_are_read() {
    let graph = residual_block();
    let classes = graph.num_classes();
    let x: Vec<f32> = batch(&graph, N, 4).iter().map(|&v| v as f32).collect();
    let mut y = labels(N, classes);
    y[1] = classes as u32 + 2;
    let mut gpu = Executor::<f32, _>::new(gpu(), graph, 7).unwrap();
    gpu.train_step(Batch::HostF32(&x), &y, &StepOptions::default()).unwrap();
    assert_eq!(
        gpu.read_train_metrics().unwrap_err().to_string(),
        format!(
            "shape error: softmax_cross_entropy: label {} of sample 1 is out of range for {classes} classes (labels must be below {classes})",
            classes + 2
        )
    );
}

/// Training and evaluation figures accumulated on the device agree with the CPU's.
#[test]
fn accumulated_metrics_match_cpu() {
    let graph = op_zoo();
    let x = batch(&graph, N, 4);
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    let y = labels(N, graph.num_classes());
    let opts = StepOptions { dropout_seed: Some(3), ..StepOptions::default() };
    let mut cpu = Executor::<f64, _>::new(CpuBackend::new(), graph.clone(), 7).unwrap();
    let mut gpu = Executor::<f32, _>::new(gpu(), graph.clone(), 7).unwrap();
    for _ in 0..2 {
        cpu.train_step(Batch::Host(&x), &y, &opts).unwrap();
        gpu.train_step(Batch::HostF32(&x32), &y, &opts).unwrap();
    }
    let (want, got) = (cpu.read_train_metrics().unwrap(), gpu.read_train_metrics().unwrap());
    assert_eq!((got.steps, got.seen, got.skipped_steps), (2, 2 * N, 0));
    assert_eq!(got.correct, want.correct);
    assert_close("train loss sum", &[got.loss_sum], &[want.loss_sum], 1e-5, 1e-4);
    let (mut cpu_eval, mut gpu_eval) = (cpu.eval_metrics().unwrap(), gpu.eval_metrics().unwrap());
    cpu.infer_accumulate(Batch::Host(&x), &y, &mut cpu_eval).unwrap();
    gpu.infer_accumulate(Batch::HostF32(&x32), &y, &mut gpu_eval).unwrap();
    let (want, got) = (cpu.read_eval_metrics(&cpu_eval).unwrap(), gpu.read_eval_metrics(&gpu_eval).unwrap());
    assert_eq!((got.samples, got.top5_hits, &got.confusion), (want.samples, want.top5_hits, &want.confusion));
    assert_close("eval loss sum", &[got.loss_sum], &[want.loss_sum], 1e-5, 1e-4);
}
