//! BatchNorm2d on the CPU. Per-channel statistics are reduced in parallel over channels and
//! accumulated in f64 over eight lanes (two passes for the variance, so large means do not cancel
//! it away); the elementwise parts run in parallel over [N, C] rows, each row with its channel's
//! constants taken once, and a fused activation is applied in the same pass.

use super::{BatchNormActGrads, BatchNormGeom, BatchNormSaved, NormOps};
use crate::ops::activation::with_activation;
use crate::ops::Activation;
use crate::cpu::par::{collect_chunks, lane_sum, lane_sum2, CHUNK};
use crate::cpu::{CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::Result;
use rayon::prelude::*;

/// The HW-long rows of x that belong to channel `ch`, one per sample.
fn channel_rows<'a, E>(x: &'a [E], g: &BatchNormGeom, ch: usize) -> impl Iterator<Item = &'a [E]> {
    let (c, hw) = (g.c, g.hw);
    (0..g.n).map(move |sample| &x[(sample * c + ch) * hw..(sample * c + ch + 1) * hw])
}

/// For every channel, f(channel) computed in parallel.
fn per_channel<T: Send>(g: &BatchNormGeom, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    (0..g.c).into_par_iter().map(&f).collect()
}

/// A tensor of the shape of x whose [N, C] row r (of channel r % C) holds the values
/// `row_values(r)` yields, rows computed in parallel.
fn map_rows<E: Element, I: Iterator<Item = E>>(g: &BatchNormGeom, row_values: impl Fn(usize) -> I + Sync) -> Vec<E> {
    // BatchNormGeom::new rejects HW = 0, but the fields are public; max(1) keeps chunking valid.
    let hw = g.hw.max(1);
    collect_chunks(g.len(), hw, (CHUNK / hw).max(1), row_values)
}

/// Row r of the [N, C] rows of `v`.
fn row_of<'a, E>(v: &'a [E], g: &BatchNormGeom, r: usize) -> &'a [E] {
    &v[r * g.hw..(r + 1) * g.hw]
}

/// (x - mean) * scale + beta of every element, with the per-channel mean, scale and beta.
fn normalize<E: Element>(x: &[E], (mean, scale, beta): (&[E], &[E], &[E]), g: &BatchNormGeom) -> Vec<E> {
    map_rows(g, |row| {
        let ch = row % g.c;
        let (m, s, b) = (mean[ch], scale[ch], beta[ch]);
        row_of(x, g, row).iter().map(move |&x| (x - m) * s + b)
    })
}

/// Biased batch mean and variance of one channel.
fn channel_mean_var<E: Element>(x: &[E], g: &BatchNormGeom, ch: usize) -> (f64, f64) {
    let count = g.count() as f64;
    let mean = channel_rows(x, g, ch).map(|row| lane_sum(row, |v: E| v.to_f64())).sum::<f64>() / count;
    let squares = |row| lane_sum(row, |v: E| (v.to_f64() - mean).powi(2));
    let var = channel_rows(x, g, ch).map(squares).sum::<f64>() / count;
    (mean, var)
}

/// The batch mean and 1/sqrt(var + eps) per channel, and PyTorch's running-statistics update
/// (the unbiased variance into running_var).
fn train_statistics<E: Element>(
    x: &[E],
    running_mean: &mut [E],
    running_var: &mut [E],
    momentum: f64,
    g: &BatchNormGeom,
) -> (Vec<E>, Vec<E>) {
    let stats = per_channel(g, |ch| channel_mean_var(x, g, ch));
    let unbias = g.count() as f64 / (g.count() - 1) as f64;
    for (ch, &(mean, var)) in stats.iter().enumerate() {
        let rm = running_mean[ch].to_f64();
        let rv = running_var[ch].to_f64();
        running_mean[ch] = E::from_f64((1.0 - momentum) * rm + momentum * mean);
        running_var[ch] = E::from_f64((1.0 - momentum) * rv + momentum * var * unbias);
    }
    let mean = stats.iter().map(|&(m, _)| E::from_f64(m)).collect();
    let invstd = stats.iter().map(|&(_, v)| E::from_f64(1.0 / (v + g.eps).sqrt())).collect();
    (mean, invstd)
}

