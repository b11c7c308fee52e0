//! GPU launcher of the tiled SGEMM (`kernels/gemm.cu`) and the bias steps of the layers built on
//! it (linear, im2col convolution).

use super::{GemmOps, GemmSpec};
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::device::driver::{KernelArg, LaunchConfig};
use crate::gpu::grid::{int, per_element, reduction};
use crate::gpu::{GpuBackend, GpuBuf};

/// The kernel's block tile (rows and columns of C) and threads per block.
const TILE: usize = 64;
const GEMM_THREADS: u32 = 256;
/// The most blocks a launch may have along grid y and z.
const MAX_GRID_YZ: usize = 65535;

/// Whether an operand can be read with 16-byte loads: its first matrix is 16-byte aligned and
/// every row and every batch matrix starts 4 floats apart.
fn vectorizable(buf: &GpuBuf<f32>, offset: usize, ld: usize, stride: usize, batch: usize) -> KernelArg {
    let aligned = buf.ptr_at(offset).is_multiple_of(16) && ld.is_multiple_of(4) && (batch == 1 || stride.is_multiple_of(4));
    KernelArg::I32(aligned as i32)
}

fn stride_arg(stride: usize, what: &str) -> Result<KernelArg> {
    i64::try_from(stride)
        .map(KernelArg::I64)
        .map_err(|_| Error::shape(format!("gemm {what} stride {stride} is too large")))
}

impl GemmOps<f32> for GpuBackend {
    fn gemm(&self, spec: &GemmSpec<f32>, a: &GpuBuf<f32>, b: &GpuBuf<f32>, c: &mut GpuBuf<f32>) -> Result<()> {
        let (need_a, need_b, need_c) = spec.required_lens();
        for (name, have, need) in [("A", a.len(), need_a), ("B", b.len(), need_b), ("C", c.len(), need_c)] {
            if have < need {
                return Err(Error::shape(format!(
                    "gemm operand {name} has {have} elements but the spec ({}x{}x{}, batch {}) needs {need}",
                    spec.m, spec.n, spec.k, spec.batch
                )));
            }
        }
        if spec.m == 0 || spec.n == 0 || spec.batch == 0 {
            return Ok(());
        }
        if spec.m.div_ceil(TILE) > MAX_GRID_YZ {
            return Err(Error::shape(format!("gemm has {} rows, more than the {} one launch covers", spec.m, MAX_GRID_YZ * TILE)));
        }
        let lda = if spec.trans_a { spec.m } else { spec.k };
        let ldb = if spec.trans_b { spec.k } else { spec.n };
        let ldc = spec.n;
        let kernel = match (spec.trans_a, spec.trans_b) {
            (false, false) => "sgemm_nn",
            (false, true) => "sgemm_nt",
            (true, false) => "sgemm_tn",
            (true, true) => "sgemm_tt",
        };
        // The batch is the grid's z axis, so batches beyond its limit take several launches.
        for first in (0..spec.batch).step_by(MAX_GRID_YZ) {
            let batch = MAX_GRID_YZ.min(spec.batch - first);
            let (off_a, off_b, off_c) =
                (spec.offset_a + first * spec.stride_a, spec.offset_b + first * spec.stride_b, spec.offset_c + first * spec.stride_c);
            let cfg = LaunchConfig {
                grid: (spec.n.div_ceil(TILE) as u32, spec.m.div_ceil(TILE) as u32, batch as u32),
                block: (GEMM_THREADS, 1, 1),
                shared_mem_bytes: 0,
            };
            let args = [
                KernelArg::Ptr(a.ptr_at(off_a)),
                KernelArg::Ptr(b.ptr_at(off_b)),
                KernelArg::Ptr(c.ptr_at(off_c)),
                int(spec.m, "gemm m")?,
                int(spec.n, "gemm n")?,
                int(spec.k, "gemm k")?,
                int(lda, "gemm lda")?,
                int(ldb, "gemm ldb")?,
                int(ldc, "gemm ldc")?,
                stride_arg(spec.stride_a, "A")?,
                stride_arg(spec.stride_b, "B")?,
                stride_arg(spec.stride_c, "C")?,
                KernelArg::F32(spec.alpha),
                KernelArg::F32(spec.beta),
                vectorizable(a, off_a, lda, spec.stride_a, batch),
                vectorizable(b, off_b, ldb, spec.stride_b, batch),
                vectorizable(c, off_c, ldc, spec.stride_c, batch),
            ];
            self.launch("gemm", kernel, cfg, &args)?;
        }
        Ok(())
    }
}

impl GpuBackend {
    /// y[(o * channels + c) * inner + i] += bias[c] for a y of outer x channels x inner elements.
    pub(crate) fn add_bias(&self, y: &mut GpuBuf<f32>, bias: &GpuBuf<f32>, channels: usize, inner: usize) -> Result<()> {
        let cfg = per_element(y.len(), "the biased output")?;
        let args = [y.arg(), bias.arg(), int(channels, "bias channels")?, int(inner, "bias inner size")?, int(y.len(), "the output")?];
        self.launch("gemm", "add_bias", cfg, &args)
    }

    /// The bias gradient [channels]: dy (outer x channels x inner) summed over outer and inner.
    pub(crate) fn bias_grad(&self, dy: &GpuBuf<f32>, outer: usize, channels: usize, inner: usize) -> Result<GpuBuf<f32>> {
        let db = self.alloc::<f32>(channels)?;
        let cfg = reduction(channels, outer * inner)?;
        int(outer * inner, "the positions summed per bias channel")?;
        let args = [dy.arg(), db.arg(), int(outer, "bias outer size")?, int(channels, "bias channels")?, int(inner, "bias inner size")?];
        self.launch("gemm", "bias_grad", cfg, &args)?;
        Ok(db)
    }
}
