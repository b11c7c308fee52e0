//! Rounding on the CPU: `Precision::round` on every value. f64 values (the reference backend,
//! which runs fp32) round through f32 first.

use super::PrecisionOps;
use crate::cpu::par::{update, CHUNK};
use crate::cpu::{CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::Result;
use crate::ops::check::expect_len;
use crate::precision::Precision;
use rayon::prelude::*;

fn round<E: Element>(precision: Precision, v: E) -> E {
    E::from_f64(precision.round(v.to_f64() as f32) as f64)
}

impl<E: Element> PrecisionOps<E> for CpuBackend {
    fn round_in_place(&self, precision: Precision, x: &mut CpuBuf<E>) -> Result<()> {
        if precision != Precision::Fp32 {
            update(x, |v| round(precision, v));
        }
        Ok(())
    }

    fn round_into(&self, precision: Precision, src: &CpuBuf<E>, dst: &mut CpuBuf<E>) -> Result<()> {
        expect_len("round_into", "dst", dst.len(), src.len())?;
        dst.par_chunks_mut(CHUNK).zip(src.par_chunks(CHUNK)).for_each(|(dc, sc)| {
            for (d, &s) in dc.iter_mut().zip(sc) {
                *d = if precision == Precision::Fp32 { s } else { round(precision, s) };
            }
        });
        Ok(())
    }
}
