//! CPU pooling, one rayon task per (n, c) plane. Every window is clipped to the real input once,
//! so padding is never read: it never wins a max and only counts in an average's divisor.

use super::{AdaptivePoolGeom, PoolGeom, PoolOps};
use crate::cpu::{expect_len, CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::{Error, Result};
use rayon::prelude::*;

/// The input range [start, end) along one axis that window `o` covers, clipped to the input.
#[inline]
fn clipped_window(o: usize, stride: usize, pad: usize, kernel: usize, len: usize) -> (usize, usize) {
    let start = (o * stride).saturating_sub(pad);
    let end = (o * stride + kernel).saturating_sub(pad).min(len);
    (start, end)
}

/// A hand-built geometry whose output size disagrees with its input would make windows that lie
/// entirely in the padding; rebuilding it through `PoolGeom::new` rules that out.
fn check_geometry(g: &PoolGeom) -> Result<()> {
    let rebuilt = PoolGeom::new(
        g.n,
        g.c,
        (g.h, g.w),
        (g.kh, g.kw),
        (g.sh, g.sw),
        (g.ph, g.pw),
        g.ceil_mode,
        g.count_include_pad,
    )?;
    if rebuilt != *g {
        return Err(Error::shape(format!(
            "pooling geometry says output {}x{} but its input, kernel, stride and padding give {}x{}",
            g.oh, g.ow, rebuilt.oh, rebuilt.ow
        )));
    }
    Ok(())
}

/// The windows of every output of a plane, row-major: ((h_start, h_end), (w_start, w_end)).
fn plane_windows(g: &PoolGeom) -> Vec<((usize, usize), (usize, usize))> {
    let rows: Vec<_> = (0..g.oh).map(|oh| clipped_window(oh, g.sh, g.ph, g.kh, g.h)).collect();
    let cols: Vec<_> = (0..g.ow).map(|ow| clipped_window(ow, g.sw, g.pw, g.kw, g.w)).collect();
    rows.iter().flat_map(|&r| cols.iter().map(move |&c| (r, c))).collect()
}

/// Sums `x_plane` (row length `w`) over a window.
#[inline]
fn window_sum<E: Element>(x_plane: &[E], w: usize, (h0, h1): (usize, usize), (w0, w1): (usize, usize)) -> E {
    (h0..h1).map(|ih| x_plane[ih * w + w0..ih * w + w1].iter().copied().sum::<E>()).sum()
}

/// Adds `value` to every element of a window of `dx_plane` (row length `w`).
#[inline]
fn window_add<E: Element>(dx_plane: &mut [E], w: usize, (h0, h1): (usize, usize), (w0, w1): (usize, usize), value: E) {
    for ih in h0..h1 {
        dx_plane[ih * w + w0..ih * w + w1].iter_mut().for_each(|d| *d += value);
    }
}

fn divisor<E: Element>(count: usize) -> E {
    <E as Element>::from_f64(count as f64)
}

impl<E: Element> PoolOps<E> for CpuBackend {
    fn max_pool2d_forward(&self, x: &CpuBuf<E>, g: &PoolGeom) -> Result<(CpuBuf<E>, CpuBuf<u32>)> {
        check_geometry(g)?;
        expect_len("max pooling input", x.len(), g.x_len())?;
        if u32::try_from(g.h * g.w).is_err() {
            return Err(Error::shape(format!("max pooling plane {}x{} is too large for 32-bit argmax indices", g.h, g.w)));
        }
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        let windows = plane_windows(g);
        let mut y = self.wrap(vec![E::zero(); g.y_len()]);
        let mut indices = self.wrap(vec![0u32; g.y_len()]);
        y.par_chunks_mut(plane_out).zip(indices.par_chunks_mut(plane_out)).enumerate().for_each(
            |(p, (y_plane, idx_plane))| {
                let x_plane = &x[p * plane_in..][..plane_in];
                for ((y_out, idx_out), &((h0, h1), (w0, w1))) in y_plane.iter_mut().zip(idx_plane.iter_mut()).zip(&windows) {
                    let mut best = E::neg_infinity();
                    let mut arg = h0 * g.w + w0;
                    for ih in h0..h1 {
                        for (iw, &v) in x_plane[ih * g.w + w0..ih * g.w + w1].iter().enumerate() {
                            // Strictly greater keeps the first of equal values; the first NaN wins
                            // and stays, so NaN propagates as it does in PyTorch.
                            if v > best || (v.is_nan() && !best.is_nan()) {
                                best = v;
                                arg = ih * g.w + w0 + iw;
                            }
                        }
                    }
                    *y_out = best;
                    *idx_out = arg as u32;
                }
            },
        );
        Ok((y, indices))
    }

    fn max_pool2d_backward(&self, dy: &CpuBuf<E>, indices: &CpuBuf<u32>, g: &PoolGeom) -> Result<CpuBuf<E>> {
        check_geometry(g)?;
        expect_len("max pooling output gradient", dy.len(), g.y_len())?;
        expect_len("max pooling indices", indices.len(), g.y_len())?;
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        let mut dx = self.wrap(vec![E::zero(); g.x_len()]);
        dx.par_chunks_mut(plane_in).enumerate().try_for_each(|(p, dx_plane)| {
            let dy_plane = &dy[p * plane_out..][..plane_out];
            let idx_plane = &indices[p * plane_out..][..plane_out];
            for (&grad, &idx) in dy_plane.iter().zip(idx_plane) {
                let target = dx_plane.get_mut(idx as usize).ok_or_else(|| {
                    Error::shape(format!("max pooling index {idx} lies outside its {}x{} input plane", g.h, g.w))
                })?;
                *target += grad;
            }
            Ok(())
        })?;
        Ok(dx)
    }

    fn avg_pool2d_forward(&self, x: &CpuBuf<E>, g: &PoolGeom) -> Result<CpuBuf<E>> {
        check_geometry(g)?;
        expect_len("average pooling input", x.len(), g.x_len())?;
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        let windows = plane_windows(g);
        let divisors: Vec<E> = (0..plane_out).map(|o| divisor(g.avg_divisor(o / g.ow, o % g.ow))).collect();
        let mut y = self.wrap(vec![E::zero(); g.y_len()]);
        y.par_chunks_mut(plane_out).enumerate().for_each(|(p, y_plane)| {
            let x_plane = &x[p * plane_in..][..plane_in];
            for ((y_out, &(rows, cols)), &div) in y_plane.iter_mut().zip(&windows).zip(&divisors) {
                *y_out = window_sum(x_plane, g.w, rows, cols) / div;
            }
        });
        Ok(y)
    }

    fn avg_pool2d_backward(&self, dy: &CpuBuf<E>, g: &PoolGeom) -> Result<CpuBuf<E>> {
        check_geometry(g)?;
        expect_len("average pooling output gradient", dy.len(), g.y_len())?;
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        let windows = plane_windows(g);
        let divisors: Vec<E> = (0..plane_out).map(|o| divisor(g.avg_divisor(o / g.ow, o % g.ow))).collect();
        let mut dx = self.wrap(vec![E::zero(); g.x_len()]);
        dx.par_chunks_mut(plane_in).enumerate().for_each(|(p, dx_plane)| {
            let dy_plane = &dy[p * plane_out..][..plane_out];
            for ((&grad, &(rows, cols)), &div) in dy_plane.iter().zip(&windows).zip(&divisors) {
                window_add(dx_plane, g.w, rows, cols, grad / div);
            }
        });
        Ok(dx)
    }

    fn adaptive_avg_pool2d_forward(&self, x: &CpuBuf<E>, g: &AdaptivePoolGeom) -> Result<CpuBuf<E>> {
        expect_len("adaptive average pooling input", x.len(), g.x_len())?;
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        let mut y = self.wrap(vec![E::zero(); g.y_len()]);
        y.par_chunks_mut(plane_out).enumerate().for_each(|(p, y_plane)| {
            let x_plane = &x[p * plane_in..][..plane_in];
            for (o, y_out) in y_plane.iter_mut().enumerate() {
                let rows = AdaptivePoolGeom::range(o / g.ow, g.h, g.oh);
                let cols = AdaptivePoolGeom::range(o % g.ow, g.w, g.ow);
                let count = (rows.1 - rows.0) * (cols.1 - cols.0);
                *y_out = window_sum(x_plane, g.w, rows, cols) / divisor(count);
            }
        });
        Ok(y)
    }

    fn adaptive_avg_pool2d_backward(&self, dy: &CpuBuf<E>, g: &AdaptivePoolGeom) -> Result<CpuBuf<E>> {
        expect_len("adaptive average pooling output gradient", dy.len(), g.y_len())?;
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        let mut dx = self.wrap(vec![E::zero(); g.x_len()]);
        dx.par_chunks_mut(plane_in).enumerate().for_each(|(p, dx_plane)| {
            let dy_plane = &dy[p * plane_out..][..plane_out];
            for (o, &grad) in dy_plane.iter().enumerate() {
                let rows = AdaptivePoolGeom::range(o / g.ow, g.h, g.oh);
                let cols = AdaptivePoolGeom::range(o % g.ow, g.w, g.ow);
                let count = (rows.1 - rows.0) * (cols.1 - cols.0);
                window_add(dx_plane, g.w, rows, cols, grad / divisor(count));
            }
        });
        Ok(dx)
    }
}
