//! GPU fully connected layer: the tiled SGEMM, or the tensor cores at bf16/fp16
//! (`ops::gemm::tc_train`), plus the shared bias kernels. x, y, dy and dx may be stored in 16 bits
//! (a bf16/fp16 run's activations): y and dx take the stored format of x and dy, the weight, its
//! gradient and the bias stay f32, and the forward's bias is added as y is stored (one rounding).

use super::{LinearGeom, LinearOps};
use crate::device::Buffer;
use crate::error::Result;
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::check::expect_len;
use crate::ops::gemm::GemmSpec;

impl LinearOps<f32> for GpuBackend {
    fn linear_forward(&self, x: &GpuBuf<f32>, w: &GpuBuf<f32>, bias: Option<&GpuBuf<f32>>, g: &LinearGeom) -> Result<GpuBuf<f32>> {
        expect_len("linear", "input", x.len(), g.n * g.in_features)?;
        expect_len("linear", "weight", w.len(), g.out_features * g.in_features)?;
        if let Some(b) = bias {
            expect_len("linear", "bias", b.len(), g.out_features)?;
        }
        // y [N, out] = x [N, in] x W^T, W stored [out, in].
        let mut y = self.alloc_stored(g.n * g.out_features, x.stored())?;
        self.layer_gemm_biased(&GemmSpec::new(false, true, g.n, g.out_features, g.in_features), x, w, bias, &mut y)?;
        Ok(y)
    }

    fn linear_backward_data(&self, dy: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &LinearGeom) -> Result<GpuBuf<f32>> {
        expect_len("linear", "output gradient", dy.len(), g.n * g.out_features)?;
        expect_len("linear", "weight", w.len(), g.out_features * g.in_features)?;
        let mut dx = self.alloc_stored(g.n * g.in_features, dy.stored())?;
        self.layer_gemm(&GemmSpec::new(false, false, g.n, g.in_features, g.out_features), dy, w, &mut dx)?;
        Ok(dx)
    }

    fn linear_backward_weight(&self, x: &GpuBuf<f32>, dy: &GpuBuf<f32>, g: &LinearGeom) -> Result<GpuBuf<f32>> {
        expect_len("linear", "input", x.len(), g.n * g.in_features)?;
        expect_len("linear", "output gradient", dy.len(), g.n * g.out_features)?;
        // dW [out, in] = dy^T x, dy stored [N, out].
        let mut dw = self.alloc::<f32>(g.out_features * g.in_features)?;
        self.layer_gemm(&GemmSpec::new(true, false, g.out_features, g.in_features, g.n), dy, x, &mut dw)?;
        Ok(dw)
    }

    fn linear_backward_bias(&self, dy: &GpuBuf<f32>, g: &LinearGeom) -> Result<GpuBuf<f32>> {
        expect_len("linear", "output gradient", dy.len(), g.n * g.out_features)?;
        self.bias_grad(dy, g.n, g.out_features, 1)
    }
}
