//! Optimiser steps through the executor against torch.optim's update rules written out on the
//! host, over two steps of a tiny linear model; frozen parameters; state export/import.

use ferronet_test_support::graphs::labels;

use ferronet::cpu::CpuBackend;
use ferronet::exec::{Batch, Executor, Optimizer, OptimizerConfig, OptimizerKind, StepOptions};
use ferronet::graph::{Graph, GraphBuilder, ParamKind};

const N: usize = 4;

/// x [4] -> linear(3, bias): the smallest model with a weight and a bias.
fn linear_model() -> Graph {
    let mut b = GraphBuilder::new("linear", &[4, 1, 1]);
    let fc = b.linear("fc", 0, 3, true).unwrap();
    b.output(fc, 1.0, false);
    b.finish().unwrap()
}

fn inputs(step: usize) -> Vec<f64> {
    (0..N * 4).map(|i| ((i * 7 + step * 3) % 11) as f64 / 5.0 - 1.0).collect()
}

/// Per-parameter reference state of torch.optim.
#[derive(Default, Clone)]
struct RefState {
    buf: Option<Vec<f64>>,
    m: Vec<f64>,
    v: Vec<f64>,
    step: i32,
}

/// torch.optim's SGD / Adam / AdamW update of one parameter, on the host.
fn reference_update(cfg: &OptimizerConfig, decays: bool, p: &mut [f64], grad: &[f64], st: &mut RefState) {
    let wd = if decays || !cfg.decay_weights_only { cfg.weight_decay } else { 0.0 };
    let lr = cfg.lr;
    match cfg.kind {
        OptimizerKind::Sgd { momentum, dampening, nesterov } => {
            let mut g: Vec<f64> = grad.iter().zip(p.iter()).map(|(g, p)| g + wd * p).collect();
            if momentum != 0.0 {
                let buf = match st.buf.take() {
                    None => g.clone(),
                    Some(b) => b.iter().zip(&g).map(|(b, g)| momentum * b + (1.0 - dampening) * g).collect(),
                };
                g = if nesterov { g.iter().zip(&buf).map(|(g, b)| g + momentum * b).collect() } else { buf.clone() };
                st.buf = Some(buf);
            }
            for (p, g) in p.iter_mut().zip(&g) {
                *p -= lr * g;
            }
        }
        OptimizerKind::Adam { beta1, beta2, eps, decoupled } => {
            st.step += 1;
            if st.m.is_empty() {
                st.m = vec![0.0; p.len()];
                st.v = vec![0.0; p.len()];
            }
            for k in 0..p.len() {
                let g = if decoupled {
                    p[k] *= 1.0 - lr * wd;
                    grad[k]
                } else {
                    grad[k] + wd * p[k]
                };
                st.m[k] = beta1 * st.m[k] + (1.0 - beta1) * g;
                st.v[k] = beta2 * st.v[k] + (1.0 - beta2) * g * g;
                let m_hat = st.m[k] / (1.0 - beta1.powi(st.step));
                let v_hat = st.v[k] / (1.0 - beta2.powi(st.step));
                p[k] -= lr * m_hat / (v_hat.sqrt() + eps);
            }
        }
    }
}

/// Two steps (the second with a new learning rate) through the executor and the reference.
fn two_steps_match_reference(cfg: OptimizerConfig) {
    let mut ex = Executor::<f64, _>::new(CpuBackend::new(), linear_model(), 9).unwrap();
    let mut opt = Optimizer::new(cfg).unwrap();
    let names = ["fc.weight", "fc.bias"];
    let mut expected: Vec<Vec<f64>> = names.iter().map(|n| ex.param_host(n).unwrap()).collect();
    let mut states = vec![RefState::default(); 2];
    for step in 0..2 {
        if step == 1 {
            opt.set_lr(cfg.lr * 0.5).unwrap();
        }
        ex.train_step(Batch::Host(&inputs(step)), &labels(N, 3), &StepOptions::default()).unwrap();
        let mut grads: Vec<Vec<f64>> = names.iter().map(|n| ex.grad_host_by_name(n).unwrap().unwrap()).collect();
        if let Some(max_norm) = cfg.clip_grad_norm {
            let norm = grads.iter().flatten().map(|g| g * g).sum::<f64>().sqrt();
            let coef = max_norm / (norm + 1e-6);
            assert!(coef < 1.0, "the test's clipping threshold must bite");
            grads.iter_mut().flatten().for_each(|g| *g *= coef);
            ex.optimizer_step(&mut opt).unwrap();
            let reported = opt.last_grad_norm(ex.backend()).unwrap().expect("clipping reports the norm");
            assert!((reported - norm).abs() < 1e-12 * norm);
        } else {
            ex.optimizer_step(&mut opt).unwrap();
            assert_eq!(opt.last_grad_norm(ex.backend()).unwrap(), None);
        }
        let ref_cfg = OptimizerConfig { lr: opt.lr(), ..cfg };
        for (i, kind) in [ParamKind::Weight, ParamKind::Bias].into_iter().enumerate() {
            reference_update(&ref_cfg, kind.decays_by_default(), &mut expected[i], &grads[i], &mut states[i]);
            let got = ex.param_host(names[i]).unwrap();
            for (g, e) in got.iter().zip(&expected[i]) {
                assert!((g - e).abs() < 1e-12, "{:?} step {step} {}: {g} vs {e}", cfg.kind, names[i]);
            }
        }
    }
}

