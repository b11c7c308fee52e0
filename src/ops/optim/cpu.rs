//! SGD and Adam/AdamW steps on the CPU, fused per element and in the order torch.optim applies
//! them (single-tensor path), so f32 results round like PyTorch's.

use super::{check_group_steps, check_slots, AdamParams, OptimOps, SgdParams, TensorSlot, CLIP_STATE_LEN};
use crate::cpu::par::{sum_f64, CHUNK};
use crate::cpu::{CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::check::expect_len;
use rayon::prelude::*;

/// One SGD update per element of a tensor, shared by the per-tensor and multi-tensor steps.
fn sgd_update<E: Element>(
    param: &mut [E],
    grad: &[E],
    momentum_buf: Option<&mut [E]>,
    h: &SgdParams,
    first_step: bool,
    grad_scale: Option<E>,
) {
    let (lr, wd, momentum): (E, E, E) = (E::from_f64(h.lr), E::from_f64(h.weight_decay), E::from_f64(h.momentum));
    let undamped: E = E::from_f64(1.0 - h.dampening);
    let descend = |p: &mut E, g: E, buf: Option<&mut E>| {
        let g = grad_scale.map_or(g, |s| s * g);
        let mut d = if h.weight_decay != 0.0 { g + wd * *p } else { g };
        if let Some(b) = buf {
            *b = if first_step { d } else { momentum * *b + undamped * d };
            d = if h.nesterov { d + momentum * *b } else { *b };
        }
        *p -= lr * d;
    };
    let params = param.par_chunks_mut(CHUNK).zip(grad.par_chunks(CHUNK));
    match momentum_buf {
        None => params.for_each(|(pc, gc)| pc.iter_mut().zip(gc).for_each(|(p, &g)| descend(p, g, None))),
        Some(buf) => params.zip(buf.par_chunks_mut(CHUNK)).for_each(|((pc, gc), bc)| {
            pc.iter_mut().zip(gc).zip(bc).for_each(|((p, &g), b)| descend(p, g, Some(b)))
        }),
    }
}

/// One Adam/AdamW update per element of a tensor, shared by the per-tensor and multi-tensor steps.
fn adam_update<E: Element>(
    param: &mut [E],
    grad: &[E],
    m: &mut [E],
    v: &mut [E],
    h: &AdamParams,
    step: u64,
    grad_scale: Option<E>,
) {
    // Exponents beyond i32 only arise after billions of steps, where beta^t is 0 anyway.
    let t = i32::try_from(step).unwrap_or(i32::MAX);
    let step_size: E = E::from_f64(h.lr / (1.0 - h.beta1.powi(t)));
    let bias_correction2_sqrt: E = E::from_f64((1.0 - h.beta2.powi(t)).sqrt());
    let (b1, b2, eps, wd): (E, E, E, E) = (E::from_f64(h.beta1), E::from_f64(h.beta2), E::from_f64(h.eps), E::from_f64(h.weight_decay));
    let (one_minus_b1, one_minus_b2): (E, E) = (E::from_f64(1.0 - h.beta1), E::from_f64(1.0 - h.beta2));
    let decay_factor: E = E::from_f64(1.0 - h.lr * h.weight_decay);
    param.par_chunks_mut(CHUNK).zip(grad.par_chunks(CHUNK)).zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK))).for_each(
        |((pc, gc), (mc, vc))| {
            for (((p, &g), m), v) in pc.iter_mut().zip(gc).zip(mc).zip(vc) {
                let g = grad_scale.map_or(g, |s| s * g);
                let g = if h.weight_decay != 0.0 && !h.decoupled { g + wd * *p } else { g };
                if h.decoupled {
                    *p *= decay_factor;
                }
                *m = b1 * *m + one_minus_b1 * g;
                *v = b2 * *v + one_minus_b2 * g * g;
                let denom = v.sqrt() / bias_correction2_sqrt + eps;
                *p -= step_size * *m / denom;
            }
        },
    );
}

/// The gradient scale a clipping step applies, or None when its norm was not finite (the
/// update is skipped).
fn clip_scale<E: Element>(clip: Option<&CpuBuf<E>>) -> Option<Option<E>> {
    match clip {
        None => Some(None),
        Some(c) if c[0].to_f64().is_finite() => Some(Some(c[1])),
        Some(_) => None,
    }
}

impl<E: Element> OptimOps<E> for CpuBackend {
    /// Host memory needs no table: the slots are the tensors.
    type TensorTable = ();

