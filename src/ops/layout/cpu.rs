//! The host conversions: `cpu::layout`'s reorderings.

use super::{check_images, LayoutOps};
use crate::cpu::layout::{nchw_to_nhwc, nhwc_to_nchw};
use crate::cpu::{CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::Result;

impl<E: Element> LayoutOps<E> for CpuBackend {
    fn to_channels_last(&self, x: &CpuBuf<E>, n: usize, c: usize, hw: usize) -> Result<CpuBuf<E>> {
        check_images("to_channels_last", x.len(), n, c, hw)?;
        Ok(self.wrap(nchw_to_nhwc(x, c, hw)))
    }
    fn to_channels_first(&self, x: &CpuBuf<E>, n: usize, c: usize, hw: usize) -> Result<CpuBuf<E>> {
        check_images("to_channels_first", x.len(), n, c, hw)?;
        Ok(self.wrap(nhwc_to_nchw(x, c, hw)))
    }
}
