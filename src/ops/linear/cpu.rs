//! CPU fully connected layer: three GEMMs over the row-major [N, in] / [out, in] layouts, and the
//! bias as a row broadcast and a column sum.

use super::{LinearGeom, LinearOps};
use crate::cpu::{expect_len, CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::Result;
use crate::ops::gemm::{GemmOps, GemmSpec};
use rayon::prelude::*;

impl<E: Element> LinearOps<E> for CpuBackend {
    fn linear_forward(&self, x: &CpuBuf<E>, w: &CpuBuf<E>, bias: Option<&CpuBuf<E>>, g: &LinearGeom) -> Result<CpuBuf<E>> {
        expect_len("linear input", x.len(), g.n * g.in_features)?;
        expect_len("linear weight", w.len(), g.out_features * g.in_features)?;
        let mut y = self.wrap(vec![E::zero(); g.n * g.out_features]);
        self.gemm(&GemmSpec::new(false, true, g.n, g.out_features, g.in_features), x, w, &mut y)?;
        if let Some(b) = bias {
            expect_len("linear bias", b.len(), g.out_features)?;
            y.par_chunks_mut(g.out_features).for_each(|row| row.iter_mut().zip(&b[..]).for_each(|(v, &bv)| *v += bv));
        }
        Ok(y)
    }

    fn linear_backward_data(&self, dy: &CpuBuf<E>, w: &CpuBuf<E>, g: &LinearGeom) -> Result<CpuBuf<E>> {
        expect_len("linear output gradient", dy.len(), g.n * g.out_features)?;
        expect_len("linear weight", w.len(), g.out_features * g.in_features)?;
        let mut dx = self.wrap(vec![E::zero(); g.n * g.in_features]);
        self.gemm(&GemmSpec::new(false, false, g.n, g.in_features, g.out_features), dy, w, &mut dx)?;
        Ok(dx)
    }

    fn linear_backward_weight(&self, x: &CpuBuf<E>, dy: &CpuBuf<E>, g: &LinearGeom) -> Result<CpuBuf<E>> {
        expect_len("linear input", x.len(), g.n * g.in_features)?;
        expect_len("linear output gradient", dy.len(), g.n * g.out_features)?;
        let mut dw = self.wrap(vec![E::zero(); g.out_features * g.in_features]);
        self.gemm(&GemmSpec::new(true, false, g.out_features, g.in_features, g.n), dy, x, &mut dw)?;
        Ok(dw)
    }

    fn linear_backward_bias(&self, dy: &CpuBuf<E>, g: &LinearGeom) -> Result<CpuBuf<E>> {
        expect_len("linear output gradient", dy.len(), g.n * g.out_features)?;
        let mut db = vec![E::zero(); g.out_features];
        for row in dy.chunks_exact(g.out_features) {
            db.iter_mut().zip(row).for_each(|(d, &v)| *d += v);
        }
        Ok(self.wrap(db))
    }
}
