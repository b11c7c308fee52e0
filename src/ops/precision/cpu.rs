//! Rounding on the CPU: `Precision::round` on every value. f64 values (the reference backend,
//! which runs fp32) round through f32 first.

use super::{check_loss_scale_args, LossScaleFactor, PrecisionOps, LOSS_SCALE_STATE_LEN};
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

    fn scale_by_loss_scale(&self, x: &mut CpuBuf<E>, state: &CpuBuf<E>, factor: LossScaleFactor) -> Result<()> {
        expect_len("scale_by_loss_scale", "loss scale state", state.len(), LOSS_SCALE_STATE_LEN)?;
        let alpha = E::from_f64(factor.of(state[0].to_f64()));
        update(x, |v| alpha * v);
        Ok(())
    }

    fn update_loss_scale(&self, state: &mut CpuBuf<E>, clip: &CpuBuf<E>, growth_interval: usize) -> Result<()> {
        check_loss_scale_args(state.len(), clip.len(), growth_interval)?;
        let (scale, good) = (state[0].to_f64(), state[1].to_f64() + 1.0);
        if !clip[0].to_f64().is_finite() {
            state[0] = E::from_f64(scale * 0.5);
            state[1] = E::zero();
            state[2] += E::one();
        } else if good == growth_interval as f64 {
            state[0] = E::from_f64(scale * 2.0);
            state[1] = E::zero();
        } else {
            state[1] = E::from_f64(good);
        }
        Ok(())
    }
}