fn config(kind: OptimizerKind) -> OptimizerConfig {
    OptimizerConfig { kind, lr: 0.1, weight_decay: 0.05, decay_weights_only: true, clip_grad_norm: None }
}

#[test]
fn sgd_with_momentum_and_dampening_follows_torch_update_rule() {
    two_steps_match_reference(config(OptimizerKind::Sgd { momentum: 0.9, dampening: 0.2, nesterov: false }));
}

#[test]
fn sgd_nesterov_decaying_biases_too_follows_torch_update_rule() {
    let cfg = OptimizerConfig {
        decay_weights_only: false,
        ..config(OptimizerKind::Sgd { momentum: 0.8, dampening: 0.0, nesterov: true })
    };
    two_steps_match_reference(cfg);
}

#[test]
fn plain_sgd_follows_torch_update_rule() {
    two_steps_match_reference(config(OptimizerKind::Sgd { momentum: 0.0, dampening: 0.0, nesterov: false }));
}

#[test]
fn adam_follows_torch_update_rule() {
    two_steps_match_reference(config(OptimizerKind::Adam { beta1: 0.9, beta2: 0.99, eps: 1e-8, decoupled: false }));
}

#[test]
fn adamw_with_clipping_follows_torch_update_rule() {
    let cfg = OptimizerConfig {
        clip_grad_norm: Some(0.05),
        ..config(OptimizerKind::Adam { beta1: 0.8, beta2: 0.9, eps: 1e-6, decoupled: true })
    };
    two_steps_match_reference(cfg);
}

#[test]
fn frozen_parameters_get_no_gradient_and_stay_put() {
    let mut ex = Executor::<f32, _>::new(CpuBackend::new(), linear_model(), 9).unwrap();
    let bias = ex.params().id("fc.bias").unwrap();
    ex.params_mut().set_trainable(bias, false).unwrap();
    let (w0, b0) = (ex.param_host("fc.weight").unwrap(), ex.param_host("fc.bias").unwrap());
    let mut opt = Optimizer::new(config(OptimizerKind::Adam { beta1: 0.9, beta2: 0.999, eps: 1e-8, decoupled: true })).unwrap();
    for step in 0..2 {
        let x: Vec<f32> = inputs(step).iter().map(|&v| v as f32).collect();
        ex.train_step(Batch::Host(&x), &labels(N, 3), &StepOptions::default()).unwrap();
        assert!(ex.grad_host(bias).unwrap().is_none());
        ex.optimizer_step(&mut opt).unwrap();
    }
    assert_eq!(ex.param_host("fc.bias").unwrap(), b0);
    assert_ne!(ex.param_host("fc.weight").unwrap(), w0);
}

#[test]
fn running_statistics_cannot_be_made_trainable() {
    let mut b = GraphBuilder::new("bn", &[2, 2, 2]);
    let bn = b.batch_norm2d("bn", 0, 1e-5, 0.1).unwrap();
    let flat = b.flatten("flatten", bn);
    let fc = b.linear("fc", flat, 2, true).unwrap();
    b.output(fc, 1.0, false);
    let mut ex = Executor::<f64, _>::new(CpuBackend::new(), b.finish().unwrap(), 1).unwrap();
    let id = ex.params().id("bn.running_mean").unwrap();
    let err = ex.params_mut().set_trainable(id, true).unwrap_err().to_string();
    assert!(err.contains("bn.running_mean"), "{err}");
}

