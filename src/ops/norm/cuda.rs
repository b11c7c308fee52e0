//! GPU BatchNorm2d: kernels/norm.cu. Training forward and backward run one block per channel
//! (statistics and gradients reduced in fp32 with warp shuffles and shared memory); eval is one
//! thread per element.

use super::{BatchNormGeom, BatchNormSaved, NormOps};
use crate::device::Buffer;
use crate::error::Result;
use crate::gpu::driver::KernelArg;
use crate::gpu::grid::{int, per_element, wide_reduction};
use crate::gpu::{GpuBackend, GpuBuf};

/// The (n, c, hw) kernel arguments, after checking the flat indices fit in 32 bits.
fn geometry_args(g: &BatchNormGeom) -> Result<[KernelArg; 3]> {
    int(g.len(), "the element count of the batch_norm2d input")?;
    Ok([KernelArg::I32(g.n as i32), KernelArg::I32(g.c as i32), KernelArg::I32(g.hw as i32)])
}

/// The per-channel operands of both forwards, named for the length check.
fn forward_per_channel<'a>(
    gamma: &GpuBuf<f32>,
    beta: &GpuBuf<f32>,
    running_mean: &GpuBuf<f32>,
    running_var: &GpuBuf<f32>,
) -> [(&'a str, usize); 4] {
    [
        ("gamma", gamma.len()),
        ("beta", beta.len()),
        ("running_mean", running_mean.len()),
        ("running_var", running_var.len()),
    ]
}

impl NormOps<f32> for GpuBackend {
    fn batch_norm2d_forward_train(
        &self,
        x: &GpuBuf<f32>,
        gamma: &GpuBuf<f32>,
        beta: &GpuBuf<f32>,
        running_mean: &mut GpuBuf<f32>,
        running_var: &mut GpuBuf<f32>,
        momentum: f64,
        g: &BatchNormGeom,
    ) -> Result<(GpuBuf<f32>, BatchNormSaved<GpuBuf<f32>>)> {
        const OP: &str = "batch_norm2d (training)";
        g.check_lengths(OP, &[x.len()], &forward_per_channel(gamma, beta, running_mean, running_var))?;
        g.check_trainable(OP)?;
        let y = self.alloc::<f32>(g.len())?;
        let saved = BatchNormSaved { mean: self.alloc::<f32>(g.c)?, invstd: self.alloc::<f32>(g.c)? };
        let mut args = vec![
            x.arg(),
            gamma.arg(),
            beta.arg(),
            y.arg(),
            saved.mean.arg(),
            saved.invstd.arg(),
            running_mean.arg(),
            running_var.arg(),
        ];
        args.extend(geometry_args(g)?);
        args.extend([KernelArg::F32(g.eps as f32), KernelArg::F32(momentum as f32)]);
        self.launch("norm", "bn_forward_train", wide_reduction(g.c, g.count())?, &args)?;
        Ok((y, saved))
    }

    fn batch_norm2d_forward_eval(
        &self,
        x: &GpuBuf<f32>,
        gamma: &GpuBuf<f32>,
        beta: &GpuBuf<f32>,
        running_mean: &GpuBuf<f32>,
        running_var: &GpuBuf<f32>,
        g: &BatchNormGeom,
    ) -> Result<GpuBuf<f32>> {
        const OP: &str = "batch_norm2d (eval)";
        g.check_lengths(OP, &[x.len()], &forward_per_channel(gamma, beta, running_mean, running_var))?;
        let total = int(g.len(), "the element count of the batch_norm2d input")?;
        let y = self.alloc::<f32>(g.len())?;
        let args = [
            x.arg(),
            gamma.arg(),
            beta.arg(),
            running_mean.arg(),
            running_var.arg(),
            y.arg(),
            KernelArg::I32(g.c as i32),
            KernelArg::I32(g.hw as i32),
            total,
            KernelArg::F32(g.eps as f32),
        ];
        self.launch("norm", "bn_forward_eval", per_element(g.len(), "bn_forward_eval")?, &args)?;
        Ok(y)
    }

    fn batch_norm2d_backward(
        &self,
        dy: &GpuBuf<f32>,
        x: &GpuBuf<f32>,
        gamma: &GpuBuf<f32>,
        saved: &BatchNormSaved<GpuBuf<f32>>,
        g: &BatchNormGeom,
    ) -> Result<(GpuBuf<f32>, GpuBuf<f32>, GpuBuf<f32>)> {
        const OP: &str = "batch_norm2d backward";
        let per_channel =
            [("gamma", gamma.len()), ("saved mean", saved.mean.len()), ("saved invstd", saved.invstd.len())];
        g.check_lengths(OP, &[x.len(), dy.len()], &per_channel)?;
        let dx = self.alloc::<f32>(g.len())?;
        let dgamma = self.alloc::<f32>(g.c)?;
        let dbeta = self.alloc::<f32>(g.c)?;
        let mut args = vec![
            dy.arg(),
            x.arg(),
            gamma.arg(),
            saved.mean.arg(),
            saved.invstd.arg(),
            dx.arg(),
            dgamma.arg(),
            dbeta.arg(),
        ];
        args.extend(geometry_args(g)?);
        self.launch("norm", "bn_backward", wide_reduction(g.c, g.count())?, &args)?;
        Ok((dx, dgamma, dbeta))
    }
}
