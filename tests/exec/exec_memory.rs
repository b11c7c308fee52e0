//! Liveness and memory: inference frees activations early, training keeps only what backward
//! reads, the planner predicts the measured peak, and scratch buffers are reused.

use ferronet_test_support::graphs::{batch, conv_chain, labels, op_zoo, residual_block};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::exec::{Batch, Executor, Mode, Optimizer, OptimizerConfig, OptimizerKind, StepOptions};
use ferronet::device::{ConvWorkspace, DEFAULT_WORKSPACE_MB};

const N: usize = 4;

#[test]
fn inference_peak_is_below_training_peak_and_the_sum_of_activations() {
    let graph = conv_chain(10);
    let x = batch(&graph, N, 1);
    let y = labels(N, graph.num_classes());
    let mut ex = Executor::<f32, _>::new(CpuBackend::new(), graph.clone(), 2).unwrap();
    let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
    ex.train_step(Batch::HostF32(&x32), &y, &StepOptions::default()).unwrap();
    let train_peak = ex.last_peak_bytes();
    let logits = ex.infer(Batch::HostF32(&x32)).unwrap();
    assert_eq!(logits.len(), N * 5);
    let infer_peak = ex.last_peak_bytes();
    // Gradients stay for the optimiser: subtract everything resident to get the activations.
    let resident = ex.params().bytes() + ex.grads().ids().map(|id| ex.params().spec(id).numel() * 4).sum::<usize>();
    let activations: usize = graph.nodes.iter().map(|n| N * n.shape.iter().product::<usize>() * 4).sum();
    println!("train peak {train_peak} B, inference peak {infer_peak} B, resident {resident} B, all activations {activations} B");
    assert!(infer_peak < train_peak, "inference {infer_peak} vs training {train_peak}");
    assert!(infer_peak - resident < activations / 2, "inference used {} B of {activations} B", infer_peak - resident);
}

/// The planned peak bounds the measured one from above and stays within 10% of it.
#[test]
fn planned_peak_tracks_measured_peak() {
    for graph in [conv_chain(4), residual_block(), op_zoo()] {
        let x = batch(&graph, N, 1);
        let y = labels(N, graph.num_classes());
        let mut ex = Executor::<f64, _>::new(CpuBackend::new(), graph.clone(), 2).unwrap();
        let workspace = ConvWorkspace::columns(DEFAULT_WORKSPACE_MB << 20);
        let planned_train = ex.planned_peak_bytes(N, Mode::Train, workspace).unwrap();
        let planned_eval = ex.planned_peak_bytes(N, Mode::Eval, workspace).unwrap();
        ex.train_step(Batch::Host(&x), &y, &StepOptions::default()).unwrap();
        let train = ex.last_peak_bytes();
        // The optimiser step frees the gradients; its own state stays resident during eval.
        let kind = OptimizerKind::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false };
        let mut opt = Optimizer::new(OptimizerConfig { kind, lr: 0.1, weight_decay: 0.0, decay_weights_only: true, clip_grad_norm: None }).unwrap();
        ex.optimizer_step(&mut opt).unwrap();
        ex.infer(Batch::Host(&x)).unwrap();
        let eval = ex.last_peak_bytes() - opt.state_bytes(ex.params());
        println!("{}: train planned {planned_train} measured {train}; eval planned {planned_eval} measured {eval}", graph.name);
        for (what, planned, measured) in [("train", planned_train, train), ("eval", planned_eval, eval)] {
            assert!(measured <= planned, "{}: {what} measured {measured} above planned {planned}", graph.name);
            assert!(planned <= measured * 11 / 10, "{}: {what} planned {planned} far above measured {measured}", graph.name);
        }
    }
}

/// A step that keeps BN statistics frozen needs scratch statistics per BN layer; pooled, they
/// are allocated once instead of every step.
#[test]
fn buffer_pool_removes_repeated_scratch_allocations() {
    let graph = residual_block();
    let x = batch(&graph, N, 1);
    let y = labels(N, graph.num_classes());
    let opts = StepOptions { update_running_stats: false, ..StepOptions::default() };
    let mut counts = Vec::new();
    for pooling in [false, true] {
        let mut ex = Executor::<f64, _>::new(CpuBackend::new(), graph.clone(), 2).unwrap();
        ex.set_buffer_pooling(pooling);
        for _ in 0..4 {
            ex.train_step(Batch::Host(&x), &y, &opts).unwrap();
            ex.loss_only(Batch::Host(&x), &y, &opts).unwrap();
        }
        counts.push(ex.pool_stats());
    }
    println!("(allocations, reuses) without pool {:?}, with pool {:?}", counts[0], counts[1]);
    // 2 BN layers x 2 statistics x 8 forward passes without the pool; with it, the first
    // layer's pair, reused by the second layer (same channel count) and every later pass.
    assert_eq!(counts[0], (32, 0));
    assert_eq!(counts[1], (2, 30));
}

#[test]
fn frozen_statistics_leave_running_stats_untouched() {
    let graph = residual_block();
    let x = batch(&graph, N, 1);
    let y = labels(N, graph.num_classes());
    let mut ex = Executor::<f64, _>::new(CpuBackend::new(), graph, 2).unwrap();
    let before = ex.param_host("bn1.running_var").unwrap();
    let frozen = StepOptions { update_running_stats: false, ..StepOptions::default() };
    ex.train_step(Batch::Host(&x), &y, &frozen).unwrap();
    assert_eq!(ex.param_host("bn1.running_var").unwrap(), before);
    ex.train_step(Batch::Host(&x), &y, &StepOptions::default()).unwrap();
    assert_ne!(ex.param_host("bn1.running_var").unwrap(), before);
}

#[test]
fn bad_batches_are_clear_errors() {
    let graph = residual_block();
    let mut ex = Executor::<f64, _>::new(CpuBackend::new(), graph.clone(), 2).unwrap();
    let err = ex.infer(Batch::Host(&[0.0; 7])).unwrap_err().to_string();
    assert!(err.contains("7 values") && err.contains("[4, 5, 5]"), "{err}");
    let x = batch(&graph, 2, 1);
    let err = ex.train_step(Batch::Host(&x), &[0, 1, 2], &StepOptions::default()).unwrap_err().to_string();
    assert!(err.contains("3 labels") && err.contains("2 samples"), "{err}");
    let device_batch = ex.backend().upload(&x).unwrap();
    assert_eq!(ex.infer(Batch::Device(device_batch)).unwrap().len(), 2 * 3);
}

#[test]
fn a_batch_too_large_for_free_memory_names_one_that_fits() {
    let graph = conv_chain(3);
    let ex = Executor::<f32, _>::new(CpuBackend::new(), graph, 2).unwrap();
    let workspace = ConvWorkspace::columns(DEFAULT_WORKSPACE_MB << 20);
    let per_16 = ex.planned_peak_bytes(16, Mode::Train, workspace).unwrap();
    let per_5 = ex.planned_peak_bytes(5, Mode::Train, workspace).unwrap();
    let per_6 = ex.planned_peak_bytes(6, Mode::Train, workspace).unwrap();
    assert!(per_5 < per_6 && per_6 < per_16);
    ex.check_batch_fits(16, Mode::Train, workspace, 1000, per_16 + 1000).unwrap();
    let err = ex.check_batch_fits(16, Mode::Train, workspace, 1000, per_5 + 1000).unwrap_err().to_string();
    assert!(err.contains("at most 5 fits"), "{err}");
    let err = ex.check_batch_fits(16, Mode::Train, workspace, 0, 10).unwrap_err().to_string();
    assert!(err.contains("even a batch of 1"), "{err}");
}
