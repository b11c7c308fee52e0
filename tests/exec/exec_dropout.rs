//! Dropout through the executor: masks come from the executor's seed (reproducible runs, a new
//! mask every step), an explicit seed pins them, and evaluation does not drop.

use ferronet_test_support::graphs::{batch, labels, op_zoo};

use ferronet::cpu::CpuBackend;
use ferronet::exec::{Batch, Executor, Optimizer, OptimizerConfig, OptimizerKind, StepOptions};

const N: usize = 3;

fn executor(seed: u64) -> Executor<f64, CpuBackend> {
    Executor::new(CpuBackend::new(), op_zoo(), seed).unwrap()
}

fn sgd() -> Optimizer<f64, CpuBackend> {
    let kind = OptimizerKind::Sgd { momentum: 0.9, dampening: 0.0, nesterov: false };
    Optimizer::new(OptimizerConfig { kind, lr: 0.1, weight_decay: 0.0, decay_weights_only: true, clip_grad_norm: None })
        .unwrap()
}

#[test]
fn the_same_seed_reproduces_a_training_run() {
    let x = batch(&op_zoo(), N, 4);
    let y = labels(N, 3);
    let run = |seed: u64| {
        let (mut ex, mut opt) = (executor(seed), sgd());
        let mut losses = Vec::new();
        for _ in 0..3 {
            losses.push(ex.train_step_readback(Batch::Host(&x), &y, &StepOptions::default()).unwrap().loss);
            ex.optimizer_step(&mut opt).unwrap();
        }
        (losses, ex.param_host("fc.weight").unwrap())
    };
    let (first, second) = (run(21), run(21));
    assert_eq!(first, second);
}

#[test]
fn each_step_draws_a_new_mask_and_an_explicit_seed_pins_it() {
    let x = batch(&op_zoo(), N, 4);
    let y = labels(N, 3);
    let mut ex = executor(5);
    let drawn = StepOptions::default();
    let (a, b) = (ex.loss_only(Batch::Host(&x), &y, &drawn).unwrap(), ex.loss_only(Batch::Host(&x), &y, &drawn).unwrap());
    assert_ne!(a, b, "two steps with the same weights must use different masks");
    let pinned = |seed| StepOptions { dropout_seed: Some(seed), ..StepOptions::default() };
    let (c, d) = (ex.loss_only(Batch::Host(&x), &y, &pinned(8)).unwrap(), ex.loss_only(Batch::Host(&x), &y, &pinned(8)).unwrap());
    assert_eq!(c, d);
    assert_ne!(c, ex.loss_only(Batch::Host(&x), &y, &pinned(9)).unwrap());
}

#[test]
fn restoring_the_generator_state_replays_the_masks() {
    let x = batch(&op_zoo(), N, 4);
    let y = labels(N, 3);
    let mut ex = executor(5);
    let state = ex.rng_state();
    let first = ex.loss_only(Batch::Host(&x), &y, &StepOptions::default()).unwrap();
    ex.set_rng_state(state);
    assert_eq!(ex.loss_only(Batch::Host(&x), &y, &StepOptions::default()).unwrap(), first);
}

#[test]
fn evaluation_does_not_drop() {
    let x = batch(&op_zoo(), N, 4);
    let y = labels(N, 3);
    let mut ex = executor(5);
    let eval = ex.infer(Batch::Host(&x)).unwrap();
    assert_eq!(ex.infer(Batch::Host(&x)).unwrap(), eval);
    let train = ex.train_step_readback(Batch::Host(&x), &y, &StepOptions::default()).unwrap().logits;
    assert_ne!(train, eval, "training must drop");
}
