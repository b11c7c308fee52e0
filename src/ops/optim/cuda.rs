//! GPU optimiser steps: kernels/optim.cu, one fused pass over each parameter tensor.

use super::{AdamParams, OptimOps, SgdParams};
use crate::device::Buffer;
use crate::error::Result;
use crate::device::driver::KernelArg;
use crate::gpu::grid::{int, per_element};
use crate::gpu::{GpuBackend, GpuBuf};

impl OptimOps<f32> for GpuBackend {
    fn sgd_step(
        &self,
        param: &mut GpuBuf<f32>,
        grad: &GpuBuf<f32>,
        momentum_buf: &mut GpuBuf<f32>,
        h: &SgdParams,
        first_step: bool,
    ) -> Result<()> {
        h.check_step(param.len(), grad.len(), momentum_buf.len())?;
        let use_momentum = h.momentum != 0.0;
        let n = int(param.len(), "sgd")?;
        let args = [
            param.arg(),
            grad.arg(),
            momentum_buf.arg(),
            KernelArg::F32(h.lr as f32),
            KernelArg::F32(h.momentum as f32),
            KernelArg::F32(h.dampening as f32),
            KernelArg::F32(h.weight_decay as f32),
            KernelArg::I32(use_momentum as i32),
            KernelArg::I32(h.nesterov as i32),
            KernelArg::I32(first_step as i32),
            n,
        ];
        self.launch("optim", "sgd_step", per_element(param.len(), "sgd_step")?, &args)
    }

    fn adam_step(
        &self,
        param: &mut GpuBuf<f32>,
        grad: &GpuBuf<f32>,
        m: &mut GpuBuf<f32>,
        v: &mut GpuBuf<f32>,
        h: &AdamParams,
        step: u64,
    ) -> Result<()> {
        h.check_step(step, param.len(), grad.len(), m.len(), v.len())?;
        let n = int(param.len(), "adam")?;
        // Bias corrections in f64: beta^t for large t underflows gracefully to 0 there.
        let t = step as f64;
        let bias1 = 1.0 - h.beta1.powf(t);
        let bias2 = 1.0 - h.beta2.powf(t);
        let args = [
            param.arg(),
            grad.arg(),
            m.arg(),
            v.arg(),
            KernelArg::F32(h.lr as f32),
            KernelArg::F32(h.beta1 as f32),
            KernelArg::F32(h.beta2 as f32),
            KernelArg::F32(h.eps as f32),
            KernelArg::F32(h.weight_decay as f32),
            KernelArg::I32(h.decoupled as i32),
            KernelArg::F32(bias1 as f32),
            KernelArg::F32(bias2 as f32),
            n,
        ];
        self.launch("optim", "adam_step", per_element(param.len(), "adam_step")?, &args)
    }
}
