//! The executor on the GPU backend (a real GPU when present, else the PTX simulator): a training
//! step and an optimiser step agree with the CPU f64 reference from the same seed; the
//! multi-tensor optimiser equals the per-tensor path bit for bit, in a constant number of launches.

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::gpu;
use ferronet_test_support::graphs::{batch, conv_chain, inverted_residual, labels, op_zoo, residual_block};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::element::Element;
use ferronet::exec::{Batch, Buf, Executor, GradStore, Optimizer, OptimizerConfig, OptimizerKind, ParamStore, StepOptions};
use ferronet::gpu::GpuBackend;
use ferronet::graph::{Graph, ParamId};
use ferronet::models::ModelOptions;
use ferronet::ops::{AdamParams, Backend, SgdParams};
use ferronet::rng::Rng;
use ferronet::sim::{SimDriver, SimOptions};
use ferronet_test_support::gpu::random_f32;
use std::collections::BTreeMap;
use std::sync::Arc;

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
    cpu.optimizer_step(&mut opt_cpu).unwrap();
    gpu.optimizer_step(&mut opt_gpu).unwrap();
    let norm_cpu = opt_cpu.last_grad_norm(cpu.backend()).unwrap().unwrap();
    let norm_gpu = opt_gpu.last_grad_norm(gpu.backend()).unwrap().unwrap();
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

/// The memory planner's prediction holds for the GPU backend's workspaces too, those of the
/// tensor-core convolutions at bf16 and synchronised batch norms included.
#[test]
fn planned_peak_bounds_gpu_peak() {
    use ferronet::exec::Mode;
    use ferronet::precision::Precision;
    use ferronet::shape::Layout::{Nchw, Nhwc};
    let cases = [
        (conv_chain(3), Precision::Fp32, Nchw),
        (residual_block(), Precision::Fp32, Nchw),
        (op_zoo(), Precision::Fp32, Nchw),
        (conv_chain(3), Precision::Bf16, Nchw),
        (residual_block(), Precision::Bf16, Nchw),
        // Channels-last: the conversions and the NHWC kernels' packed weights and partials.
        (op_zoo(), Precision::Fp32, Nhwc),
        (residual_block(), Precision::Bf16, Nhwc),
        // Channels-last depthwise convolutions reading and writing 16-bit activations.
        (inverted_residual(), Precision::Bf16, Nhwc),
    ];
    // Synchronised batch norms (a group of one process): their extra passes and temporaries.
    let synchronised = [(residual_block(), Precision::Fp32, Nchw), (residual_block(), Precision::Bf16, Nhwc)];
    let cases = cases.into_iter().map(|c| (c, false)).chain(synchronised.into_iter().map(|c| (c, true)));
    for ((graph, precision, layout), sync_bn) in cases {
        let x: Vec<f32> = batch(&graph, N, 4).iter().map(|&v| v as f32).collect();
        let y = labels(N, graph.num_classes());
        let mut gpu = Executor::<f32, _>::new(gpu(), graph.clone(), 7).unwrap().in_layout(layout);
        if sync_bn {
            gpu.synchronise_batch_norms(std::sync::Arc::new(ferronet::dist::ProcessGroup::alone()));
        }
        gpu.set_precision(precision);
        let planned = gpu.planned_peak_bytes(N, Mode::Train, gpu.backend().conv_workspace()).unwrap();
        gpu.train_step(Batch::HostF32(&x), &y, &StepOptions::default()).unwrap();
        let measured = gpu.last_peak_bytes();
        println!("{} at {precision} {layout:?}: planned {planned} measured {measured}", graph.name);
        assert!(measured <= planned && planned <= measured * 11 / 10, "{} at {precision} {layout:?}: planned {planned} measured {measured}", graph.name);
    }
}

/// Per-parameter state of the per-tensor reference: (steps, first buffer, second buffer).
type PerTensorState<E, B> = BTreeMap<ParamId, (u64, Option<Buf<E, B>>, Option<Buf<E, B>>)>;

