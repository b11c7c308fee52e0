//! GPU pooling launchers (`kernels/pool.cu`): one thread per output forwards, one per input
//! backwards.

use super::{AdaptivePoolGeom, PoolGeom, PoolOps};
use crate::device::Buffer;
use crate::error::Result;
use crate::device::driver::KernelArg;
use crate::gpu::grid::{int, per_element};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::check::expect_len;

/// Kernel arguments planes, H, W, KH, KW, sh, sw, ph, pw, OH, OW.
fn window_args(g: &PoolGeom) -> Result<Vec<KernelArg>> {
    int(g.x_len(), "the pooling input")?;
    int(g.y_len(), "the pooling output")?;
    Ok([g.n * g.c, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.oh, g.ow]
        .into_iter()
        .map(|v| KernelArg::I32(v as i32))
        .collect())
}

/// Kernel arguments planes, H, W, OH, OW.
fn adaptive_args(g: &AdaptivePoolGeom) -> Result<Vec<KernelArg>> {
    int(g.x_len(), "the pooling input")?;
    int(g.y_len(), "the pooling output")?;
    // The range arithmetic multiplies an index by the other axis' length.
    int(((g.h + 1) * g.oh + g.h).max((g.w + 1) * g.ow + g.w), "the adaptive pooling range arithmetic")?;
    Ok([g.n * g.c, g.h, g.w, g.oh, g.ow].into_iter().map(|v| KernelArg::I32(v as i32)).collect())
}

impl PoolOps<f32> for GpuBackend {
    fn max_pool2d_forward(&self, x: &GpuBuf<f32>, g: &PoolGeom) -> Result<(GpuBuf<f32>, GpuBuf<u32>)> {
        expect_len("max_pool2d", "input", x.len(), g.x_len())?;
        let y = self.alloc::<f32>(g.y_len())?;
        let indices = self.alloc::<u32>(g.y_len())?;
        let mut args = vec![x.arg(), y.arg(), indices.arg()];
        args.extend(window_args(g)?);
        self.launch("pool", "max_pool_forward", per_element(g.y_len(), "the pooling output")?, &args)?;
        Ok((y, indices))
    }

    fn max_pool2d_backward(&self, dy: &GpuBuf<f32>, indices: &GpuBuf<u32>, g: &PoolGeom) -> Result<GpuBuf<f32>> {
        expect_len("max_pool2d", "output gradient", dy.len(), g.y_len())?;
        expect_len("max_pool2d", "indices", indices.len(), g.y_len())?;
        let dx = self.alloc::<f32>(g.x_len())?;
        let mut args = vec![dy.arg(), indices.arg(), dx.arg()];
        args.extend(window_args(g)?);
        self.launch("pool", "max_pool_backward", per_element(g.x_len(), "the pooling input")?, &args)?;
        Ok(dx)
    }

    fn avg_pool2d_forward(&self, x: &GpuBuf<f32>, g: &PoolGeom) -> Result<GpuBuf<f32>> {
        expect_len("avg_pool2d", "input", x.len(), g.x_len())?;
        let y = self.alloc::<f32>(g.y_len())?;
        let mut args = vec![x.arg(), y.arg()];
        args.extend(window_args(g)?);
        args.push(KernelArg::I32(g.count_include_pad as i32));
        self.launch("pool", "avg_pool_forward", per_element(g.y_len(), "the pooling output")?, &args)?;
        Ok(y)
    }

    fn avg_pool2d_backward(&self, dy: &GpuBuf<f32>, g: &PoolGeom) -> Result<GpuBuf<f32>> {
        expect_len("avg_pool2d", "output gradient", dy.len(), g.y_len())?;
        let dx = self.alloc::<f32>(g.x_len())?;
        let mut args = vec![dy.arg(), dx.arg()];
        args.extend(window_args(g)?);
        args.push(KernelArg::I32(g.count_include_pad as i32));
        self.launch("pool", "avg_pool_backward", per_element(g.x_len(), "the pooling input")?, &args)?;
        Ok(dx)
    }

    fn adaptive_avg_pool2d_forward(&self, x: &GpuBuf<f32>, g: &AdaptivePoolGeom) -> Result<GpuBuf<f32>> {
        expect_len("adaptive_avg_pool2d", "input", x.len(), g.x_len())?;
        let y = self.alloc::<f32>(g.y_len())?;
        let mut args = vec![x.arg(), y.arg()];
        args.extend(adaptive_args(g)?);
        self.launch("pool", "adaptive_avg_pool_forward", per_element(g.y_len(), "the pooling output")?, &args)?;
        Ok(y)
    }

    fn adaptive_avg_pool2d_backward(&self, dy: &GpuBuf<f32>, g: &AdaptivePoolGeom) -> Result<GpuBuf<f32>> {
        expect_len("adaptive_avg_pool2d", "output gradient", dy.len(), g.y_len())?;
        let dx = self.alloc::<f32>(g.x_len())?;
        let mut args = vec![dy.arg(), dx.arg()];
        args.extend(adaptive_args(g)?);
        self.launch("pool", "adaptive_avg_pool_backward", per_element(g.x_len(), "the pooling input")?, &args)?;
        Ok(dx)
    }
}
