//! Elementwise arithmetic and per-channel broadcasts on the CPU. Channels-last broadcasts
//! reorder x and dy to channels first around the reference.

use super::{ChannelBroadcast, ElementwiseOps};
use crate::cpu::layout::{nchw_to_nhwc, nhwc_to_nchw};
use crate::cpu::par::{update, zip_map, CHUNK};
use crate::cpu::{CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::Result;
use crate::ops::check::expect_len;
use crate::shape::Layout;
use rayon::prelude::*;

// Free functions rather than inherent methods, so that the GPU launcher can add its own helpers
// to ChannelBroadcast without clashing names.

/// A channels-last broadcast's x-shaped operand `v` in channels-first order, and the channels-first
/// geometry to compute on.
fn channels_first<E: Element>(v: &[E], g: &ChannelBroadcast) -> (Vec<E>, ChannelBroadcast) {
    (nhwc_to_nchw(v, g.c, g.hw), ChannelBroadcast { layout: Layout::Nchw, ..*g })
}

/// The operand entry that row `row` (= n * C + c) of x is combined with.
fn operand_index(g: &ChannelBroadcast, row: usize) -> usize {
    if g.per_sample {
        row
    } else {
        row % g.c
    }
}

/// The rows of x that share operand entry `k`.
fn rows_sharing(g: &ChannelBroadcast, k: usize) -> impl Iterator<Item = usize> {
    let (rows, stride) = if g.per_sample { (1, 0) } else { (g.n, g.c) };
    (0..rows).map(move |i| k + i * stride)
}

/// y = f(x, operand) with the operand broadcast over HW (and N unless per sample).
fn broadcast<E: Element>(
    x: &[E],
    operand: &[E],
    g: &ChannelBroadcast,
    f: impl Fn(E, E) -> E + Sync,
) -> Vec<E> {
    let hw = g.hw.max(1);
    let mut y = vec![E::zero(); x.len()];
    y.par_chunks_mut(hw)
        .zip(x.par_chunks(hw))
        .with_min_len((CHUNK / hw).max(1))
        .enumerate()
        .for_each(|(row, (yr, xr))| {
            let s = operand[operand_index(g, row)];
            for (y, &x) in yr.iter_mut().zip(xr) {
                *y = f(x, s);
            }
        });
    y
}

/// out[k] = sum over the rows sharing operand entry k of row_sum(row), each row's sum in f64.
fn reduce_to_operand<E: Element>(
    g: &ChannelBroadcast,
    row_sum: impl Fn(usize) -> f64 + Sync,
) -> Vec<E> {
    (0..g.operand_len())
        .into_par_iter()
        .map(|k| E::from_f64(rows_sharing(g, k).map(&row_sum).sum()))
        .collect()
}

impl<E: Element> ElementwiseOps<E> for CpuBackend {
    fn add(&self, a: &CpuBuf<E>, b: &CpuBuf<E>) -> Result<CpuBuf<E>> {
        expect_len("add", "b", b.len(), a.len())?;
        Ok(self.wrap(zip_map(a, b, |a, b| a + b)))
    }

    fn mul(&self, a: &CpuBuf<E>, b: &CpuBuf<E>) -> Result<CpuBuf<E>> {
        expect_len("mul", "b", b.len(), a.len())?;
        Ok(self.wrap(zip_map(a, b, |a, b| a * b)))
    }

    fn mul_backward(
        &self,
        a: &CpuBuf<E>,
        b: &CpuBuf<E>,
        dy: &CpuBuf<E>,
    ) -> Result<(CpuBuf<E>, CpuBuf<E>)> {
        expect_len("mul backward", "b", b.len(), a.len())?;
        expect_len("mul backward", "dy", dy.len(), a.len())?;
        Ok((
            self.wrap(zip_map(dy, b, |dy, b| dy * b)),
            self.wrap(zip_map(dy, a, |dy, a| dy * a)),
        ))
    }

    fn add_channel(&self, x: &CpuBuf<E>, b: &CpuBuf<E>, g: &ChannelBroadcast) -> Result<CpuBuf<E>> {
        g.check("add_channel", x.len(), b.len())?;
        if g.layout == Layout::Nhwc {
            let (x, nchw) = channels_first(x, g);
            return Ok(self.wrap(nchw_to_nhwc(&broadcast(&x, b, &nchw, |x, b| x + b), g.c, g.hw)));
        }
        Ok(self.wrap(broadcast(x, b, g, |x, b| x + b)))
    }

    fn add_channel_backward(&self, dy: &CpuBuf<E>, g: &ChannelBroadcast) -> Result<CpuBuf<E>> {
        expect_len("add_channel backward", "dy", dy.len(), g.x_len())?;
        if g.layout == Layout::Nhwc {
            let (dy, nchw) = channels_first(dy, g);
            return self.add_channel_backward(&self.wrap(dy), &nchw);
        }
        let row = |r: usize| &dy[r * g.hw..(r + 1) * g.hw];
        Ok(self.wrap(reduce_to_operand(g, |r| {
            row(r).iter().map(|&v| v.to_f64()).sum()
        })))
    }

    fn mul_channel(&self, x: &CpuBuf<E>, s: &CpuBuf<E>, g: &ChannelBroadcast) -> Result<CpuBuf<E>> {
        g.check("mul_channel", x.len(), s.len())?;
        if g.layout == Layout::Nhwc {
            let (x, nchw) = channels_first(x, g);
            return Ok(self.wrap(nchw_to_nhwc(&broadcast(&x, s, &nchw, |x, s| x * s), g.c, g.hw)));
        }
        Ok(self.wrap(broadcast(x, s, g, |x, s| x * s)))
    }

    fn mul_channel_backward(
        &self,
        x: &CpuBuf<E>,
        s: &CpuBuf<E>,
        dy: &CpuBuf<E>,
        g: &ChannelBroadcast,
    ) -> Result<(CpuBuf<E>, CpuBuf<E>)> {
        g.check("mul_channel backward", x.len(), s.len())?;
        expect_len("mul_channel backward", "dy", dy.len(), g.x_len())?;
        if g.layout == Layout::Nhwc {
            let ((x, nchw), (dy, _)) = (channels_first(x, g), channels_first(dy, g));
            let (dx, ds) = self.mul_channel_backward(&self.wrap(x), s, &self.wrap(dy), &nchw)?;
            return Ok((self.wrap(nchw_to_nhwc(&dx, g.c, g.hw)), ds));
        }
        let dx = broadcast(dy, s, g, |dy, s| dy * s);
        let rows = |r: usize| {
            dy[r * g.hw..(r + 1) * g.hw]
                .iter()
                .zip(&x[r * g.hw..(r + 1) * g.hw])
        };
        let ds = reduce_to_operand(g, |r| {
            rows(r).map(|(&dy, &x)| dy.to_f64() * x.to_f64()).sum()
        });
        Ok((self.wrap(dx), self.wrap(ds)))
    }

    fn axpy(&self, alpha: E, x: &CpuBuf<E>, y: &mut CpuBuf<E>) -> Result<()> {
        expect_len("axpy", "x", x.len(), y.len())?;
        y.par_chunks_mut(CHUNK)
            .zip(x.par_chunks(CHUNK))
            .for_each(|(yc, xc)| {
                for (y, &x) in yc.iter_mut().zip(xc) {
                    *y += alpha * x;
                }
            });
        Ok(())
    }

    fn scale(&self, alpha: E, x: &mut CpuBuf<E>) -> Result<()> {
        update(x, |v| alpha * v);
        Ok(())
    }

    fn fill(&self, value: E, x: &mut CpuBuf<E>) -> Result<()> {
        update(x, |_| value);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shape::Layout;
    use crate::cpu::testutil::{
        assert_close, buf, dot, error_text, finite_diff, narrow, random, widen,
    };

    const GEOMS: [ChannelBroadcast; 3] = [
        ChannelBroadcast {
            n: 2,
            c: 3,
            hw: 5,
            per_sample: false,
            layout: Layout::Nchw,
        },
        ChannelBroadcast {
            n: 3,
            c: 2,
            hw: 1,
            per_sample: true,
            layout: Layout::Nchw,
        },
        ChannelBroadcast {
            n: 1,
            c: 4,
            hw: 3,
            per_sample: true,
            layout: Layout::Nchw,
        },
    ];

    #[test]
    fn same_length_arithmetic() {
        let cpu = CpuBackend::new();
        let (a, b) = (buf(&cpu, &[1.0, 2.0, 3.0]), buf(&cpu, &[4.0, -5.0, 0.5]));
        assert_eq!(cpu.add(&a, &b).unwrap().to_vec(), vec![5.0, -3.0, 3.5]);
        assert_eq!(cpu.mul(&a, &b).unwrap().to_vec(), vec![4.0, -10.0, 1.5]);
        let (da, db) = cpu
            .mul_backward(&a, &b, &buf(&cpu, &[1.0, 2.0, -1.0]))
            .unwrap();
        assert_eq!(
            (da.to_vec(), db.to_vec()),
            (vec![4.0, -10.0, -0.5], vec![1.0, 4.0, -3.0])
        );
        let mut y = buf(&cpu, &[1.0, 1.0, 1.0]);
        cpu.axpy(2.0, &a, &mut y).unwrap();
        assert_eq!(y.to_vec(), vec![3.0, 5.0, 7.0]);
        cpu.scale(0.5, &mut y).unwrap();
        assert_eq!(y.to_vec(), vec![1.5, 2.5, 3.5]);
        cpu.fill(-2.0, &mut y).unwrap();
        assert_eq!(y.to_vec(), vec![-2.0; 3]);
    }

    #[test]
    fn channel_broadcast_forward_by_hand() {
        let cpu = CpuBackend::new();
        let g = ChannelBroadcast {
            n: 2,
            c: 2,
            hw: 2,
            per_sample: false,
            layout: Layout::Nchw,
        };
        let x = buf(&cpu, &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]);
        let y = cpu.add_channel(&x, &buf(&cpu, &[10.0, 20.0]), &g).unwrap();
        assert_eq!(
            y.to_vec(),
            vec![11.0, 12.0, 23.0, 24.0, 15.0, 16.0, 27.0, 28.0]
        );
        let gs = ChannelBroadcast {
            per_sample: true,
            ..g
        };
        let y = cpu
            .mul_channel(&x, &buf(&cpu, &[1.0, 2.0, 3.0, 4.0]), &gs)
            .unwrap();
        assert_eq!(y.to_vec(), vec![1.0, 2.0, 6.0, 8.0, 15.0, 18.0, 28.0, 32.0]);
        let db = cpu.add_channel_backward(&x, &g).unwrap();
        assert_eq!(
            db.to_vec(),
            vec![1.0 + 2.0 + 5.0 + 6.0, 3.0 + 4.0 + 7.0 + 8.0]
        );
    }

    #[test]
    fn channel_broadcast_backward_matches_finite_differences() {
        let cpu = CpuBackend::new();
        for g in GEOMS {
            let (x, s, w) = (
                random(g.x_len(), 1),
                random(g.operand_len(), 2),
                random(g.x_len(), 3),
            );
            let (dx, ds) = cpu
                .mul_channel_backward(&buf(&cpu, &x), &buf(&cpu, &s), &buf(&cpu, &w), &g)
                .unwrap();
            let mul = |x: &[f64], s: &[f64]| {
                dot(
                    &cpu.mul_channel(&buf(&cpu, x), &buf(&cpu, s), &g).unwrap(),
                    &w,
                )
            };
            assert_close(
                "mul_channel dx",
                &dx,
                &finite_diff(&x, 1e-6, |x| mul(x, &s)),
                1e-7,
            );
            assert_close(
                "mul_channel ds",
                &ds,
                &finite_diff(&s, 1e-6, |s| mul(&x, s)),
                1e-7,
            );
            let db = cpu.add_channel_backward(&buf(&cpu, &w), &g).unwrap();
            let add = |b: &[f64]| {
                dot(
                    &cpu.add_channel(&buf(&cpu, &x), &buf(&cpu, b), &g).unwrap(),
                    &w,
                )
            };
            assert_close("add_channel db", &db, &finite_diff(&s, 1e-6, add), 1e-7);
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        let cpu = CpuBackend::new();
        let g = GEOMS[0];
        let (x, s, w) = (
            random(g.x_len(), 4),
            random(g.operand_len(), 5),
            random(g.x_len(), 6),
        );
        let buf32 = |v: &[f64]| cpu.wrap(narrow(v));
        let (dx32, ds32) = cpu
            .mul_channel_backward(&buf32(&x), &buf32(&s), &buf32(&w), &g)
            .unwrap();
        let (dx, ds) = cpu
            .mul_channel_backward(&buf(&cpu, &x), &buf(&cpu, &s), &buf(&cpu, &w), &g)
            .unwrap();
        assert_close("dx", &widen(&dx32), &dx, 1e-6);
        assert_close("ds", &widen(&ds32), &ds, 1e-6);
    }

    #[test]
    fn length_mismatches_are_errors_with_the_numbers() {
        let cpu = CpuBackend::new();
        let (a, b) = (buf(&cpu, &[1.0; 4]), buf(&cpu, &[1.0; 3]));
        assert_eq!(
            error_text(cpu.add(&a, &b)),
            "shape error: add: b has 3 elements but 4 are needed"
        );
        let mut y = buf(&cpu, &[0.0; 4]);
        assert_eq!(
            error_text(cpu.axpy(1.0, &b, &mut y)),
            "shape error: axpy: x has 3 elements but 4 are needed"
        );
        let g = ChannelBroadcast {
            n: 1,
            c: 2,
            hw: 2,
            per_sample: false,
            layout: Layout::Nchw,
        };
        assert_eq!(
            error_text(cpu.mul_channel(&a, &b, &g)),
            "shape error: mul_channel: the per-channel operand has 3 elements but 2 are needed"
        );
    }
}