/// `out(z, other)` of every element, where z is the fused op's pre-activation
/// (x - mean) * invstd * gamma + beta (+ residual), in one pass.
fn map_pre_activation<E: Element>(
    x: &[E],
    residual: Option<&[E]>,
    other: &[E],
    (gamma, beta): (&[E], &[E]),
    saved: &BatchNormSaved<CpuBuf<E>>,
    g: &BatchNormGeom,
    out: impl Fn(E, E) -> E + Sync,
) -> Vec<E> {
    let (mean, invstd) = (&saved.mean, &saved.invstd);
    let out = &out;
    // The row's pre-activation function and its x and other rows.
    let row_inputs = |row: usize| {
        let ch = row % g.c;
        let (m, s, gm, b) = (mean[ch], invstd[ch], gamma[ch], beta[ch]);
        let pairs = row_of(x, g, row).iter().zip(row_of(other, g, row));
        (move |x: E| (x - m) * s * gm + b, pairs)
    };
    match residual {
        Some(residual) => map_rows(g, |row| {
            let (z, pairs) = row_inputs(row);
            pairs.zip(row_of(residual, g, row)).map(move |((&x, &o), &r)| out(z(x) + r, o))
        }),
        None => map_rows(g, |row| {
            let (z, pairs) = row_inputs(row);
            pairs.map(move |(&x, &o)| out(z(x), o))
        }),
    }
}

impl<E: Element> NormOps<E> for CpuBackend {
    fn batch_norm2d_forward_train(
        &self,
        x: &CpuBuf<E>,
        gamma: &CpuBuf<E>,
        beta: &CpuBuf<E>,
        running_mean: &mut CpuBuf<E>,
        running_var: &mut CpuBuf<E>,
        momentum: f64,
        g: &BatchNormGeom,
    ) -> Result<(CpuBuf<E>, BatchNormSaved<CpuBuf<E>>)> {
        const OP: &str = "batch_norm2d (training)";
        let per_channel_lens = [
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("running_mean", running_mean.len()),
            ("running_var", running_var.len()),
        ];
        g.check_lengths(OP, &[x.len()], &per_channel_lens)?;
        g.check_trainable(OP)?;
        let (mean, invstd) = train_statistics(x, running_mean, running_var, momentum, g);
        let scale: Vec<E> = invstd
            .iter()
            .zip(gamma.iter())
            .map(|(&s, &gm)| s * gm)
            .collect();
        let y = normalize(x, (&mean, &scale, beta), g);
        Ok((
            self.wrap(y),
            BatchNormSaved {
                mean: self.wrap(mean),
                invstd: self.wrap(invstd),
            },
        ))
    }

    fn batch_norm2d_forward_eval(
        &self,
        x: &CpuBuf<E>,
        gamma: &CpuBuf<E>,
        beta: &CpuBuf<E>,
        running_mean: &CpuBuf<E>,
        running_var: &CpuBuf<E>,
        g: &BatchNormGeom,
    ) -> Result<CpuBuf<E>> {
        let per_channel_lens = [
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("running_mean", running_mean.len()),
            ("running_var", running_var.len()),
        ];
        g.check_lengths("batch_norm2d (eval)", &[x.len()], &per_channel_lens)?;
        let scale: Vec<E> = (0..g.c)
            .map(|ch| E::from_f64(gamma[ch].to_f64() / (running_var[ch].to_f64() + g.eps).sqrt()))
            .collect();
        Ok(self.wrap(normalize(x, (running_mean, &scale, beta), g)))
    }

