//! Whole-graph gradients through the executor against central finite differences of the loss
//! (f64), and f32 gradients against the f64 ones.

use ferronet_test_support::graphs::{batch, inverted_residual, labels, op_zoo, residual_block, two_conv};

use ferronet::cpu::CpuBackend;
use ferronet::exec::{Batch, Executor, StepOptions};
use ferronet::graph::Graph;

const N: usize = 3;
const STEP: f64 = 1e-5;
/// Gradients smaller than this are compared absolutely (relative error is meaningless near 0,
/// where the finite difference's rounding error of ~1e-11 dominates).
const FLOOR: f64 = 1e-4;

/// BN statistics frozen so every loss evaluation sees the same parameters; dropout mask fixed.
fn opts() -> StepOptions {
    StepOptions { update_running_stats: false, input_grad: true, dropout_seed: Some(11), label_smoothing: 0.1 }
}

fn rel_err(analytic: f64, numeric: f64) -> f64 {
    (analytic - numeric).abs() / analytic.abs().max(numeric.abs()).max(FLOOR)
}

/// The worst relative error over every trainable parameter element and every input element.
fn max_gradient_error(graph: Graph) -> (f64, String) {
    let x = batch(&graph, N, 5);
    let y = labels(N, graph.num_classes());
    let mut ex = Executor::<f64, _>::new(CpuBackend::new(), graph, 3).unwrap();
    ex.train_step(Batch::Host(&x), &y, &opts()).unwrap();
    let mut worst = (0.0, String::new());
    let mut note = |err: f64, what: String| {
        if err > worst.0 {
            worst = (err, what);
        }
    };

    let names: Vec<String> =
        ex.params().iter().filter(|(_, p)| p.spec.trainable).map(|(_, p)| p.spec.name.clone()).collect();
    for name in names {
        let analytic = ex.grad_host_by_name(&name).unwrap().expect("trainable parameters get gradients");
        let values = ex.param_host(&name).unwrap();
        for k in 0..values.len() {
            let mut probe = |delta: f64| {
                let mut v = values.clone();
                v[k] += delta;
                ex.set_param_host(&name, &v).unwrap();
                ex.loss_only(Batch::Host(&x), &y, &opts()).unwrap()
            };
            let numeric = (probe(STEP) - probe(-STEP)) / (2.0 * STEP);
            note(rel_err(analytic[k], numeric), format!("{name}[{k}]: {} vs {numeric}", analytic[k]));
        }
        ex.set_param_host(&name, &values).unwrap();
    }

    let dx = ex.input_grad_host().unwrap().expect("input gradient was requested");
    for k in 0..x.len() {
        let mut probe = |delta: f64| {
            let mut v = x.clone();
            v[k] += delta;
            ex.loss_only(Batch::Host(&v), &y, &opts()).unwrap()
        };
        let numeric = (probe(STEP) - probe(-STEP)) / (2.0 * STEP);
        note(rel_err(dx[k], numeric), format!("input[{k}]: {} vs {numeric}", dx[k]));
    }
    worst
}

#[track_caller]
fn check(graph: Graph) {
    let (err, at) = max_gradient_error(graph);
    assert!(err < 1e-6, "max relative error {err:e} at {at}");
}

#[test]
fn two_conv_gradients_match_finite_differences() {
    check(two_conv());
}

#[test]
fn residual_block_gradients_match_finite_differences() {
    check(residual_block());
}

#[test]
fn inverted_residual_gradients_match_finite_differences() {
    check(inverted_residual());
}

#[test]
fn split_concat_shuffle_gate_pool_dropout_aux_gradients_match_finite_differences() {
    check(op_zoo());
}

/// The f32 executor, initialised from the same seed, agrees with the f64 one.
#[test]
fn f32_gradients_follow_f64() {
    for graph in [residual_block(), inverted_residual(), op_zoo()] {
        let x = batch(&graph, N, 5);
        let x32: Vec<f32> = x.iter().map(|&v| v as f32).collect();
        let y = labels(N, graph.num_classes());
        let mut ex64 = Executor::<f64, _>::new(CpuBackend::new(), graph.clone(), 3).unwrap();
        let mut ex32 = Executor::<f32, _>::new(CpuBackend::new(), graph.clone(), 3).unwrap();
        let l64 = ex64.train_step_readback(Batch::Host(&x), &y, &opts()).unwrap().loss;
        let l32 = ex32.train_step_readback(Batch::HostF32(&x32), &y, &opts()).unwrap().loss;
        assert!((l64 - l32).abs() < 1e-5 * l64.abs().max(1.0), "{}: loss {l32} vs {l64}", graph.name);
        for (id, p) in ex64.params().iter() {
            let Some(g64) = ex64.grad_host(id).unwrap() else { continue };
            let g32 = ex32.grad_host(id).unwrap().expect("same trainable set");
            let scale = g64.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-3);
            for (a, b) in g32.iter().zip(&g64) {
                assert!((*a as f64 - b).abs() < 1e-4 * scale, "{}: {} {a} vs {b}", graph.name, p.spec.name);
            }
        }
        let (d64, d32) = (ex64.input_grad_host().unwrap().unwrap(), ex32.input_grad_host().unwrap().unwrap());
        let scale = d64.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        for (a, b) in d32.iter().zip(&d64) {
            assert!((*a as f64 - b).abs() < 1e-4 * scale, "{}: input grad {a} vs {b}", graph.name);
        }
    }
}