    fn sgd_step(
        &self,
        param: &mut CpuBuf<E>,
        grad: &CpuBuf<E>,
        momentum_buf: &mut CpuBuf<E>,
        h: &SgdParams,
        first_step: bool,
    ) -> Result<()> {
        h.check_step(param.len(), grad.len(), momentum_buf.len())?;
        let buf = if h.momentum == 0.0 { None } else { Some(&mut momentum_buf[..]) };
        sgd_update(param, grad, buf, h, first_step, None);
        Ok(())
    }

    fn adam_step(
        &self,
        param: &mut CpuBuf<E>,
        grad: &CpuBuf<E>,
        m: &mut CpuBuf<E>,
        v: &mut CpuBuf<E>,
        h: &AdamParams,
        step: u64,
    ) -> Result<()> {
        h.check_step(step, param.len(), grad.len(), m.len(), v.len())?;
        adam_update(param, grad, m, v, h, step, None);
        Ok(())
    }

    fn sync_table(&self, table: &mut Option<()>, _slots: &[TensorSlot<'_, CpuBuf<E>>]) -> Result<()> {
        *table = Some(());
        Ok(())
    }

    fn clip_grad_norm(&self, _table: &(), slots: &[TensorSlot<'_, CpuBuf<E>>], max_norm: f64, clip: &mut CpuBuf<E>) -> Result<()> {
        expect_len("clip_grad_norm", "clip state", clip.len(), CLIP_STATE_LEN)?;
        // Each tensor's sum of squares rounded to E, as sum_squares returns it.
        let total: f64 = slots.iter().map(|s| E::from_f64(sum_f64(s.grad, |v| v.to_f64() * v.to_f64())).to_f64()).sum();
        let norm = total.sqrt();
        let coef = max_norm / (norm + 1e-6);
        clip[0] = E::from_f64(norm);
        clip[1] = if coef < 1.0 { E::from_f64(coef) } else { E::one() };
        if !norm.is_finite() {
            clip[2] += E::one();
        }
        Ok(())
    }

    fn sgd_multi_step(
        &self,
        _table: &(),
        slots: &mut [TensorSlot<'_, CpuBuf<E>>],
        group: usize,
        h: &SgdParams,
        steps: &CpuBuf<u32>,
        clip: Option<&CpuBuf<E>>,
    ) -> Result<()> {
        check_group_steps(steps.len(), group)?;
        let states = usize::from(h.momentum != 0.0);
        check_slots(slots, states, clip, |weight_decay| SgdParams { weight_decay, ..*h }.validate())?;
        let Some(scale) = clip_scale(clip) else { return Ok(()) };
        let first_step = steps[group] == 1;
        for slot in slots.iter_mut().filter(|s| s.group == group) {
            let h = SgdParams { weight_decay: slot.weight_decay, ..*h };
            let buf = if states == 0 { None } else { slot.first.as_deref_mut().map(|b| &mut b[..]) };
            sgd_update(slot.param, slot.grad, buf, &h, first_step, scale);
        }
        Ok(())
    }

    fn adam_multi_step(
        &self,
        _table: &(),
        slots: &mut [TensorSlot<'_, CpuBuf<E>>],
        group: usize,
        h: &AdamParams,
        steps: &CpuBuf<u32>,
        clip: Option<&CpuBuf<E>>,
    ) -> Result<()> {
        check_group_steps(steps.len(), group)?;
        let step = u64::from(steps[group]);
        // A skipped step's count did not advance (a first step's is still 0).
        let skipped = clip_scale(clip).is_none();
        check_slots(slots, 2, clip, |weight_decay| {
            let h = AdamParams { weight_decay, ..*h };
            if skipped { h.validate_settings() } else { h.validate(step) }
        })?;
        let Some(scale) = clip_scale(clip) else { return Ok(()) };
        for slot in slots.iter_mut().filter(|s| s.group == group) {
            let h = AdamParams { weight_decay: slot.weight_decay, ..*h };
            let (m, v) = (slot.first.as_deref_mut().expect("checked"), slot.second.as_deref_mut().expect("checked"));
            adam_update(slot.param, slot.grad, m, v, &h, step, scale);
        }
        Ok(())
    }

    fn advance_steps(&self, steps: &mut CpuBuf<u32>, clip: Option<&CpuBuf<E>>) -> Result<()> {
        if clip_scale(clip).is_none() {
            return Ok(());
        }
        for count in steps.iter_mut() {
            *count = count.checked_add(1).ok_or_else(|| Error::config("the optimiser's step count passed 2^32"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testutil::{assert_close, buf, error_text, random};

    const START: [f64; 2] = [1.0, -2.0];
    const GRADS: [[f64; 2]; 3] = [[0.5, 1.0], [-1.0, 0.25], [2.0, -0.5]];

    fn sgd(lr: f64, momentum: f64, dampening: f64, nesterov: bool, weight_decay: f64) -> SgdParams {
        SgdParams { lr, momentum, dampening, nesterov, weight_decay }
    }

    fn adam(weight_decay: f64, decoupled: bool) -> AdamParams {
        AdamParams { lr: 0.01, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay, decoupled }
    }

    fn run_sgd(h: &SgdParams) -> Vec<Vec<f64>> {
        let cpu = CpuBackend::new();
        let (mut p, mut buf_m) = (buf(&cpu, &START), buf(&cpu, &[0.0; 2]));
        (0..3)
            .map(|t| {
                cpu.sgd_step(&mut p, &buf(&cpu, &GRADS[t]), &mut buf_m, h, t == 0).unwrap();
                p.to_vec()
            })
            .collect()
    }

    fn run_adam(h: &AdamParams) -> Vec<Vec<f64>> {
        let cpu = CpuBackend::new();
        let (mut p, mut m, mut v) = (buf(&cpu, &START), buf(&cpu, &[0.0; 2]), buf(&cpu, &[0.0; 2]));
        (0..3)
            .map(|t| {
                cpu.adam_step(&mut p, &buf(&cpu, &GRADS[t]), &mut m, &mut v, h, t as u64 + 1).unwrap();
                p.to_vec()
            })
            .collect()
    }

    #[track_caller]
    fn assert_trajectory(what: &str, got: Vec<Vec<f64>>, want: [[f64; 2]; 3]) {
        for (t, (g, w)) in got.iter().zip(want).enumerate() {
            assert_close(&format!("{what} after step {}", t + 1), g, &w, 1e-12);
        }
    }

    /// Expected parameters from torch.optim.SGD's documented algorithm, worked step by step.
    #[test]
    fn sgd_sequences_match_torch() {
        // Plain: p -= 0.1 * g.
        assert_trajectory("plain", run_sgd(&sgd(0.1, 0.0, 0.0, false, 0.0)), [[0.95, -2.1], [1.05, -2.125], [0.85, -2.075]]);
        // Momentum 0.9: buf = g on step 1, then 0.9 buf + g (buf: 0.5, -0.55, 1.505 for p[0]).
        assert_trajectory(
            "momentum",
            run_sgd(&sgd(0.1, 0.9, 0.0, false, 0.0)),
            [[0.95, -2.1], [1.005, -2.215], [0.8545, -2.2685]],
        );
        // Dampening 0.5 applies from step 2: buf = 0.9 buf + 0.5 g (p[0] buf: 0.5, -0.05, 0.955).
        assert_trajectory(
            "dampening",
            run_sgd(&sgd(0.1, 0.9, 0.5, false, 0.0)),
            [[0.95, -2.1], [0.955, -2.2025], [0.8595, -2.26975]],
        );
        // Nesterov: step with g + 0.9 buf (p[0]: 1 - 0.1 * 0.95 = 0.905 on step 1).
        assert_trajectory(
            "nesterov",
            run_sgd(&sgd(0.1, 0.9, 0.0, true, 0.0)),
            [[0.905, -2.19], [1.0545, -2.3185], [0.71905, -2.31665]],
        );
        // Weight decay 0.01 adds 0.01 p to the gradient before momentum (p[0] step 1: g = 0.51).
        assert_trajectory(
            "momentum + weight decay",
            run_sgd(&sgd(0.1, 0.9, 0.0, false, 0.01)),
            [[0.949, -2.098], [1.002151, -2.209102], [0.848984749, -2.256884698]],
        );
        assert_trajectory(
            "weight decay",
            run_sgd(&sgd(0.1, 0.0, 0.0, false, 0.01)),
            [[0.949, -2.098], [1.048051, -2.120902], [0.847002949, -2.068781098]],
        );
    }

    /// Expected parameters from torch.optim.Adam / AdamW's documented algorithm (lr 0.01, betas
    /// 0.9 and 0.999, eps 1e-8). On step 1 the bias-corrected update is lr * g / (|g| + eps), so
    /// each parameter moves by almost exactly 0.01 against its gradient's sign.
    #[test]
    fn adam_sequences_match_torch() {
        assert_trajectory(
            "adam",
            run_adam(&adam(0.0, false)),
            [
                [0.9900000002, -2.0099999999000002],
                [0.9936610354240566, -2.018305975122773],
                [0.9894644792718105, -2.021291492521947],
            ],
        );
        // L2: the gradient becomes g + 0.1 p (0.6 and 0.8 on step 1).
        assert_trajectory(
            "adam with L2",
            run_adam(&adam(0.1, false)),
            [
                [0.9900000001666667, -2.009999999875],
                [0.9924819887658624, -2.0171431942434683],
                [0.9876823528442696, -2.0170855072808758],
            ],
        );
        // AdamW: p *= 1 - 0.01 * 0.1 first (1 -> 0.999 on step 1), then the plain Adam update.
        assert_trajectory(
            "adamw",
            run_adam(&adam(0.1, true)),
            [
                [0.9890000002, -2.0079999999],
                [0.9916720354238566, -2.0142979751228727],
                [0.9864838072361867, -2.015269194546924],
            ],
        );
    }

    #[test]
    fn f32_agrees_with_f64() {
        let cpu = CpuBackend::new();
        let len = CHUNK + 5;
        let (p0, grads) = (random(len, 1), [random(len, 2), random(len, 3)]);
        let narrow = |v: &[f64]| cpu.wrap(v.iter().map(|&v| v as f32).collect::<Vec<_>>());
        let widen32 = |v: &[f32]| v.iter().map(|&v| v as f64).collect::<Vec<_>>();
        let h = sgd(0.05, 0.9, 0.1, false, 1e-4);
        let (mut p32, mut b32, mut p64, mut b64) = (narrow(&p0), narrow(&p0), buf(&cpu, &p0), buf(&cpu, &p0));
        for (t, g) in grads.iter().enumerate() {
            cpu.sgd_step(&mut p32, &narrow(g), &mut b32, &h, t == 0).unwrap();
            cpu.sgd_step(&mut p64, &buf(&cpu, g), &mut b64, &h, t == 0).unwrap();
        }
        assert_close("sgd", &widen32(&p32), &p64, 1e-6);
        let h = adam(0.01, true);
        let (mut p32, mut m32, mut v32) = (narrow(&p0), narrow(&vec![0.0; len]), narrow(&vec![0.0; len]));
        let (mut p64, mut m64, mut v64) = (buf(&cpu, &p0), buf(&cpu, &vec![0.0; len]), buf(&cpu, &vec![0.0; len]));
        for (t, g) in grads.iter().enumerate() {
            cpu.adam_step(&mut p32, &narrow(g), &mut m32, &mut v32, &h, t as u64 + 1).unwrap();
            cpu.adam_step(&mut p64, &buf(&cpu, g), &mut m64, &mut v64, &h, t as u64 + 1).unwrap();
        }
        assert_close("adam", &widen32(&p32), &p64, 1e-6);
    }

    #[test]
    fn impossible_settings_and_lengths_are_errors() {
        let cpu = CpuBackend::new();
        let (mut p, g, mut b) = (buf(&cpu, &[1.0; 3]), buf(&cpu, &[1.0; 3]), buf(&cpu, &[0.0; 2]));
        let err = error_text(cpu.sgd_step(&mut p, &g, &mut b, &sgd(0.1, 0.0, 0.0, true, 0.0), true));
        assert_eq!(
            err,
            "invalid configuration: Nesterov SGD needs momentum > 0 and dampening 0, got momentum 0 and dampening 0"
        );
        let err = error_text(cpu.sgd_step(&mut p, &g, &mut b, &sgd(0.1, 0.9, 0.0, false, 0.0), true));
        assert_eq!(err, "shape error: sgd_step: momentum buffer has 2 elements but 3 are needed");
        // Without momentum the buffer is not used, so its length does not matter.
        cpu.sgd_step(&mut p, &g, &mut b, &sgd(0.5, 0.0, 0.0, false, 0.0), true).unwrap();
        assert_eq!(p.to_vec(), vec![0.5; 3]);
        let mut m = buf(&cpu, &[0.0; 3]);
        let mut v = buf(&cpu, &[0.0; 3]);
        let err = error_text(cpu.adam_step(&mut p, &g, &mut m, &mut v, &adam(0.0, false), 0));
        assert_eq!(err, "invalid configuration: Adam steps count from 1, got step 0");
        let bad_beta = AdamParams { beta2: 1.0, ..adam(0.0, false) };
        let err = error_text(cpu.adam_step(&mut p, &g, &mut m, &mut v, &bad_beta, 1));
        assert_eq!(err, "invalid configuration: Adam beta2 must be in [0, 1), got 1");
    }
}
