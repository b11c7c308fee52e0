//! CPU fully connected layer: three GEMMs over the row-major [N, in] / [out, in] layouts, and the
//! bias as a row broadcast and a column sum.

use super::{LinearGeom, LinearOps};
use crate::cpu::{CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::Result;
use crate::ops::check::expect_len;
use crate::ops::gemm::{GemmOps, GemmSpec};
use rayon::prelude::*;

impl<E: Element> LinearOps<E> for CpuBackend {
    fn linear_forward(
        &self,
        x: &CpuBuf<E>,
        w: &CpuBuf<E>,
        bias: Option<&CpuBuf<E>>,
        g: &LinearGeom,
    ) -> Result<CpuBuf<E>> {
        expect_len("linear", "input", x.len(), g.n * g.in_features)?;
        expect_len("linear", "weight", w.len(), g.out_features * g.in_features)?;
        if let Some(b) = bias {
            expect_len("linear", "bias", b.len(), g.out_features)?;
        }
        let mut y = self.wrap(vec![E::zero(); g.n * g.out_features]);
        self.gemm(&GemmSpec::new(false, true, g.n, g.out_features, g.in_features), x, w, &mut y)?;
        if let Some(b) = bias {
            y.par_chunks_mut(g.out_features).for_each(|row| row.iter_mut().zip(&b[..]).for_each(|(v, &bv)| *v += bv));
        }
        Ok(y)
    }

    fn linear_backward_data(&self, dy: &CpuBuf<E>, w: &CpuBuf<E>, g: &LinearGeom) -> Result<CpuBuf<E>> {
        expect_len("linear", "output gradient", dy.len(), g.n * g.out_features)?;
        expect_len("linear", "weight", w.len(), g.out_features * g.in_features)?;
        let mut dx = self.wrap(vec![E::zero(); g.n * g.in_features]);
        self.gemm(&GemmSpec::new(false, false, g.n, g.in_features, g.out_features), dy, w, &mut dx)?;
        Ok(dx)
    }

    fn linear_backward_weight(&self, x: &CpuBuf<E>, dy: &CpuBuf<E>, g: &LinearGeom) -> Result<CpuBuf<E>> {
        expect_len("linear", "input", x.len(), g.n * g.in_features)?;
        expect_len("linear", "output gradient", dy.len(), g.n * g.out_features)?;
        let mut dw = self.wrap(vec![E::zero(); g.out_features * g.in_features]);
        self.gemm(&GemmSpec::new(true, false, g.out_features, g.in_features, g.n), dy, x, &mut dw)?;
        Ok(dw)
    }

    fn linear_backward_bias(&self, dy: &CpuBuf<E>, g: &LinearGeom) -> Result<CpuBuf<E>> {
        expect_len("linear", "output gradient", dy.len(), g.n * g.out_features)?;
        let mut db = vec![E::zero(); g.out_features];
        for row in dy.chunks_exact(g.out_features) {
            db.iter_mut().zip(row).for_each(|(d, &v)| *d += v);
        }
        Ok(self.wrap(db))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testutil::{assert_close, error_text, narrow, random, widen};

    #[test]
    fn forward_and_backward_match_the_definitions() {
        let cpu = CpuBackend::new();
        let g = LinearGeom::new(3, 5, 4).unwrap();
        let (x, w, b, dy) = (random(15, 1), random(20, 2), random(4, 3), random(12, 4));
        let mut want_y = vec![0.0; 12];
        let mut want_dx = vec![0.0; 15];
        let mut want_dw = vec![0.0; 20];
        let mut want_db = vec![0.0; 4];
        for n in 0..3 {
            for o in 0..4 {
                want_y[n * 4 + o] = b[o] + (0..5).map(|i| x[n * 5 + i] * w[o * 5 + i]).sum::<f64>();
                want_db[o] += dy[n * 4 + o];
                for i in 0..5 {
                    want_dx[n * 5 + i] += dy[n * 4 + o] * w[o * 5 + i];
                    want_dw[o * 5 + i] += dy[n * 4 + o] * x[n * 5 + i];
                }
            }
        }
        let (xb, wb, dyb) = (cpu.wrap(x), cpu.wrap(w), cpu.wrap(dy));
        assert_close("linear forward", &cpu.linear_forward(&xb, &wb, Some(&cpu.wrap(b)), &g).unwrap(), &want_y, 1e-12);
        assert_close("linear backward data", &cpu.linear_backward_data(&dyb, &wb, &g).unwrap(), &want_dx, 1e-12);
        assert_close("linear backward weight", &cpu.linear_backward_weight(&xb, &dyb, &g).unwrap(), &want_dw, 1e-12);
        assert_close("linear backward bias", &cpu.linear_backward_bias(&dyb, &g).unwrap(), &want_db, 1e-12);
    }

    #[test]
    fn f32_agrees_with_f64() {
        let cpu = CpuBackend::new();
        let g = LinearGeom::new(4, 7, 3).unwrap();
        let (x, w, b) = (random(28, 5), random(21, 6), random(3, 7));
        let y64 =
            cpu.linear_forward(&cpu.wrap(x.clone()), &cpu.wrap(w.clone()), Some(&cpu.wrap(b.clone())), &g).unwrap();
        let y32 =
            cpu.linear_forward(&cpu.wrap(narrow(&x)), &cpu.wrap(narrow(&w)), Some(&cpu.wrap(narrow(&b))), &g).unwrap();
        assert_close("linear f32", &widen(&y32), &y64, 1e-5);
    }

    #[test]
    fn mismatched_buffers_are_shape_errors() {
        let cpu = CpuBackend::new();
        let g = LinearGeom::new(2, 3, 4).unwrap();
        let (x, w) = (cpu.wrap(vec![0.0f64; 6]), cpu.wrap(vec![0.0f64; 12]));
        let err = error_text(cpu.linear_forward(&x, &w, Some(&cpu.wrap(vec![0.0; 3])), &g));
        assert!(err.contains("linear: bias has 3 elements but 4 are needed"), "{err}");
        assert!(cpu.linear_forward(&w, &w, None, &g).is_err());
        assert!(cpu.linear_backward_data(&x, &w, &g).is_err());
        assert!(cpu.linear_backward_weight(&x, &x, &g).is_err());
        assert!(cpu.linear_backward_bias(&x, &g).is_err());
    }
}