/// Exporting after one step and importing into a fresh optimiser continues identically.
#[test]
fn exported_state_resumes_identically() {
    let cfg = config(OptimizerKind::Adam { beta1: 0.9, beta2: 0.99, eps: 1e-8, decoupled: false });
    let mut a = Executor::<f64, _>::new(CpuBackend::new(), linear_model(), 9).unwrap();
    let mut b = Executor::<f64, _>::new(CpuBackend::new(), linear_model(), 9).unwrap();
    let mut opt_a = Optimizer::new(cfg).unwrap();
    let mut opt_b = Optimizer::new(cfg).unwrap();
    for ex in [&mut a, &mut b] {
        ex.train_step(Batch::Host(&inputs(0)), &labels(N, 3), &StepOptions::default()).unwrap();
    }
    a.optimizer_step(&mut opt_a).unwrap();
    b.optimizer_step(&mut opt_b).unwrap();
    let state = opt_a.export_state(a.backend(), a.params()).unwrap();
    let keys: Vec<&str> = state.buffers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["fc.weight.exp_avg", "fc.weight.exp_avg_sq", "fc.bias.exp_avg", "fc.bias.exp_avg_sq"]);
    assert_eq!(state.steps, [("fc.weight".to_string(), 1), ("fc.bias".to_string(), 1)]);
    let mut resumed = Optimizer::new(cfg).unwrap();
    resumed.import_state(b.backend(), b.params(), &state).unwrap();
    for (ex, opt) in [(&mut a, &mut opt_a), (&mut b, &mut resumed)] {
        ex.train_step(Batch::Host(&inputs(1)), &labels(N, 3), &StepOptions::default()).unwrap();
        ex.optimizer_step(opt).unwrap();
    }
    assert_eq!(a.param_host("fc.weight").unwrap(), b.param_host("fc.weight").unwrap());
    assert_eq!(a.param_host("fc.bias").unwrap(), b.param_host("fc.bias").unwrap());

    let sgd = Optimizer::<f64, CpuBackend>::new(config(OptimizerKind::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false }));
    let err = sgd.unwrap().import_state(b.backend(), b.params(), &state).unwrap_err().to_string();
    assert!(err.contains("fc.weight.exp_avg"), "{err}");
}

#[test]
fn impossible_settings_are_config_errors() {
    let bad = [
        OptimizerConfig { lr: -1.0, ..config(OptimizerKind::Sgd { momentum: 0.0, dampening: 0.0, nesterov: false }) },
        config(OptimizerKind::Sgd { momentum: 0.0, dampening: 0.0, nesterov: true }),
        config(OptimizerKind::Adam { beta1: 1.0, beta2: 0.9, eps: 1e-8, decoupled: false }),
        OptimizerConfig { clip_grad_norm: Some(0.0), ..config(OptimizerKind::Adam { beta1: 0.9, beta2: 0.9, eps: 1e-8, decoupled: false }) },
    ];
    for cfg in bad {
        assert!(Optimizer::<f32, CpuBackend>::new(cfg).is_err(), "{cfg:?} was accepted");
    }
}