/// One optimiser step the way `Optimizer::step` made it before the multi-tensor ops: clipping
/// on the host from one sum_squares read per gradient, then one per-tensor step per parameter.
fn per_tensor_step<E: Element, B: Backend<E>>(
    b: &B,
    params: &mut ParamStore<E, B>,
    grads: &GradStore<E, B>,
    cfg: &OptimizerConfig,
    state: &mut PerTensorState<E, B>,
) {
    let ids: Vec<ParamId> = grads.ids().collect();
    let mut grads: Vec<Buf<E, B>> = ids.iter().map(|&id| b.copy_buf(grads.get(id).unwrap()).unwrap()).collect();
    if let Some(max_norm) = cfg.clip_grad_norm {
        let total: f64 = grads.iter().map(|g| b.download(&b.sum_squares(g).unwrap()).unwrap()[0].to_f64()).sum();
        let coef = max_norm / (total.sqrt() + 1e-6);
        if coef < 1.0 {
            grads.iter_mut().for_each(|g| b.scale(E::from_f64(coef), g).unwrap());
        }
    }
    let mut unused = b.zeros(0).unwrap();
    for (&id, grad) in ids.iter().zip(&grads) {
        let spec = params.spec(id).clone();
        let weight_decay = if !cfg.decay_weights_only || spec.kind.decays_by_default() { cfg.weight_decay } else { 0.0 };
        let (step, first, second) = state.entry(id).or_insert((0, None, None));
        let param = params.value_mut(id);
        match cfg.kind {
            OptimizerKind::Sgd { momentum, dampening, nesterov } => {
                let h = SgdParams { lr: cfg.lr, momentum, dampening, nesterov, weight_decay };
                let first_step = first.is_none();
                let buf = if momentum == 0.0 { &mut unused } else { first.get_or_insert(b.zeros(spec.numel()).unwrap()) };
                b.sgd_step(param, grad, buf, &h, first_step).unwrap();
            }
            OptimizerKind::Adam { beta1, beta2, eps, decoupled } => {
                let h = AdamParams { lr: cfg.lr, beta1, beta2, eps, weight_decay, decoupled };
                let m = first.get_or_insert(b.zeros(spec.numel()).unwrap());
                let v = second.get_or_insert(b.zeros(spec.numel()).unwrap());
                b.adam_step(param, grad, m, v, &h, *step + 1).unwrap();
            }
        }
        *step += 1;
    }
}

fn reference_configs() -> Vec<OptimizerConfig> {
    let adam = OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, decoupled: false };
    vec![
        OptimizerConfig { clip_grad_norm: Some(0.05), ..sgd() },
        OptimizerConfig { kind: OptimizerKind::Sgd { momentum: 0.9, dampening: 0.1, nesterov: false }, clip_grad_norm: None, ..sgd() },
        OptimizerConfig { kind: adam, lr: 1e-2, clip_grad_norm: Some(0.05), ..sgd() },
        OptimizerConfig { kind: OptimizerKind::Adam { decoupled: true, beta1: 0.8, beta2: 0.99, eps: 1e-6 }, lr: 1e-2, ..sgd() },
    ]
}

