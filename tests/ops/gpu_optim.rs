//! GPU SGD and Adam/AdamW steps against the f64 CPU reference over several consecutive steps, so
//! the momentum and moment buffers carried between steps are checked too; the multi-tensor steps
//! and clipping on the device against the per-tensor steps and host clipping (bit for bit, on
//! the CPU in f32 and f64 and on the GPU), their launch count, the 16-byte accesses of aligned
//! buffers and the one-value path of unaligned ones.

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, widen};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::element::Element;
use ferronet::gpu::GpuBackend;
use ferronet::ops::optim::TensorSlot;
use ferronet::ops::{AdamParams, ElementwiseOps, OptimOps, ReduceOps, SgdParams};
use ferronet::sim::{SimDriver, SimOptions};
use std::sync::Arc;

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

/// Multi-tensor steps: lengths of one value, odd sizes, one over an update block (1024 values)
/// and one whose sum of squares takes two passes (over 2048).
const MULTI_LENS: [usize; 5] = [1, 37, 301, 1500, 5000];

#[derive(Clone, Copy, Debug)]
enum Rule {
    Sgd(SgdParams),
    /// Adam with each tensor's step count starting at `offsets[i % 2]` (two offsets: two groups).
    Adam(AdamParams, [u64; 2]),
}

fn rules() -> Vec<Rule> {
    let adam = AdamParams { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2, decoupled: false };
    let mut rules: Vec<Rule> = sgd_configs().into_iter().map(|h| Rule::Sgd(SgdParams { weight_decay: 1e-2, ..h })).collect();
    rules.extend([Rule::Adam(adam, [0, 0]), Rule::Adam(AdamParams { decoupled: true, ..adam }, [0, 0]), Rule::Adam(adam, [0, 3])]);
    rules
}

/// Parameters, momentum/first moments and second moments of every tensor after the steps.
type Trajectory<E> = Vec<[Vec<E>; 3]>;

/// `steps` steps of `rule` over tensors of MULTI_LENS (weight decay on every other one), with
/// clipping at `clip` when given: through the multi-tensor ops when `multi`, else through the
/// per-tensor ops and host clipping as the optimiser did before (sum_squares of each gradient
/// read back and summed in f64, scale applied when below 1).
fn run<E: Element, B>(b: &B, rule: Rule, clip: Option<f64>, multi: bool) -> Trajectory<E>
where
    B: OptimOps<E> + ReduceOps<E> + ElementwiseOps<E>,
{
    let host = |v: Vec<f32>| v.into_iter().map(|x| E::from_f64(x as f64)).collect::<Vec<E>>();
    let lens = MULTI_LENS;
    let upload = |len: usize, seed: u64| b.upload(&host(random_f32(len, seed, -1.0, 1.0))).unwrap();
    let mut params: Vec<B::Buf> = lens.iter().enumerate().map(|(i, &n)| upload(n, i as u64)).collect();
    let mut first: Vec<B::Buf> = lens.iter().map(|&n| b.zeros(n).unwrap()).collect();
    let mut second: Vec<B::Buf> = lens.iter().map(|&n| b.zeros(n).unwrap()).collect();
    let mut empty = b.zeros(0).unwrap();
    let decay = |i: usize, wd: f64| if i % 2 == 0 { wd } else { 0.0 };
    let (mut table, mut clip_state) = (None, b.zeros(ferronet::ops::optim::CLIP_STATE_LEN).unwrap());
    // The multi-tensor steps' counts on the device: each group's offset, advanced before each update.
    let mut step_counts = match rule {
        Rule::Adam(_, offsets) => b.upload_idx(&offsets.map(|o| o as u32)).unwrap(),
        Rule::Sgd(_) => b.upload_idx(&[0]).unwrap(),
    };
    for step in 0..STEPS {
        let grads: Vec<B::Buf> = lens.iter().enumerate().map(|(i, &n)| upload(n, 100 + 10 * step + i as u64)).collect();
        let adam_step = |i: usize, offsets: [u64; 2]| offsets[i % 2] + step + 1;
        if multi {
            let momentum = matches!(rule, Rule::Sgd(h) if h.momentum != 0.0);
            let mut slots: Vec<TensorSlot<'_, B::Buf>> = params
                .iter_mut()
                .zip(&grads)
                .zip(first.iter_mut().zip(second.iter_mut()))
                .enumerate()
                .map(|(i, ((param, grad), (m, v)))| {
                    let (weight_decay, first, second, group) = match rule {
                        Rule::Sgd(h) => (decay(i, h.weight_decay), momentum.then_some(m), None, 0),
                        Rule::Adam(h, offsets) => (decay(i, h.weight_decay), Some(m), Some(v), usize::from(offsets[i % 2] != offsets[0])),
                    };
                    TensorSlot { param, grad, first, second, weight_decay, group }
                })
                .collect();
            b.sync_table(&mut table, &slots).unwrap();
            let table = table.as_ref().unwrap();
            if let Some(max_norm) = clip {
                b.clip_grad_norm(table, &slots, max_norm, &mut clip_state).unwrap();
            }
            let clip = clip.map(|_| &clip_state);
            b.advance_steps(&mut step_counts, clip).unwrap();
            match rule {
                Rule::Sgd(h) => b.sgd_multi_step(table, &mut slots, 0, &h, &step_counts, clip).unwrap(),
                Rule::Adam(h, offsets) => {
                    for group in 0..if offsets[0] == offsets[1] { 1 } else { 2 } {
                        b.adam_multi_step(table, &mut slots, group, &h, &step_counts, clip).unwrap();
                    }
                }
            }
        } else {
            let mut grads = grads;
            if let Some(max_norm) = clip {
                let total: f64 = grads.iter().map(|g| b.download(&b.sum_squares(g).unwrap()).unwrap()[0].to_f64()).sum();
                let coef = max_norm / (total.sqrt() + 1e-6);
                if coef < 1.0 {
                    grads.iter_mut().for_each(|g| b.scale(E::from_f64(coef), g).unwrap());
                }
            }
            for i in 0..lens.len() {
                match rule {
                    Rule::Sgd(h) => {
                        let h = SgdParams { weight_decay: decay(i, h.weight_decay), ..h };
                        let buf = if h.momentum != 0.0 { &mut first[i] } else { &mut empty };
                        b.sgd_step(&mut params[i], &grads[i], buf, &h, step == 0).unwrap();
                    }
                    Rule::Adam(h, offsets) => {
                        let h = AdamParams { weight_decay: decay(i, h.weight_decay), ..h };
                        b.adam_step(&mut params[i], &grads[i], &mut first[i], &mut second[i], &h, adam_step(i, offsets)).unwrap();
                    }
                }
            }
        }
    }
    (0..lens.len()).map(|i| [b.download(&params[i]).unwrap(), b.download(&first[i]).unwrap(), b.download(&second[i]).unwrap()]).collect()
}