    fn batch_norm2d_backward(
        &self,
        dy: &CpuBuf<E>,
        x: &CpuBuf<E>,
        gamma: &CpuBuf<E>,
        saved: &BatchNormSaved<CpuBuf<E>>,
        g: &BatchNormGeom,
    ) -> Result<(CpuBuf<E>, CpuBuf<E>, CpuBuf<E>)> {
        let per_channel_lens = [
            ("gamma", gamma.len()),
            ("saved mean", saved.mean.len()),
            ("saved invstd", saved.invstd.len()),
        ];
        g.check_lengths(
            "batch_norm2d backward",
            &[x.len(), dy.len()],
            &per_channel_lens,
        )?;
        let (mean, invstd) = (&saved.mean, &saved.invstd);
        // Per channel: sum(dy) = dbeta and sum(dy * xhat) = dgamma, with xhat = (x - mean) * invstd.
        let sums = per_channel(g, |ch| {
            let (m, s) = (mean[ch].to_f64(), invstd[ch].to_f64());
            channel_rows(dy, g, ch).zip(channel_rows(x, g, ch)).fold((0.0, 0.0), |(db, dg), (dy, x)| {
                let dy_xhat = lane_sum2(dy, x, |dy: E, x: E| dy.to_f64() * (x.to_f64() - m) * s);
                (db + lane_sum(dy, |v: E| v.to_f64()), dg + dy_xhat)
            })
        });
        // dx = gamma * invstd * (dy - dbeta / m - xhat * dgamma / m), the closed form of the
        // gradient through the batch mean and variance.
        let count = g.count() as f64;
        let coef: Vec<(E, E, E)> = sums
            .iter()
            .enumerate()
            .map(|(ch, &(dbeta, dgamma))| {
                (
                    E::from_f64(gamma[ch].to_f64() * invstd[ch].to_f64()),
                    E::from_f64(dbeta / count),
                    E::from_f64(dgamma / count),
                )
            })
            .collect();
        let dx = map_rows(g, |row| {
            let ch = row % g.c;
            let ((k, mean_dy, mean_dy_xhat), m, s) = (coef[ch], mean[ch], invstd[ch]);
            let pairs = row_of(dy, g, row).iter().zip(row_of(x, g, row));
            pairs.map(move |(&dy, &x)| k * (dy - mean_dy - (x - m) * s * mean_dy_xhat))
        });
        let dgamma = sums.iter().map(|&(_, dg)| E::from_f64(dg)).collect();
        let dbeta = sums.iter().map(|&(db, _)| E::from_f64(db)).collect();
        Ok((self.wrap(dx), self.wrap(dgamma), self.wrap(dbeta)))
    }

    fn batch_norm_act_forward_train(
        &self,
        x: &CpuBuf<E>,
        residual: Option<&CpuBuf<E>>,
        gamma: &CpuBuf<E>,
        beta: &CpuBuf<E>,
        running_mean: &mut CpuBuf<E>,
        running_var: &mut CpuBuf<E>,
        momentum: f64,
        activation: Activation,
        g: &BatchNormGeom,
    ) -> Result<(CpuBuf<E>, BatchNormSaved<CpuBuf<E>>)> {
        const OP: &str = "batch_norm_act (training)";
        let per_channel_lens = [
            ("gamma", gamma.len()),
            ("beta", beta.len()),
            ("running_mean", running_mean.len()),
            ("running_var", running_var.len()),
        ];
        g.check_lengths(OP, &[x.len(), residual.map_or(x.len(), |r| r.len())], &per_channel_lens)?;
        g.check_trainable(OP)?;
        let (mean, invstd) = train_statistics(x, running_mean, running_var, momentum, g);
        let saved = BatchNormSaved { mean: self.wrap(mean), invstd: self.wrap(invstd) };
        let residual = residual.map(|r| &r[..]);
        let y = with_activation!(activation, forward, |f| {
            map_pre_activation(x, residual, x, (gamma, beta), &saved, g, |z, _| f(z))
        });
        Ok((self.wrap(y), saved))
    }

