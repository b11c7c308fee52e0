//! The GEMMs of training on the tensor cores (issue 15): when the run stores the operands of its
//! GEMMs rounded to bf16, fp16 or tf32 (`GpuBackend::gemm_operand_format`, declared by the
//! executor's storage rounding) on a device whose tensor cores take the format (8.0 or newer; fp16
//! from 7.5: `training_tc_input`), the convolutions' implicit GEMMs run on tensor-core tiles
//! (`ops::conv`'s GPU module, kernels/conv_tc.cu), and the linear layers' forward, data-gradient
//! and weight-gradient GEMMs on the same tiles (kernels/gemm_tc.cu, `sgemm_*_tc_*`: f32
//! accumulation and output, split-K as the SGEMM plans it) instead of the fp32 SGEMM.
//!
//! The operands hold values already rounded to the format (activations, activation gradients and
//! the weights' rounded copies), so the tiles' conversion of each operand as they gather it
//! (kernels/tc_gemm_tile.cuh) is exact: nothing is packed or padded beforehand. The activations
//! and their gradients may be stored in 16 bits (a bf16/fp16 run's, `GpuBuf::stored`): the tiles
//! read and write each operand in its own stored format, and a layer's bias is added as C is
//! stored, so a 16-bit output rounds once.

use super::cuda::GemmEngine;
use super::tc::TcInput;
use super::{GemmPlan, GemmSpec, GemmTile, SplitK};
use crate::error::Result;
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::precision::PrecisionOps;
use crate::precision::StoredFormat;

impl GpuBackend {
    /// The tensor cores' input format for the training GEMMs, when they run there.
    pub(crate) fn training_tc_input(&self) -> Option<TcInput> {
        TcInput::for_precision(self.gemm_operand_format()).filter(|input| input.runs_on(self.driver().compute_capability()))
    }

    /// A linear layer's GEMM: on the tensor-core tiles (64x64, K split as planned for them) when
    /// the run's operands take them, else on the fp32 SGEMM. A product of two transposed
    /// operands, which no layer makes, stays on the SGEMM.
    pub(crate) fn layer_gemm(&self, spec: &GemmSpec<f32>, a: &GpuBuf<f32>, b: &GpuBuf<f32>, c: &mut GpuBuf<f32>) -> Result<()> {
        self.layer_gemm_biased(spec, a, b, None, c)
    }

    /// `layer_gemm` plus `bias` (one f32 per column of C) added before C is stored. A, B and C
    /// may each be stored in 16 bits; the SGEMM, which reads f32 only, then works on f32 copies
    /// and C is stored from its f32 result.
    pub(crate) fn layer_gemm_biased(&self, spec: &GemmSpec<f32>, a: &GpuBuf<f32>, b: &GpuBuf<f32>, bias: Option<&GpuBuf<f32>>, c: &mut GpuBuf<f32>) -> Result<()> {
        let sms = self.driver().multiprocessor_count();
        match self.training_tc_input() {
            Some(input) if !(spec.trans_a && spec.trans_b) => {
                let tile = GemmTile::Small;
                let k_split = spec.k_split_on(tile, SplitK::Auto, sms);
                self.gemm_planned(GemmEngine::TensorCores(input), spec, GemmPlan { tile, k_split }, a, b, bias, c)
            }
            _ if [a, b, &*c].iter().all(|x| x.stored() == StoredFormat::F32) => self.gemm_planned(GemmEngine::Sgemm, spec, spec.plan(SplitK::Auto, sms), a, b, bias, c),
            _ => {
                let plan = spec.plan(SplitK::Auto, sms);
                let (wide_a, wide_b) = (self.widened(a)?, self.widened(b)?);
                let (a, b) = (wide_a.as_ref().unwrap_or(a), wide_b.as_ref().unwrap_or(b));
                match self.widened(c)? {
                    None => self.gemm_planned(GemmEngine::Sgemm, spec, plan, a, b, bias, c),
                    Some(mut wide_c) => {
                        self.gemm_planned(GemmEngine::Sgemm, spec, plan, a, b, bias, &mut wide_c)?;
                        *c = self.convert_stored(&wide_c, c.stored())?;
                        Ok(())
                    }
                }
            }
        }
    }
}