/// Clipping thresholds: none, one that bites (the gradients' norm is about 40) and one that does not.
const CLIPS: [Option<f64>; 3] = [None, Some(1.0), Some(1e3)];

fn multi_equals_per_tensor<E: Element, B: OptimOps<E> + ReduceOps<E> + ElementwiseOps<E>>(b: &B, device: &str) {
    for rule in rules() {
        for clip in CLIPS {
            let (multi, single) = (run::<E, B>(b, rule, clip, true), run::<E, B>(b, rule, clip, false));
            for (i, (m, s)) in multi.iter().zip(&single).enumerate() {
                assert!(m == s, "{device}: {rule:?} clip {clip:?}: tensor {i} differs from the per-tensor step");
            }
        }
    }
}

#[test]
fn multi_tensor_steps_are_bit_identical_to_per_tensor_steps() {
    multi_equals_per_tensor::<f64, _>(&CpuBackend::new(), "cpu f64");
    multi_equals_per_tensor::<f32, _>(&CpuBackend::new(), "cpu f32");
    multi_equals_per_tensor::<f32, _>(&gpu(), "gpu");
}

#[test]
fn multi_tensor_gpu_steps_match_the_cpu_reference() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    for rule in rules() {
        for clip in CLIPS {
            let got = run::<f32, _>(&gpu, rule, clip, true);
            let want = run::<f64, _>(&cpu, rule, clip, true);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                for (k, what) in ["param", "first state", "second state"].iter().enumerate() {
                    assert_close(&format!("{rule:?} clip {clip:?} tensor {i} {what}"), &g[k], &w[k], 1e-6, 1e-4);
                }
            }
        }
    }
}

