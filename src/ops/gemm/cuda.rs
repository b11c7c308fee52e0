//! GPU launcher of the tiled SGEMM (`kernels/gemm.cu`) and the bias steps of the layers built on
//! it (linear, im2col convolution).

use super::{GemmOps, GemmSpec};
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::gpu::driver::{KernelArg, LaunchConfig};
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
    let aligned = buf.ptr_at(offset) % 16 == 0 && ld % 4 == 0 && (batch == 1 || stride % 4 == 0);
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
        if spec.batch > MAX_GRID_YZ || spec.m.div_ceil(TILE) > MAX_GRID_YZ {
            return Err(Error::shape(format!(
                "gemm batch {} and rows {} must stay within {MAX_GRID_YZ} batches and {} rows",
                spec.batch,
                spec.m,
                MAX_GRID_YZ * TILE
            )));
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
        let cfg = LaunchConfig {
            grid: (spec.n.div_ceil(TILE) as u32, spec.m.div_ceil(TILE) as u32, spec.batch as u32),
            block: (GEMM_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        let args = [
            KernelArg::Ptr(a.ptr_at(spec.offset_a)),
            KernelArg::Ptr(b.ptr_at(spec.offset_b)),
            KernelArg::Ptr(c.ptr_at(spec.offset_c)),
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
            vectorizable(a, spec.offset_a, lda, spec.stride_a, spec.batch),
            vectorizable(b, spec.offset_b, ldb, spec.stride_b, spec.batch),
            vectorizable(c, spec.offset_c, ldc, spec.stride_c, spec.batch),
        ];
        self.launch("gemm", kernel, cfg, &args)
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