    fn batch_norm_act_backward(
        &self,
        dy: &CpuBuf<E>,
        x: &CpuBuf<E>,
        residual: Option<&CpuBuf<E>>,
        gamma: &CpuBuf<E>,
        beta: &CpuBuf<E>,
        saved: &BatchNormSaved<CpuBuf<E>>,
        activation: Activation,
        g: &BatchNormGeom,
    ) -> Result<BatchNormActGrads<CpuBuf<E>>> {
        let residual_len = residual.map_or(x.len(), |r| r.len());
        g.check_lengths("batch_norm_act backward", &[x.len(), dy.len(), residual_len], &[("beta", beta.len())])?;
        // The reference computes dz = dy * act'(z) as a tensor and runs batch norm's backward on
        // it; the GPU kernels recompute dz in each of their two passes instead.
        let residual_values = residual.map(|r| &r[..]);
        let dz = with_activation!(activation, derivative, |f| {
            map_pre_activation(x, residual_values, dy, (gamma, beta), saved, g, |z, dy| dy * f(z))
        });
        let dz = self.wrap(dz);
        let (dx, dgamma, dbeta) = self.batch_norm2d_backward(&dz, x, gamma, saved, g)?;
        Ok(BatchNormActGrads { dx, dresidual: residual.map(|_| dz), dgamma, dbeta })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testutil::{
        assert_close, buf, dot, error_text, finite_diff, narrow, random, widen,
    };

    const EPS: f64 = 1e-5;

    /// y of a training forward, with fresh running statistics.
    fn train_y(
        cpu: &CpuBackend,
        x: &[f64],
        gamma: &[f64],
        beta: &[f64],
        g: &BatchNormGeom,
    ) -> Vec<f64> {
        let (mut rm, mut rv) = (buf(cpu, &vec![0.0; g.c]), buf(cpu, &vec![1.0; g.c]));
        let (gm, bt) = (buf(cpu, gamma), buf(cpu, beta));
        cpu.batch_norm2d_forward_train(&buf(cpu, x), &gm, &bt, &mut rm, &mut rv, 0.1, g)
            .unwrap()
            .0
            .to_vec()
    }

    #[test]
    fn backward_matches_finite_differences() {
        let cpu = CpuBackend::new();
        // Batch 1 with spatial extent, odd sizes, and one value per sample.
        for (n, c, hw) in [(2, 3, 5), (1, 2, 4), (3, 1, 1), (5, 3, 7)] {
            let g = BatchNormGeom::new(n, c, hw, EPS).unwrap();
            let (x, gamma, beta, w) = (
                random(g.len(), 1),
                random(c, 2),
                random(c, 3),
                random(g.len(), 4),
            );
            let (mut rm, mut rv) = (buf(&cpu, &vec![0.0; c]), buf(&cpu, &vec![1.0; c]));
            let xb = buf(&cpu, &x);
            let gb = buf(&cpu, &gamma);
            let (_, saved) = cpu
                .batch_norm2d_forward_train(&xb, &gb, &buf(&cpu, &beta), &mut rm, &mut rv, 0.1, &g)
                .unwrap();
            let (dx, dgamma, dbeta) = cpu
                .batch_norm2d_backward(&buf(&cpu, &w), &xb, &gb, &saved, &g)
                .unwrap();
            let what = format!("N={n} C={c} HW={hw}");
            let fd_x = finite_diff(&x, 1e-5, |x| dot(&train_y(&cpu, x, &gamma, &beta, &g), &w));
            assert_close(&format!("dx {what}"), &dx, &fd_x, 1e-6);
            let fd_gamma = finite_diff(&gamma, 1e-5, |gm| {
                dot(&train_y(&cpu, &x, gm, &beta, &g), &w)
            });
            assert_close(&format!("dgamma {what}"), &dgamma, &fd_gamma, 1e-7);
            let fd_beta = finite_diff(&beta, 1e-5, |bt| {
                dot(&train_y(&cpu, &x, &gamma, bt, &g), &w)
            });
            assert_close(&format!("dbeta {what}"), &dbeta, &fd_beta, 1e-7);
        }
    }

    #[test]
    fn training_forward_and_running_stats_by_hand() {
        let cpu = CpuBackend::new();
        // One channel, values 1, 2, 3, 6: mean 3, biased var 14/4, unbiased var 14/3.
        let g = BatchNormGeom::new(2, 1, 2, EPS).unwrap();
        let x = buf(&cpu, &[1.0, 2.0, 3.0, 6.0]);
        let (mut rm, mut rv) = (buf(&cpu, &[0.5]), buf(&cpu, &[2.0]));
        let (y, saved) = cpu
            .batch_norm2d_forward_train(
                &x,
                &buf(&cpu, &[2.0]),
                &buf(&cpu, &[1.0]),
                &mut rm,
                &mut rv,
                0.1,
                &g,
            )
            .unwrap();
        let invstd = 1.0 / (3.5f64 + EPS).sqrt();
        assert_eq!((saved.mean[0], saved.invstd[0]), (3.0, invstd));
        assert_close(
            "y",
            &y,
            &[
                -4.0 * invstd + 1.0,
                -2.0 * invstd + 1.0,
                1.0,
                6.0 * invstd + 1.0,
            ],
            1e-15,
        );
        assert_close("running_mean", &rm, &[0.9 * 0.5 + 0.1 * 3.0], 1e-15);
        assert_close("running_var", &rv, &[0.9 * 2.0 + 0.1 * 14.0 / 3.0], 1e-15);
        // A second step moves the running statistics again from where they are.
        let x2 = buf(&cpu, &[0.0, 0.0, 0.0, 4.0]);
        cpu.batch_norm2d_forward_train(
            &x2,
            &buf(&cpu, &[1.0]),
            &buf(&cpu, &[0.0]),
            &mut rm,
            &mut rv,
            0.1,
            &g,
        )
        .unwrap();
        assert_close("running_mean 2", &rm, &[0.9 * 0.75 + 0.1 * 1.0], 1e-15);
        assert_close(
            "running_var 2",
            &rv,
            &[0.9 * (1.8 + 1.4 / 3.0) + 0.1 * 12.0 / 3.0],
            1e-15,
        );
    }

    #[test]
    fn eval_forward_uses_running_stats() {
        let cpu = CpuBackend::new();
        let g = BatchNormGeom::new(1, 2, 2, EPS).unwrap();
        let x = buf(&cpu, &[1.0, 3.0, -1.0, 0.0]);
        let (rm, rv) = (buf(&cpu, &[1.0, -1.0]), buf(&cpu, &[4.0 - EPS, 0.25 - EPS]));
        let y = cpu
            .batch_norm2d_forward_eval(
                &x,
                &buf(&cpu, &[2.0, 1.0]),
                &buf(&cpu, &[0.5, 0.0]),
                &rm,
                &rv,
                &g,
            )
            .unwrap();
        assert_close("y", &y, &[0.5, 2.5, 0.0, 2.0], 1e-12);
    }

    #[test]
    fn statistics_survive_a_large_mean() {
        let cpu = CpuBackend::new();
        let g = BatchNormGeom::new(4, 1, 1, EPS).unwrap();
        let x: Vec<f32> = [1.0e4, 1.0e4 + 1.0, 1.0e4 + 2.0, 1.0e4 + 3.0].to_vec();
        let (mut rm, mut rv) = (cpu.wrap(vec![0.0f32]), cpu.wrap(vec![0.0f32]));
        let (y, _) = cpu
            .batch_norm2d_forward_train(
                &cpu.wrap(x),
                &cpu.wrap(vec![1.0]),
                &cpu.wrap(vec![0.0]),
                &mut rm,
                &mut rv,
                1.0,
                &g,
            )
            .unwrap();
        assert_eq!(rv[0], 5.0 / 3.0);
        let want = [-1.5f64, -0.5, 0.5, 1.5].map(|d| d / (1.25f64 + EPS).sqrt());
        assert_close("y", &widen(&y), &want, 1e-6);
    }

    #[test]
    fn f32_agrees_with_f64() {
        let cpu = CpuBackend::new();
        let g = BatchNormGeom::new(3, 4, 6, EPS).unwrap();
        let (x, gamma, beta, dy) = (
            random(g.len(), 5),
            random(4, 6),
            random(4, 7),
            random(g.len(), 8),
        );
        let buf32 = |v: &[f64]| cpu.wrap(narrow(v));
        let (mut rm32, mut rv32) = (buf32(&[0.0; 4]), buf32(&[1.0; 4]));
        let (x32, g32) = (buf32(&x), buf32(&gamma));
        let (y32, s32) = cpu
            .batch_norm2d_forward_train(&x32, &g32, &buf32(&beta), &mut rm32, &mut rv32, 0.1, &g)
            .unwrap();
        let (dx32, dg32, db32) = cpu
            .batch_norm2d_backward(&buf32(&dy), &x32, &g32, &s32, &g)
            .unwrap();
        let (mut rm, mut rv) = (buf(&cpu, &[0.0; 4]), buf(&cpu, &[1.0; 4]));
        let (xb, gb) = (buf(&cpu, &x), buf(&cpu, &gamma));
        let (y, s) = cpu
            .batch_norm2d_forward_train(&xb, &gb, &buf(&cpu, &beta), &mut rm, &mut rv, 0.1, &g)
            .unwrap();
        let (dx, dg, db) = cpu
            .batch_norm2d_backward(&buf(&cpu, &dy), &xb, &gb, &s, &g)
            .unwrap();
        for (what, got, want) in [
            ("y", widen(&y32), y.to_vec()),
            ("running_mean", widen(&rm32), rm.to_vec()),
            ("running_var", widen(&rv32), rv.to_vec()),
            ("dx", widen(&dx32), dx.to_vec()),
            ("dgamma", widen(&dg32), dg.to_vec()),
            ("dbeta", widen(&db32), db.to_vec()),
        ] {
            assert_close(what, &got, &want, 1e-5);
        }
    }

    #[test]
    fn one_value_per_channel_in_training_is_an_error() {
        let cpu = CpuBackend::new();
        let g = BatchNormGeom::new(1, 2, 1, EPS).unwrap();
        let (mut rm, mut rv) = (buf(&cpu, &[0.0; 2]), buf(&cpu, &[1.0; 2]));
        let (x, gamma, beta) = (
            buf(&cpu, &[1.0, 2.0]),
            buf(&cpu, &[1.0; 2]),
            buf(&cpu, &[0.0; 2]),
        );
        let err = error_text(
            cpu.batch_norm2d_forward_train(&x, &gamma, &beta, &mut rm, &mut rv, 0.1, &g),
        );
        assert_eq!(
            err,
            "shape error: batch_norm2d (training) needs more than one value per channel, got N*H*W = 1 (N=1, HW=1); \
             train with a batch of at least 2 or use eval mode"
        );
        assert_eq!(
            (rm.to_vec(), rv.to_vec()),
            (vec![0.0; 2], vec![1.0; 2]),
            "running stats must be untouched"
        );
        let err = error_text(cpu.batch_norm2d_forward_train(
            &x,
            &buf(&cpu, &[1.0]),
            &beta,
            &mut rm,
            &mut rv,
            0.1,
            &g,
        ));
        assert_eq!(
            err,
            "shape error: batch_norm2d (training): gamma has 1 elements but 2 are needed"
        );
    }
}