/// Three training steps of the residual block from one seed (the last with a parameter frozen),
/// through `Optimizer` (multi-tensor ops, clipping on the device) and through the per-tensor
/// path: the same parameters bit for bit.
fn optimizer_equals_per_tensor_path<E: Element, B: Backend<E> + Clone>(backend: B) {
    let graph = residual_block();
    let x: Vec<E> = batch(&graph, N, 4).iter().map(|&v| E::from_f64(v)).collect();
    let y = labels(N, graph.num_classes());
    for cfg in reference_configs() {
        let mut multi = Executor::<E, _>::new(backend.clone(), graph.clone(), 7).unwrap();
        let mut single = Executor::<E, _>::new(backend.clone(), graph.clone(), 7).unwrap();
        let mut opt = Optimizer::new(cfg).unwrap();
        let mut state = PerTensorState::<E, B>::new();
        for step in 0..3 {
            if step == 2 {
                // Freezing changes the set of tensors: the optimiser's table is rebuilt.
                for ex in [&mut multi, &mut single] {
                    let id = ex.params().id("conv1.weight").unwrap();
                    ex.params_mut().set_trainable(id, false).unwrap();
                }
            }
            multi.train_step(Batch::Host(&x), &y, &StepOptions::default()).unwrap();
            multi.optimizer_step(&mut opt).unwrap();
            single.train_step(Batch::Host(&x), &y, &StepOptions::default()).unwrap();
            let mut grads = GradStore::new(single.params().len());
            for id in single.grads().ids().collect::<Vec<_>>() {
                grads.accumulate(&backend, id, backend.copy_buf(single.grads().get(id).unwrap()).unwrap()).unwrap();
            }
            per_tensor_step(&backend, single.params_mut(), &grads, &cfg, &mut state);
            for (_, p) in multi.params().iter() {
                let name = &p.spec.name;
                let same = multi.param_host(name).unwrap() == single.param_host(name).unwrap();
                assert!(same, "{}: {:?} step {step}: {name} differs from the per-tensor path", backend.name(), cfg.kind);
            }
        }
    }
}

#[test]
fn optimizer_steps_are_bit_identical_to_the_per_tensor_path() {
    optimizer_equals_per_tensor_path::<f64, _>(CpuBackend::new());
    optimizer_equals_per_tensor_path::<f32, _>(CpuBackend::new());
    optimizer_equals_per_tensor_path::<f32, _>(gpu());
}

/// Launches of one optimiser step over ResNet-18's 62 parameter tensors (CIFAR stem, widths / 8)
/// on the simulator, per-tensor path vs `Optimizer`, with and without clipping. Counted, not
/// predicted.
#[test]
fn resnet18_optimizer_step_launches_are_constant() {
    let opts = ModelOptions { cifar_stem: true, width_divisor: 8, ..ModelOptions::new(10, [3, 32, 32]) };
    let graph = ferronet::models::build("resnet18", &opts).unwrap();
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let b = GpuBackend::new(driver.clone());
    let mut params = ParamStore::new(&b, &graph.params, &mut Rng::new(1)).unwrap();
    let mut grads = GradStore::new(params.len());
    let trainable: Vec<(usize, usize)> =
        params.iter().filter(|(_, p)| p.spec.trainable).map(|(id, p)| (id, p.spec.numel())).collect();
    assert_eq!(trainable.len(), 62);
    for &(id, len) in &trainable {
        grads.accumulate(&b, id, b.upload(&random_f32(len, id as u64, -1.0, 1.0)).unwrap()).unwrap();
    }
    for cfg in [OptimizerConfig { clip_grad_norm: None, ..sgd() }, sgd(), reference_configs()[2]] {
        let mut opt = Optimizer::new(cfg).unwrap();
        let mut state = PerTensorState::<f32, GpuBackend>::new();
        let mut counts = [0; 2];
        // The second step is the steady state (the table and the state buffers exist).
        for _ in 0..2 {
            driver.take_launch_stats();
            per_tensor_step(&b, &mut params, &grads, &cfg, &mut state);
            counts[0] = driver.take_launch_stats().len();
            opt.step(&b, &mut params, &grads).unwrap();
            counts[1] = driver.take_launch_stats().len();
        }
        println!(
            "resnet18 optimiser step ({:?}, clip {:?}), simulator launches: per-tensor {}, multi-tensor {}",
            cfg.kind, cfg.clip_grad_norm, counts[0], counts[1]
        );
        // The advance of the step counts, the update, and two for clipping.
        assert_eq!(counts[1], if cfg.clip_grad_norm.is_some() { 4 } else { 2 });
        assert!(counts[0] >= 62);
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
