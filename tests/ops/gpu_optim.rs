//! GPU SGD and Adam/AdamW steps against the f64 CPU reference over several consecutive steps, so
//! the momentum and moment buffers carried between steps are checked too.

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, widen};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::ops::{AdamParams, OptimOps, SgdParams};

/// Parameter tensor lengths, cycled over the configurations: one value, odd sizes.
const LENS: [usize; 3] = [1, 37, 301];
const STEPS: u64 = 3;

fn sgd_configs() -> Vec<SgdParams> {
    let base = SgdParams { lr: 0.1, momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.0 };
    vec![
        base,
        SgdParams { weight_decay: 1e-2, ..base },
        SgdParams { momentum: 0.9, ..base },
        SgdParams { momentum: 0.9, dampening: 0.3, weight_decay: 5e-4, ..base },
        SgdParams { momentum: 0.9, nesterov: true, weight_decay: 5e-4, ..base },
    ]
}

#[test]
fn sgd_steps_match_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    for (seed, h) in sgd_configs().into_iter().enumerate() {
        let len = LENS[seed % LENS.len()];
        let seed = seed as u64 * 10;
        let param = random_f32(len, seed, -1.0, 1.0);
        let (mut gp, mut gbuf) = (gpu.upload(&param).unwrap(), gpu.zeros(len).unwrap());
        let (mut cp, mut cbuf) = (cpu.upload(&widen(&param)).unwrap(), cpu.zeros(len).unwrap());
        for step in 1..=STEPS {
            let grad = random_f32(len, seed + step, -1.0, 1.0);
            gpu.sgd_step(&mut gp, &gpu.upload(&grad).unwrap(), &mut gbuf, &h, step == 1).unwrap();
            cpu.sgd_step(&mut cp, &cpu.upload(&widen(&grad)).unwrap(), &mut cbuf, &h, step == 1).unwrap();
            assert_close(&format!("sgd {h:?} step {step} param"), &gpu.download(&gp).unwrap(), &cp, 1e-6, 1e-5);
            if h.momentum != 0.0 {
                assert_close(
                    &format!("sgd {h:?} step {step} buffer"),
                    &gpu.download(&gbuf).unwrap(),
                    &cbuf,
                    1e-6,
                    1e-5,
                );
            }
        }
    }
}

#[test]
fn sgd_without_momentum_needs_no_buffer() {
    let gpu = gpu();
    let h = SgdParams { lr: 0.5, momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.0 };
    let mut param = gpu.upload(&[1.0f32, 2.0]).unwrap();
    let mut empty = gpu.zeros(0).unwrap();
    gpu.sgd_step(&mut param, &gpu.upload(&[1.0f32, -2.0]).unwrap(), &mut empty, &h, true).unwrap();
    assert_eq!(gpu.download(&param).unwrap(), vec![0.5, 3.0]);
}

#[test]
fn adam_and_adamw_steps_match_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    let base = AdamParams { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: false };
    let configs =
        [base, AdamParams { weight_decay: 1e-2, ..base }, AdamParams { weight_decay: 1e-2, decoupled: true, ..base }];
    for (seed, h) in configs.into_iter().enumerate() {
        let len = LENS[seed % LENS.len()];
        let seed = seed as u64 * 10 + 100;
        let param = random_f32(len, seed, -1.0, 1.0);
        let mut g = (gpu.upload(&param).unwrap(), gpu.zeros(len).unwrap(), gpu.zeros(len).unwrap());
        let mut c = (cpu.upload(&widen(&param)).unwrap(), cpu.zeros(len).unwrap(), cpu.zeros(len).unwrap());
        for step in 1..=STEPS {
            let grad = random_f32(len, seed + step, -1.0, 1.0);
            gpu.adam_step(&mut g.0, &gpu.upload(&grad).unwrap(), &mut g.1, &mut g.2, &h, step).unwrap();
            cpu.adam_step(&mut c.0, &cpu.upload(&widen(&grad)).unwrap(), &mut c.1, &mut c.2, &h, step).unwrap();
            let what = format!("adam {h:?} step {step}");
            assert_close(&format!("{what} param"), &gpu.download(&g.0).unwrap(), &c.0, 1e-6, 1e-5);
            assert_close(&format!("{what} m"), &gpu.download(&g.1).unwrap(), &c.1, 1e-6, 1e-5);
            assert_close(&format!("{what} v"), &gpu.download(&g.2).unwrap(), &c.2, 1e-7, 1e-5);
        }
    }
}

#[test]
fn adam_step_zero_is_an_error() {
    let gpu = gpu();
    let h = AdamParams { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: true };
    let (mut p, mut m, mut v) = (gpu.zeros(2).unwrap(), gpu.zeros(2).unwrap(), gpu.zeros(2).unwrap());
    let grad = gpu.zeros(2).unwrap();
    let err = gpu.adam_step(&mut p, &grad, &mut m, &mut v, &h, 0).unwrap_err();
    assert_eq!(err.to_string(), "invalid configuration: Adam steps count from 1, got step 0");
}

#[test]
fn hyperparameters_are_checked_like_the_cpu() {
    let gpu = gpu();
    let h = SgdParams { lr: 0.1, momentum: 0.0, dampening: 0.0, nesterov: true, weight_decay: 0.0 };
    let (mut p, mut buf) = (gpu.zeros(2).unwrap(), gpu.zeros(2).unwrap());
    let err = gpu.sgd_step(&mut p, &gpu.zeros(2).unwrap(), &mut buf, &h, true).unwrap_err();
    assert_eq!(err.to_string(), h.validate().unwrap_err().to_string());
    assert!(err.to_string().starts_with("invalid configuration: Nesterov SGD needs momentum > 0"), "{err}");
}