/// Launches of one clipped multi-tensor step over `count` tensors, counted by the simulator.
fn launches_per_step(count: usize) -> usize {
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let b = GpuBackend::new(driver.clone());
    let h = SgdParams { lr: 0.1, momentum: 0.9, dampening: 0.0, nesterov: false, weight_decay: 1e-4 };
    let mut params: Vec<_> = (0..count).map(|i| b.upload(&random_f32(1 + 3 * i, i as u64, -1.0, 1.0)).unwrap()).collect();
    let mut bufs: Vec<_> = (0..count).map(|i| b.zeros(1 + 3 * i).unwrap()).collect();
    let grads: Vec<_> = (0..count).map(|i| b.upload(&random_f32(1 + 3 * i, 50 + i as u64, -1.0, 1.0)).unwrap()).collect();
    let mut slots: Vec<_> = params
        .iter_mut()
        .zip(&grads)
        .zip(bufs.iter_mut())
        .map(|((param, grad), buf)| TensorSlot { param, grad, first: Some(buf), second: None, weight_decay: h.weight_decay, group: 0 })
        .collect();
    let (mut table, mut clip, steps) = (None, b.zeros(ferronet::ops::optim::CLIP_STATE_LEN).unwrap(), b.upload_idx(&[1]).unwrap());
    b.sync_table(&mut table, &slots).unwrap();
    driver.take_launch_stats();
    let table = table.as_ref().unwrap();
    b.clip_grad_norm(table, &slots, 0.5, &mut clip).unwrap();
    b.sgd_multi_step(table, &mut slots, 0, &h, &steps, Some(&clip)).unwrap();
    driver.take_launch_stats().len()
}

#[test]
fn a_multi_tensor_step_makes_three_launches_whatever_the_tensor_count() {
    // Two for the gradient norm and its scale, one for the update.
    assert_eq!(launches_per_step(2), 3);
    assert_eq!(launches_per_step(62), 3);
}

/// A non-finite gradient norm leaves every parameter and state as it was, and is counted.
#[test]
fn a_non_finite_gradient_norm_skips_the_update() {
    fn check<B: OptimOps<f32>>(b: &B) {
        let h = AdamParams { lr: 1e-2, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0, decoupled: true };
        let (mut p, mut m, mut v) = (b.upload(&[1.0, 2.0]).unwrap(), b.zeros(2).unwrap(), b.zeros(2).unwrap());
        let (mut q, mut m2, mut v2) = (b.upload(&[3.0]).unwrap(), b.zeros(1).unwrap(), b.zeros(1).unwrap());
        let (g, g2) = (b.upload(&[f32::INFINITY, 1.0]).unwrap(), b.upload(&[1.0]).unwrap());
        let mut slots = vec![
            TensorSlot { param: &mut p, grad: &g, first: Some(&mut m), second: Some(&mut v), weight_decay: 0.0, group: 0 },
            TensorSlot { param: &mut q, grad: &g2, first: Some(&mut m2), second: Some(&mut v2), weight_decay: 0.0, group: 0 },
        ];
        let (mut table, mut clip) = (None, b.zeros(ferronet::ops::optim::CLIP_STATE_LEN).unwrap());
        b.sync_table(&mut table, &slots).unwrap();
        for _ in 0..2 {
            b.clip_grad_norm(table.as_ref().unwrap(), &slots, 1.0, &mut clip).unwrap();
            b.adam_multi_step(table.as_ref().unwrap(), &mut slots, 0, &h, &b.upload_idx(&[1]).unwrap(), Some(&clip)).unwrap();
        }
        drop(slots);
        assert_eq!((b.download(&p).unwrap(), b.download(&q).unwrap()), (vec![1.0, 2.0], vec![3.0]));
        assert_eq!(b.download(&m).unwrap(), vec![0.0, 0.0]);
        let state = b.download(&clip).unwrap();
        assert!(state[0].is_infinite() && state[2] == 2.0, "{state:?}");
    }
    check(&CpuBackend::new());
    check(&gpu());
}

/// A launch over a table that no longer describes the step's tensors (a parameter buffer was
/// replaced without `sync_table`) is refused instead of writing to the old buffer.
#[test]
fn a_stale_table_is_refused() {
    let b = gpu();
    let h = SgdParams { lr: 0.1, momentum: 0.0, dampening: 0.0, nesterov: false, weight_decay: 0.0 };
    let (mut p, g) = (b.upload(&[1.0f32, 2.0]).unwrap(), b.upload(&[1.0f32, 1.0]).unwrap());
    let mut table = None;
    {
        let slots = [TensorSlot { param: &mut p, grad: &g, first: None, second: None, weight_decay: 0.0, group: 0 }];
        b.sync_table(&mut table, &slots).unwrap();
    }
    let mut replaced = b.upload(&[1.0f32, 2.0]).unwrap();
    let mut slots = [TensorSlot { param: &mut replaced, grad: &g, first: None, second: None, weight_decay: 0.0, group: 0 }];
    let steps = b.upload_idx(&[1]).unwrap();
    let err = b.sgd_multi_step(table.as_ref().unwrap(), &mut slots, 0, &h, &steps, None).unwrap_err();
    assert!(err.to_string().contains("does not describe this step's tensors"), "{err}");
    b.sync_table(&mut table, &slots).unwrap();
    b.sgd_multi_step(table.as_ref().unwrap(), &mut slots, 0, &h, &steps, None).unwrap();
    assert_eq!(b.download(&replaced).unwrap(), vec![0.9, 1.9]);
}

