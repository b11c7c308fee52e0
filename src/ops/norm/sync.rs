//! Synchronised batch norm (`train --sync-bn`): in a data-parallel run, training's batch
//! statistics and the two per-channel sums of backward are those of the global batch over every
//! rank, as PyTorch's SyncBatchNorm computes them. Built from the device's own batch-norm and
//! per-channel ops, with one collective of 2C + 1 values per rank, layer and direction through
//! the host; the statistics are merged in f64.

use super::{BatchNormGeom, BatchNormSaved};
use crate::dist::ProcessGroup;
use crate::element::Element;
use crate::error::Result;
use crate::ops::elementwise::ChannelBroadcast;
use crate::ops::Backend;
use crate::shape::Layout;

fn host<E: Element, B: Backend<E>>(backend: &B, buf: &B::Buf) -> Result<Vec<f64>> {
    Ok(backend.download(buf)?.into_iter().map(Element::to_f64).collect())
}

fn as_elements<E: Element>(values: &[f64]) -> Vec<E> {
    values.iter().map(|&v| E::from_f64(v)).collect()
}

fn device<E: Element, B: Backend<E>>(backend: &B, values: &[f64]) -> Result<B::Buf> {
    backend.upload(&as_elements(values))
}

/// `buf`'s values replaced in place (its address, which a parameter store hands out, stays).
fn overwrite<E: Element, B: Backend<E>>(backend: &B, buf: &mut B::Buf, values: &[f64]) -> Result<()> {
    backend.overwrite(buf, &as_elements(values))
}

/// Training forward with the global batch's mean and biased variance; moves `running` (mean,
/// var) with the global unbiased variance when given.
#[allow(clippy::too_many_arguments)]
pub(super) fn forward_train<E: Element, B: Backend<E>>(
    backend: &B,
    group: &ProcessGroup,
    x: &B::Buf,
    gamma: &B::Buf,
    beta: &B::Buf,
    running: Option<(&mut B::Buf, &mut B::Buf)>,
    momentum: f64,
    g: &BatchNormGeom,
) -> Result<(B::Buf, BatchNormSaved<B::Buf>)> {
    let (c, eps, count) = (g.c, g.eps, g.count() as f64);
    // The device's training forward gives this rank's mean and 1/sqrt(var + eps) in one pass;
    // its output and its (scratch) running statistics are not used.
    let zeros = vec![0.0; c];
    let (mut scratch_mean, mut scratch_var) = (device(backend, &zeros)?, device(backend, &zeros)?);
    let (_, local) = backend.batch_norm2d_forward_train(x, gamma, beta, &mut scratch_mean, &mut scratch_var, 0.0, g)?;
    let (mean, invstd) = (host(backend, &local.mean)?, host(backend, &local.invstd)?);
    // Every rank's count, means and var + eps (which 1/invstd^2 gives to f32 precision even
    // when var is far below eps), merged as Chan et al.'s parallel variance: no E[x^2] - mean^2
    // cancellation for channels whose mean is large against their spread.
    let mine: Vec<f64> = std::iter::once(count).chain(mean).chain(invstd.iter().map(|s| 1.0 / (s * s))).collect();
    let ranks = group.all_gather(&mine)?;
    let per_rank: Vec<&[f64]> = ranks.chunks(2 * c + 1).collect();
    let total: f64 = per_rank.iter().map(|r| r[0]).sum();
    let mean: Vec<f64> = (0..c).map(|ch| per_rank.iter().map(|r| r[0] * r[1 + ch]).sum::<f64>() / total).collect();
    let var_eps: Vec<f64> = (0..c)
        .map(|ch| {
            let within: f64 = per_rank.iter().map(|r| r[0] * r[1 + c + ch]).sum();
            let between: f64 = per_rank.iter().map(|r| r[0] * (r[1 + ch] - mean[ch]).powi(2)).sum();
            (within + between) / total
        })
        .collect();
    let var: Vec<f64> = var_eps.iter().map(|v| (v - eps).max(0.0)).collect();
    let (mean_buf, var_buf) = (device(backend, &mean)?, device(backend, &var)?);
    let y = backend.batch_norm2d_forward_eval(x, gamma, beta, &mean_buf, &var_buf, g)?;
    if let Some((running_mean, running_var)) = running {
        let (old_mean, old_var) = (host(backend, running_mean)?, host(backend, running_var)?);
        let unbiased = total / (total - 1.0);
        let moved_mean: Vec<f64> = (0..c).map(|ch| (1.0 - momentum) * old_mean[ch] + momentum * mean[ch]).collect();
        let moved_var: Vec<f64> = (0..c).map(|ch| (1.0 - momentum) * old_var[ch] + momentum * var[ch] * unbiased).collect();
        overwrite(backend, running_mean, &moved_mean)?;
        overwrite(backend, running_var, &moved_var)?;
    }
    let invstd: Vec<f64> = var_eps.iter().map(|v| 1.0 / v.sqrt()).collect();
    Ok((y, BatchNormSaved { mean: mean_buf, invstd: device(backend, &invstd)? }))
}

/// Training backward over the global batch: dx uses the sums of dy and dy * x_hat over every
/// rank; dgamma and dbeta stay this rank's (they are averaged over the ranks with the other
/// parameters' gradients).
pub(super) fn backward<E: Element, B: Backend<E>>(
    backend: &B,
    group: &ProcessGroup,
    dy: &B::Buf,
    x: &B::Buf,
    gamma: &B::Buf,
    saved: &BatchNormSaved<B::Buf>,
    g: &BatchNormGeom,
) -> Result<(B::Buf, B::Buf, B::Buf)> {
    let (c, count) = (g.c, g.count() as f64);
    // The device's backward with this rank's sums: dx_local = k (dy - a - x_hat b), with
    // k = gamma * invstd, a = mean(dy), b = mean(dy * x_hat) over this rank.
    let (dx_local, dgamma, dbeta) = backend.batch_norm2d_backward(dy, x, gamma, saved, g)?;
    let (sum_dy_xhat, sum_dy) = (host(backend, &dgamma)?, host(backend, &dbeta)?);
    let mut sums = [&sum_dy_xhat[..], &sum_dy[..], &[count]].concat();
    group.all_reduce_sum(&mut sums)?;
    let total = sums[2 * c];
    // dx = dx_local + k ((a - A) + x_hat (b - B)) with the global means A, B: an affine function
    // of x per channel, x * s + t.
    let (gamma, mean, invstd) = (host(backend, gamma)?, host(backend, &saved.mean)?, host(backend, &saved.invstd)?);
    let (mut scale, mut shift) = (vec![0.0; c], vec![0.0; c]);
    for ch in 0..c {
        let k = gamma[ch] * invstd[ch];
        let (a, b) = (sum_dy[ch] / count, sum_dy_xhat[ch] / count);
        let (global_a, global_b) = (sums[c + ch] / total, sums[ch] / total);
        scale[ch] = k * invstd[ch] * (b - global_b);
        shift[ch] = k * (a - global_a) - scale[ch] * mean[ch];
    }
    let per_channel = ChannelBroadcast { n: g.n, c, hw: g.hw, per_sample: false, layout: Layout::Nchw };
    let scaled = backend.mul_channel(x, &device(backend, &scale)?, &per_channel)?;
    let correction = backend.add_channel(&scaled, &device(backend, &shift)?, &per_channel)?;
    Ok((backend.add(&dx_local, &correction)?, dgamma, dbeta))
}
