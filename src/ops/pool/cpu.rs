//! CPU pooling, one rayon task per (n, c) plane. Every window is clipped to the real input once,
//! so padding is never read: it never wins a max and only counts in an average's divisor.
//! Channels-last calls reorder their tensors (argmax indices included) around this channels-first
//! reference.

use super::{AdaptivePoolGeom, PoolGeom, PoolOps};
use crate::cpu::layout::{nchw_to_nhwc, nhwc_to_nchw};
use crate::cpu::{CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::check::expect_len;
use crate::shape::Layout;
use rayon::prelude::*;

/// [N, HW, C] `v` as an [N, C, HW] buffer.
fn channels_first<T: Copy + Send + Sync>(cpu: &CpuBackend, v: &[T], c: usize, hw: usize) -> CpuBuf<T> {
    cpu.wrap(nhwc_to_nchw(v, c, hw))
}

/// [N, C, HW] `v` as an [N, HW, C] buffer.
fn channels_last<T: Copy + Send + Sync>(cpu: &CpuBackend, v: &[T], c: usize, hw: usize) -> CpuBuf<T> {
    cpu.wrap(nchw_to_nhwc(v, c, hw))
}

/// The input range [start, end) along one axis that window `o` covers, clipped to the input.
#[inline]
fn clipped_window(o: usize, stride: usize, pad: usize, kernel: usize, len: usize) -> (usize, usize) {
    let start = (o * stride).saturating_sub(pad);
    let end = (o * stride + kernel).saturating_sub(pad).min(len);
    (start, end)
}

/// The input rows and columns of one pooling window: ((h_start, h_end), (w_start, w_end)).
type Window = ((usize, usize), (usize, usize));

/// The windows of every output of a plane, row-major.
fn plane_windows(g: &PoolGeom) -> Vec<Window> {
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
    E::from_f64(count as f64)
}

/// The average-pooling divisor of every output of a plane, row-major.
fn avg_divisors<E: Element>(g: &PoolGeom) -> Vec<E> {
    (0..g.oh * g.ow).map(|o| divisor(g.avg_divisor(o / g.ow, o % g.ow))).collect()
}

/// The windows of every output of an adaptive plane, row-major, with the number of elements each averages.
fn adaptive_windows<E: Element>(g: &AdaptivePoolGeom) -> Vec<(Window, E)> {
    (0..g.oh * g.ow)
        .map(|o| {
            let rows = AdaptivePoolGeom::range(o / g.ow, g.h, g.oh);
            let cols = AdaptivePoolGeom::range(o % g.ow, g.w, g.ow);
            ((rows, cols), divisor((rows.1 - rows.0) * (cols.1 - cols.0)))
        })
        .collect()
}

impl<E: Element> PoolOps<E> for CpuBackend {
    fn max_pool2d_forward(&self, x: &CpuBuf<E>, g: &PoolGeom) -> Result<(CpuBuf<E>, CpuBuf<u32>)> {
        expect_len("max pooling", "input", x.len(), g.x_len())?;
        if g.layout == Layout::Nhwc {
            let nchw = g.with_layout(Layout::Nchw);
            let (y, indices) = self.max_pool2d_forward(&channels_first(self, x, g.c, g.h * g.w), &nchw)?;
            let out = g.oh * g.ow;
            return Ok((channels_last(self, &y, g.c, out), channels_last(self, &indices, g.c, out)));
        }
        if u32::try_from(g.h * g.w).is_err() {
            return Err(Error::shape(format!(
                "max pooling plane {}x{} is too large for 32-bit argmax indices",
                g.h, g.w
            )));
        }
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        let windows = plane_windows(g);
        let mut y = self.wrap(vec![E::zero(); g.y_len()]);
        let mut indices = self.wrap(vec![0u32; g.y_len()]);
        y.par_chunks_mut(plane_out).zip(indices.par_chunks_mut(plane_out)).enumerate().for_each(
            |(p, (y_plane, idx_plane))| {
                let x_plane = &x[p * plane_in..][..plane_in];
                for ((y_out, idx_out), &((h0, h1), (w0, w1))) in
                    y_plane.iter_mut().zip(idx_plane.iter_mut()).zip(&windows)
                {
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
        expect_len("max pooling", "output gradient", dy.len(), g.y_len())?;
        expect_len("max pooling", "indices", indices.len(), g.y_len())?;
        if g.layout == Layout::Nhwc {
            let (nchw, out) = (g.with_layout(Layout::Nchw), g.oh * g.ow);
            let (dy, indices) = (channels_first(self, dy, g.c, out), channels_first(self, indices, g.c, out));
            return Ok(channels_last(self, &self.max_pool2d_backward(&dy, &indices, &nchw)?, g.c, g.h * g.w));
        }
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
        expect_len("average pooling", "input", x.len(), g.x_len())?;
        if g.layout == Layout::Nhwc {
            let y = self.avg_pool2d_forward(&channels_first(self, x, g.c, g.h * g.w), &g.with_layout(Layout::Nchw))?;
            return Ok(channels_last(self, &y, g.c, g.oh * g.ow));
        }
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        let windows = plane_windows(g);
        let divisors = avg_divisors::<E>(g);
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
        expect_len("average pooling", "output gradient", dy.len(), g.y_len())?;
        if g.layout == Layout::Nhwc {
            let dy = channels_first(self, dy, g.c, g.oh * g.ow);
            return Ok(channels_last(self, &self.avg_pool2d_backward(&dy, &g.with_layout(Layout::Nchw))?, g.c, g.h * g.w));
        }
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        let windows = plane_windows(g);
        let divisors = avg_divisors::<E>(g);
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
        expect_len("adaptive average pooling", "input", x.len(), g.x_len())?;
        if g.layout == Layout::Nhwc {
            let x = channels_first(self, x, g.c, g.h * g.w);
            return Ok(channels_last(self, &self.adaptive_avg_pool2d_forward(&x, &g.with_layout(Layout::Nchw))?, g.c, g.oh * g.ow));
        }
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        let windows = adaptive_windows::<E>(g);
        let mut y = self.wrap(vec![E::zero(); g.y_len()]);
        y.par_chunks_mut(plane_out).enumerate().for_each(|(p, y_plane)| {
            let x_plane = &x[p * plane_in..][..plane_in];
            for (y_out, &((rows, cols), div)) in y_plane.iter_mut().zip(&windows) {
                *y_out = window_sum(x_plane, g.w, rows, cols) / div;
            }
        });
        Ok(y)
    }

    fn adaptive_avg_pool2d_backward(&self, dy: &CpuBuf<E>, g: &AdaptivePoolGeom) -> Result<CpuBuf<E>> {
        expect_len("adaptive average pooling", "output gradient", dy.len(), g.y_len())?;
        if g.layout == Layout::Nhwc {
            let dy = channels_first(self, dy, g.c, g.oh * g.ow);
            return Ok(channels_last(self, &self.adaptive_avg_pool2d_backward(&dy, &g.with_layout(Layout::Nchw))?, g.c, g.h * g.w));
        }
        let (plane_in, plane_out) = (g.h * g.w, g.oh * g.ow);
        let windows = adaptive_windows::<E>(g);
        let mut dx = self.wrap(vec![E::zero(); g.x_len()]);
        dx.par_chunks_mut(plane_in).enumerate().for_each(|(p, dx_plane)| {
            let dy_plane = &dy[p * plane_out..][..plane_out];
            for (&grad, &((rows, cols), div)) in dy_plane.iter().zip(&windows) {
                window_add(dx_plane, g.w, rows, cols, grad / div);
            }
        });
        Ok(dx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testutil::{assert_close, dot, error_text, narrow, random, widen};

    /// (N, C, (H, W), (KH, KW), stride, padding, ceil_mode)
    type Case = (usize, usize, (usize, usize), (usize, usize), (usize, usize), (usize, usize), bool);

    const CASES: &[Case] = &[
        (2, 3, (8, 8), (2, 2), (2, 2), (0, 0), false),
        // overlapping 3x3/s2 windows, with and without padding, floor and ceil mode
        (1, 2, (9, 9), (3, 3), (2, 2), (0, 0), false),
        (2, 2, (8, 8), (3, 3), (2, 2), (0, 0), true),
        (1, 3, (7, 10), (3, 3), (2, 2), (1, 1), true),
        (3, 1, (6, 5), (3, 3), (1, 1), (1, 1), false),
        // rectangular window whose ceil-mode last column is clipped by the right edge
        (1, 2, (7, 6), (2, 4), (1, 3), (1, 2), true),
    ];

    fn geom(&(n, c, hw, k, s, p, ceil): &Case, count_include_pad: bool) -> PoolGeom {
        PoolGeom::new(n, c, hw, k, s, p, ceil, count_include_pad).unwrap()
    }

    /// Every position of window (oh, ow) on the padded grid, row-major, as (ih, iw) that may lie
    /// in the padding or beyond it.
    fn window_positions(g: &PoolGeom, oh: usize, ow: usize) -> Vec<(isize, isize)> {
        let mut positions = Vec::new();
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                positions.push(((oh * g.sh + ki) as isize - g.ph as isize, (ow * g.sw + kj) as isize - g.pw as isize));
            }
        }
        positions
    }

    fn inside(len: usize, i: isize) -> bool {
        i >= 0 && i < len as isize
    }

    /// Direct max pooling: values and first-max flat indices.
    fn naive_max(x: &[f64], g: &PoolGeom) -> (Vec<f64>, Vec<u32>) {
        let mut y = Vec::new();
        let mut idx = Vec::new();
        for p in 0..g.n * g.c {
            for (oh, ow) in (0..g.oh).flat_map(|oh| (0..g.ow).map(move |ow| (oh, ow))) {
                let mut best: Option<(f64, usize)> = None;
                for (ih, iw) in window_positions(g, oh, ow) {
                    if inside(g.h, ih) && inside(g.w, iw) {
                        let flat = ih as usize * g.w + iw as usize;
                        let v = x[p * g.h * g.w + flat];
                        if best.is_none_or(|(b, _)| v > b) {
                            best = Some((v, flat));
                        }
                    }
                }
                let (v, flat) = best.expect("every window holds an input element");
                y.push(v);
                idx.push(flat as u32);
            }
        }
        (y, idx)
    }

    /// Direct average pooling with PyTorch's divisor, counted position by position.
    fn naive_avg(x: &[f64], g: &PoolGeom) -> Vec<f64> {
        let mut y = Vec::new();
        for p in 0..g.n * g.c {
            for (oh, ow) in (0..g.oh).flat_map(|oh| (0..g.ow).map(move |ow| (oh, ow))) {
                let (mut sum, mut count) = (0.0, 0);
                for (ih, iw) in window_positions(g, oh, ow) {
                    let real = inside(g.h, ih) && inside(g.w, iw);
                    if real {
                        sum += x[(p * g.h + ih as usize) * g.w + iw as usize];
                    }
                    let in_padded = ih < (g.h + g.ph) as isize && iw < (g.w + g.pw) as isize;
                    if real || (g.count_include_pad && in_padded) {
                        count += 1;
                    }
                }
                y.push(sum / count as f64);
            }
        }
        y
    }

    #[test]
    fn max_pool_matches_direct_loops_and_routes_gradients_to_the_argmax() {
        let cpu = CpuBackend::new();
        for (i, case) in CASES.iter().enumerate() {
            let g = geom(case, false);
            let x = random(g.x_len(), i as u64);
            let (want_y, want_idx) = naive_max(&x, &g);
            let (y, idx) = cpu.max_pool2d_forward(&cpu.wrap(x), &g).unwrap();
            assert_close(&format!("case {i} max forward"), &y, &want_y, 0.0);
            assert_eq!(&idx[..], &want_idx[..], "case {i} argmax");
            let dy = random(g.y_len(), 100 + i as u64);
            let mut want_dx = vec![0.0; g.x_len()];
            for (o, (&grad, &flat)) in dy.iter().zip(&want_idx).enumerate() {
                want_dx[o / (g.oh * g.ow) * g.h * g.w + flat as usize] += grad;
            }
            let dx = cpu.max_pool2d_backward(&cpu.wrap(dy), &idx, &g).unwrap();
            assert_close(&format!("case {i} max backward"), &dx, &want_dx, 1e-12);
        }
    }

    #[test]
    fn max_pool_ties_pick_the_first_real_element() {
        let cpu = CpuBackend::new();
        let g = geom(&CASES[3], false);
        let (_, idx) = cpu.max_pool2d_forward(&cpu.wrap(vec![-2.0f64; g.x_len()]), &g).unwrap();
        for (o, &flat) in idx[..g.oh * g.ow].iter().enumerate() {
            let first_real = window_positions(&g, o / g.ow, o % g.ow)
                .into_iter()
                .find(|&(ih, iw)| inside(g.h, ih) && inside(g.w, iw))
                .map(|(ih, iw)| ih as usize * g.w + iw as usize);
            assert_eq!(Some(flat as usize), first_real, "output {o}");
        }
    }

    #[test]
    fn avg_pool_matches_direct_loops_both_divisor_rules() {
        let cpu = CpuBackend::new();
        for (i, case) in CASES.iter().enumerate() {
            for count_include_pad in [true, false] {
                let g = geom(case, count_include_pad);
                let what = format!("case {i} count_include_pad={count_include_pad}");
                let x = random(g.x_len(), i as u64);
                let y = cpu.avg_pool2d_forward(&cpu.wrap(x.clone()), &g).unwrap();
                assert_close(&format!("{what} forward"), &y, &naive_avg(&x, &g), 1e-12);
                let dy = random(g.y_len(), 50 + i as u64);
                let dx = cpu.avg_pool2d_backward(&cpu.wrap(dy.clone()), &g).unwrap();
                assert_close(&format!("{what} <avg(x), dy> = <x, dx>"), &[dot(&x, &dx)], &[dot(&y, &dy)], 1e-12);
            }
        }
    }

    #[test]
    fn adaptive_pool_covers_overlapping_ranges_for_non_divisible_sizes() {
        assert_eq!((0..3).map(|i| AdaptivePoolGeom::range(i, 7, 3)).collect::<Vec<_>>(), [(0, 3), (2, 5), (4, 7)]);
        assert_eq!((0..2).map(|i| AdaptivePoolGeom::range(i, 5, 2)).collect::<Vec<_>>(), [(0, 3), (2, 5)]);
        let cpu = CpuBackend::new();
        for (hw, out) in [((7, 5), (3, 2)), ((5, 7), (2, 3)), ((6, 6), (1, 1)), ((3, 2), (5, 4))] {
            let g = AdaptivePoolGeom::new(2, 3, hw, out).unwrap();
            let x = random(g.x_len(), 8);
            // Ranges from real-valued bounds, independently of AdaptivePoolGeom::range.
            let bounds = |i: usize, len: usize, out: usize| {
                let (lo, hi) = (i as f64 * len as f64 / out as f64, (i + 1) as f64 * len as f64 / out as f64);
                (lo.floor() as usize, hi.ceil() as usize)
            };
            let mut want = Vec::new();
            for p in 0..g.n * g.c {
                for (oh, ow) in (0..g.oh).flat_map(|oh| (0..g.ow).map(move |ow| (oh, ow))) {
                    let ((h0, h1), (w0, w1)) = (bounds(oh, g.h, g.oh), bounds(ow, g.w, g.ow));
                    let sum: f64 = (h0..h1)
                        .flat_map(|ih| (w0..w1).map(move |iw| (ih, iw)))
                        .map(|(ih, iw)| x[(p * g.h + ih) * g.w + iw])
                        .sum();
                    want.push(sum / ((h1 - h0) * (w1 - w0)) as f64);
                }
            }
            let y = cpu.adaptive_avg_pool2d_forward(&cpu.wrap(x.clone()), &g).unwrap();
            assert_close(&format!("adaptive {hw:?} -> {out:?}"), &y, &want, 1e-12);
            let dy = random(g.y_len(), 9);
            let dx = cpu.adaptive_avg_pool2d_backward(&cpu.wrap(dy.clone()), &g).unwrap();
            assert_close(&format!("adaptive {hw:?} -> {out:?} adjoint"), &[dot(&x, &dx)], &[dot(&y, &dy)], 1e-12);
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        let cpu = CpuBackend::new();
        let g = geom(&CASES[3], false);
        let x = random(g.x_len(), 3);
        let x32 = narrow(&x);
        let (y64, i64) = cpu.max_pool2d_forward(&cpu.wrap(x.clone()), &g).unwrap();
        let (y32, i32) = cpu.max_pool2d_forward(&cpu.wrap(x32.clone()), &g).unwrap();
        assert_eq!(&i64[..], &i32[..]);
        assert_close("max f32", &widen(&y32), &y64, 1e-6);
        let a64 = cpu.avg_pool2d_forward(&cpu.wrap(x), &g).unwrap();
        let a32 = cpu.avg_pool2d_forward(&cpu.wrap(x32), &g).unwrap();
        assert_close("avg f32", &widen(&a32), &a64, 1e-6);
    }

    #[test]
    fn bad_buffers_indices_and_geometry_are_shape_errors() {
        let cpu = CpuBackend::new();
        let g = geom(&CASES[1], false);
        let err = error_text(cpu.max_pool2d_forward(&cpu.wrap(vec![0.0f64; g.x_len() + 1]), &g));
        assert!(err.contains(&format!("has {} elements", g.x_len() + 1)), "{err}");
        let dy = cpu.wrap(vec![1.0f64; g.y_len()]);
        let mut bad = vec![0u32; g.y_len()];
        bad[3] = (g.h * g.w) as u32;
        let err = error_text(cpu.max_pool2d_backward(&dy, &cpu.wrap(bad), &g));
        assert!(err.contains("outside"), "{err}");
    }
}