/// SGD with momentum and Adam each move 4 parameters per lane in one 16-byte access per buffer
/// (aligned buffers, a whole number of 4-value pieces): loads of param, grad and state, stores
/// of param and state, one per warp per 128 values. The simulator counts the accesses.
#[test]
fn steps_take_one_access_per_4_parameters_per_lane() {
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let b = GpuBackend::new(driver.clone());
    let n = 4096;
    let warps = (n / (32 * 4)) as u64;
    let (mut p, g, mut m, mut v) = (b.upload(&random_f32(n, 1, -1.0, 1.0)).unwrap(), b.upload(&random_f32(n, 2, -1.0, 1.0)).unwrap(), b.zeros(n).unwrap(), b.zeros(n).unwrap());
    let sgd = SgdParams { lr: 0.1, momentum: 0.9, dampening: 0.0, nesterov: false, weight_decay: 1e-4 };
    let adam = AdamParams { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 1e-2, decoupled: true };
    driver.take_launch_stats();
    b.sgd_step(&mut p, &g, &mut m, &sgd, false).unwrap();
    b.adam_step(&mut p, &g, &mut m, &mut v, &adam, 1).unwrap();
    let stats = driver.take_launch_stats();
    let accesses = |kernel: &str| stats.iter().find(|s| s.kernel == kernel).map(|s| (s.global_accesses, s.global_load_bytes, s.global_store_bytes));
    let bytes = 4 * n as u64;
    assert_eq!(accesses("optim::sgd_step"), Some((5 * warps, 3 * bytes, 2 * bytes)));
    assert_eq!(accesses("optim::adam_step"), Some((7 * warps, 4 * bytes, 3 * bytes)));
}

/// Buffers that do not start 16-byte aligned (element 1 of an allocation) take the one-value
/// path, a tail of fewer than 4 parameters included: bit-identical to the aligned update of the
/// same values.
#[test]
fn unaligned_parameters_update_one_value_at_a_time_bit_identically() {
    use ferronet::device::driver::KernelArg;
    use ferronet::gpu::grid::per_element;
    let b = gpu();
    let n = 37;
    let (p0, g0) = (random_f32(n + 1, 3, -1.0, 1.0), random_f32(n + 1, 4, -1.0, 1.0));
    let m0 = random_f32(n + 1, 5, -1.0, 1.0);
    let h = SgdParams { lr: 0.1, momentum: 0.9, dampening: 0.0, nesterov: true, weight_decay: 1e-2 };
    // Aligned: the values from element 1 on in buffers of their own.
    let (mut p, g, mut m) = (b.upload(&p0[1..]).unwrap(), b.upload(&g0[1..]).unwrap(), b.upload(&m0[1..]).unwrap());
    b.sgd_step(&mut p, &g, &mut m, &h, false).unwrap();
    // Unaligned: the same values at element 1 of the whole buffers, through the same kernel.
    let (pu, gu, mu) = (b.upload(&p0).unwrap(), b.upload(&g0).unwrap(), b.upload(&m0).unwrap());
    let f = |v: f64| KernelArg::F32(v as f32);
    let args = [
        KernelArg::Ptr(pu.ptr_at(1)),
        KernelArg::Ptr(gu.ptr_at(1)),
        KernelArg::Ptr(mu.ptr_at(1)),
        f(h.lr),
        f(h.momentum),
        f(h.dampening),
        f(h.weight_decay),
        KernelArg::I32(1),
        KernelArg::I32(h.nesterov as i32),
        KernelArg::I32(0),
        KernelArg::I32(n as i32),
    ];
    b.launch("optim", "sgd_step", per_element(n.div_ceil(4), "sgd_step").unwrap(), &args).unwrap();
    let (pu, mu) = (b.download(&pu).unwrap(), b.download(&mu).unwrap());
    assert_eq!((pu[0], mu[0]), (p0[0], m0[0]), "the element before the range is untouched");
    assert_eq!(pu[1..].to_vec(), b.download(&p).unwrap());
    assert_eq!(mu[1..].to_vec(), b.download(&m).unwrap());
}