/// A first step skipped for a non-finite gradient norm (clipping; an infinite input) leaves SGD
/// unstarted, as PyTorch's GradScaler skips `optimizer.step()`: the next step is torch's first,
/// whose momentum buffer is that step's gradient with its weight decay (dampening 0.5 would
/// halve a continued one). The state exported after the skipped step resumes the same way.
#[test]
fn sgd_after_a_skipped_first_step_starts_its_momentum_as_torch_does() {
    let sgd = OptimizerKind::Sgd { momentum: 0.9, dampening: 0.5, nesterov: false };
    let cfg = OptimizerConfig { clip_grad_norm: Some(100.0), ..config(sgd) };
    let mut a = Executor::<f64, _>::new(CpuBackend::new(), linear_model(), 9).unwrap();
    let mut b = Executor::<f64, _>::new(CpuBackend::new(), linear_model(), 9).unwrap();
    let mut opt_a = Optimizer::new(cfg).unwrap();
    let mut poisoned = inputs(0);
    poisoned[0] = f64::INFINITY;
    a.train_step(Batch::Host(&poisoned), &labels(N, 3), &StepOptions::default()).unwrap();
    a.optimizer_step(&mut opt_a).unwrap();
    assert_eq!(opt_a.nonfinite_grad_steps(a.backend()).unwrap(), 1);
    let skipped = opt_a.export_state(a.backend(), a.params()).unwrap();
    assert_eq!(skipped.steps, [("fc.weight".to_string(), 0), ("fc.bias".to_string(), 0)]);
    let mut resumed = Optimizer::new(cfg).unwrap();
    resumed.import_state(b.backend(), b.params(), &skipped).unwrap();
    let names = ["fc.weight", "fc.bias"];
    for (ex, opt) in [(&mut a, &mut opt_a), (&mut b, &mut resumed)] {
        let mut expected: Vec<Vec<f64>> = names.iter().map(|n| ex.param_host(n).unwrap()).collect();
        ex.train_step(Batch::Host(&inputs(1)), &labels(N, 3), &StepOptions::default()).unwrap();
        let grads: Vec<Vec<f64>> = names.iter().map(|n| ex.grad_host_by_name(n).unwrap().unwrap()).collect();
        ex.optimizer_step(opt).unwrap();
        assert!(opt.last_grad_norm(ex.backend()).unwrap().unwrap() < 100.0, "the clipping threshold must not bite");
        let state = opt.export_state(ex.backend(), ex.params()).unwrap();
        for (i, kind) in [ParamKind::Weight, ParamKind::Bias].into_iter().enumerate() {
            let before = expected[i].clone();
            let mut reference = RefState::default();
            reference_update(&cfg, kind.decays_by_default(), &mut expected[i], &grads[i], &mut reference);
            for (g, e) in ex.param_host(names[i]).unwrap().iter().zip(&expected[i]) {
                assert!((g - e).abs() < 1e-12, "{} after the first step taken: {g} vs {e}", names[i]);
            }
            let wd = if kind.decays_by_default() { cfg.weight_decay } else { 0.0 };
            let decayed: Vec<f64> = grads[i].iter().zip(&before).map(|(g, p)| g + wd * p).collect();
            let key = format!("{}.momentum_buffer", names[i]);
            let buffer = &state.buffers.iter().find(|(k, _)| *k == key).unwrap().1;
            assert_eq!(buffer, &decayed, "{key} is the first step's gradient with weight decay");
            assert_eq!(reference.buf.as_ref(), Some(&decayed));
        }
        assert!(state.steps.iter().all(|(_, step)| *step == 1), "{:?}", state.steps);
    }
}

/// A state without momentum buffers (saved without momentum) imported into SGD with momentum:
/// as in PyTorch, the first step with momentum starts each buffer as its gradient, whatever
/// steps were taken before, and the counts start again with it.
#[test]
fn momentum_resumed_from_a_state_without_buffers_starts_as_torch_does() {
    let plain = config(OptimizerKind::Sgd { momentum: 0.0, dampening: 0.0, nesterov: false });
    let damped = config(OptimizerKind::Sgd { momentum: 0.9, dampening: 0.5, nesterov: false });
    let mut ex = Executor::<f64, _>::new(CpuBackend::new(), linear_model(), 9).unwrap();
    let mut opt = Optimizer::new(plain).unwrap();
    ex.train_step(Batch::Host(&inputs(0)), &labels(N, 3), &StepOptions::default()).unwrap();
    ex.optimizer_step(&mut opt).unwrap();
    let saved = opt.export_state(ex.backend(), ex.params()).unwrap();
    assert!(saved.buffers.is_empty() && saved.steps.iter().all(|(_, s)| *s == 1), "{saved:?}");
    let mut resumed = Optimizer::new(damped).unwrap();
    resumed.import_state(ex.backend(), ex.params(), &saved).unwrap();
    let before = ex.param_host("fc.weight").unwrap();
    ex.train_step(Batch::Host(&inputs(1)), &labels(N, 3), &StepOptions::default()).unwrap();
    let grad = ex.grad_host_by_name("fc.weight").unwrap().unwrap();
    ex.optimizer_step(&mut resumed).unwrap();
    let state = resumed.export_state(ex.backend(), ex.params()).unwrap();
    let decayed: Vec<f64> = grad.iter().zip(&before).map(|(g, p)| g + damped.weight_decay * p).collect();
    assert_eq!(state.buffers[0], ("fc.weight.momentum_buffer".to_string(), decayed));
    assert!(state.steps.iter().all(|(_, s)| *s == 1), "{:?}", state.steps);
}
