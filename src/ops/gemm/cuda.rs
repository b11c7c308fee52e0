//! GPU launcher of the tiled SGEMM (`kernels/gemm.cu`) and of its tensor-core twins
//! (`kernels/gemm_tc.cu`, [`GemmEngine`]), unsplit or split-K as `GemmSpec::k_split` plans it for
//! the device's SM count; the same planning for the GEMMs other op families build on
//! the tiles (the convolution's, `kernels/conv.cu`); and the bias steps of the layers built on it
//! (linear, convolution).

use super::tc::TcInput;
use super::{GemmOps, GemmPlan, GemmSpec, GemmTile, KSplit, SplitK, MAX_GRID_YZ};
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::device::driver::{KernelArg, LaunchConfig};
use crate::gpu::grid::{int, per_element, reduction};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::precision::StoredFormat;

/// Threads per block of the GEMM kernels.
const GEMM_THREADS: u32 = 256;

/// Whether an operand can be read with 16-byte loads: its first matrix is 16-byte aligned and
/// every row and every batch matrix starts 4 floats apart.
pub(crate) fn vectorizable(buf: &GpuBuf<f32>, offset: usize, ld: usize, stride: usize, batch: usize) -> KernelArg {
    let aligned = buf.ptr_at(offset).is_multiple_of(16) && ld.is_multiple_of(4) && (batch == 1 || stride.is_multiple_of(4));
    KernelArg::I32(aligned as i32)
}

/// A stride or offset in elements as a kernel's `long long`; `what` names it in the error.
pub(crate) fn stride_arg(stride: usize, what: &str) -> Result<KernelArg> {
    i64::try_from(stride)
        .map(KernelArg::I64)
        .map_err(|_| Error::shape(format!("{what} stride {stride} is too large")))
}

/// The kernel name's transpose suffix: "nn", "nt", "tn" or "tt".
fn transposes(spec: &GemmSpec<f32>) -> &'static str {
    match (spec.trans_a, spec.trans_b) {
        (false, false) => "nn",
        (false, true) => "nt",
        (true, false) => "tn",
        (true, true) => "tt",
    }
}

/// The kernels that run a product: the fp32 SGEMM tiles (f32 operands), or the tensor-core tiles
/// of a format (64x64 only; nn, nt and tn: what the linear layers use, `ops::gemm::tc_train`),
/// whose kernels take the same arguments but a stored format after each of A, B and C (f32, bf16
/// or fp16: a 16-bit run's activations read and written in place) and C's bias.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GemmEngine {
    Sgemm,
    TensorCores(TcInput),
}

impl GemmEngine {
    /// A buffer as the kernels' pointer argument at element `offset`: the pointer alone for the
    /// SGEMM (which reads f32 only), with its stored format for the tensor-core tiles.
    fn operand(self, buf: &GpuBuf<f32>, offset: usize) -> Vec<KernelArg> {
        match self {
            GemmEngine::Sgemm => {
                assert_eq!(buf.stored(), StoredFormat::F32, "a 16-bit buffer passed to the fp32 SGEMM");
                vec![KernelArg::Ptr(buf.ptr_at(offset))]
            }
            GemmEngine::TensorCores(_) => vec![KernelArg::Ptr(buf.ptr_at(offset)), buf.format_arg()],
        }
    }
    /// The module and kernel of `spec`'s product on `tile`, split or not.
    fn kernel(self, spec: &GemmSpec<f32>, tile: GemmTile, split: bool) -> (&'static str, String) {
        let split = if split { "_split" } else { "" };
        match self {
            GemmEngine::Sgemm => ("gemm", format!("sgemm_{}{}{split}", transposes(spec), tile.suffix())),
            GemmEngine::TensorCores(input) => ("gemm_tc", format!("sgemm_{}_tc_{}{}{split}", transposes(spec), input.name(), tile.suffix())),
        }
    }
}

/// Whether partial products (m x n matrices packed one after another) take 16-byte stores.
fn vec_partial(spec: &GemmSpec<f32>, partial: &GpuBuf<f32>) -> KernelArg {
    KernelArg::I32((spec.n.is_multiple_of(4) && partial.ptr().is_multiple_of(16)) as i32)
}

/// Where a GEMM writes C[b]: element (r, c) of matrix b at `ptr` + (b * batch_stride + r * plane +
/// (c / plane) * image_stride + c % plane) elements. A row-major C is plane = n, image_stride = 0;
/// an NCHW convolution output is plane = OH * OW, image_stride = channels * plane. `vec`: the
/// unsplit kernel may store 4 consecutive columns at once (16-byte aligned, plane a multiple of 4).
/// C is stored as `format` (a 16-bit run's activations), and `bias` (a device pointer, 0 for
/// none) holds one f32 per column of each batch matrix (per row when `bias_rows`: an NCHW
/// convolution output's rows are its channels), added before C is stored.
pub(crate) struct GemmTarget {
    pub ptr: u64,
    pub batch_stride: usize,
    pub plane: usize,
    pub image_stride: usize,
    pub vec: bool,
    pub format: StoredFormat,
    pub bias: u64,
    pub bias_rows: bool,
}

impl GemmTarget {
    /// The packed row-major C of `spec` at `ptr`.
    pub fn row_major(ptr: u64, spec: &GemmSpec<f32>) -> GemmTarget {
        let vec = ptr.is_multiple_of(16) && spec.n.is_multiple_of(4) && (spec.batch == 1 || spec.stride_c.is_multiple_of(4));
        GemmTarget { ptr, batch_stride: spec.stride_c, plane: spec.n, image_stride: 0, vec, format: StoredFormat::F32, bias: 0, bias_rows: false }
    }
}

/// A grid of `tile`s of C, `z` deep.
pub(crate) fn tile_grid(spec: &GemmSpec<f32>, tile: GemmTile, z: usize) -> LaunchConfig {
    LaunchConfig {
        grid: (spec.n.div_ceil(tile.cols()) as u32, spec.m.div_ceil(tile.rows()) as u32, z as u32),
        block: (GEMM_THREADS, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl GemmOps<f32> for GpuBackend {
    fn gemm(&self, spec: &GemmSpec<f32>, a: &GpuBuf<f32>, b: &GpuBuf<f32>, c: &mut GpuBuf<f32>) -> Result<()> {
        self.gemm_split(spec, SplitK::Auto, a, b, c)
    }

    fn gemm_split(&self, spec: &GemmSpec<f32>, split: SplitK, a: &GpuBuf<f32>, b: &GpuBuf<f32>, c: &mut GpuBuf<f32>) -> Result<()> {
        let plan = spec.plan(split, self.driver().multiprocessor_count());
        self.gemm_planned(GemmEngine::Sgemm, spec, plan, a, b, None, c)
    }

    fn gemm_on_tile(&self, spec: &GemmSpec<f32>, tile: GemmTile, split: SplitK, a: &GpuBuf<f32>, b: &GpuBuf<f32>, c: &mut GpuBuf<f32>) -> Result<()> {
        let k_split = spec.k_split_on(tile, split, self.driver().multiprocessor_count());
        self.gemm_planned(GemmEngine::Sgemm, spec, GemmPlan { tile, k_split }, a, b, None, c)
    }
}

/// The error for a product with more rows than one launch's grid covers, or None.
fn too_many_rows(what: &str, spec: &GemmSpec<f32>) -> Option<Error> {
    let edge = GemmTile::Small.rows();
    (spec.m.div_ceil(edge) > MAX_GRID_YZ)
        .then(|| Error::shape(format!("{what} has {} rows, more than the {} one launch covers", spec.m, MAX_GRID_YZ * edge)))
}

impl GpuBackend {
    /// `spec`'s product on `engine` as `plan` says, plus `bias` (one f32 per column of C) when
    /// given: fused into the tensor-core tiles' or the split-K reduction's store, else added after.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn gemm_planned(
        &self,
        engine: GemmEngine,
        spec: &GemmSpec<f32>,
        plan: GemmPlan,
        a: &GpuBuf<f32>,
        b: &GpuBuf<f32>,
        bias: Option<&GpuBuf<f32>>,
        c: &mut GpuBuf<f32>,
    ) -> Result<()> {
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
        if let Some(e) = too_many_rows("gemm", spec) {
            return Err(e);
        }
        if let Some(bias) = bias {
            if bias.len() < spec.n || spec.batch != 1 {
                return Err(Error::shape(format!("gemm bias has {} elements for {} columns of a batch of {}", bias.len(), spec.n, spec.batch)));
            }
        }
        match (plan.k_split, engine, bias) {
            (KSplit { splits: 1, .. }, GemmEngine::Sgemm, Some(bias)) => {
                self.gemm_unsplit(engine, spec, plan.tile, a, b, None, c)?;
                self.add_bias(c, bias, spec.n, 1)
            }
            (KSplit { splits: 1, .. }, ..) => self.gemm_unsplit(engine, spec, plan.tile, a, b, bias, c),
            _ => self.gemm_split_k(engine, spec, plan, a, b, bias, c),
        }
    }

    /// One launch of the tiled kernel per up to 65535 batch matrices (the grid's z limit); the
    /// tensor-core tiles add `bias` as they store C.
    #[allow(clippy::too_many_arguments)]
    fn gemm_unsplit(&self, engine: GemmEngine, spec: &GemmSpec<f32>, tile: GemmTile, a: &GpuBuf<f32>, b: &GpuBuf<f32>, bias: Option<&GpuBuf<f32>>, c: &mut GpuBuf<f32>) -> Result<()> {
        let lda = if spec.trans_a { spec.m } else { spec.k };
        let ldb = if spec.trans_b { spec.k } else { spec.n };
        let ldc = spec.n;
        let (module, kernel) = engine.kernel(spec, tile, false);
        for first in (0..spec.batch).step_by(MAX_GRID_YZ) {
            let batch = MAX_GRID_YZ.min(spec.batch - first);
            let (off_a, off_b, off_c) =
                (spec.offset_a + first * spec.stride_a, spec.offset_b + first * spec.stride_b, spec.offset_c + first * spec.stride_c);
            let mut args = engine.operand(a, off_a);
            args.extend(engine.operand(b, off_b));
            args.extend(engine.operand(c, off_c));
            if let GemmEngine::TensorCores(_) = engine {
                args.push(KernelArg::Ptr(bias.map_or(0, |b| b.ptr())));
            }
            args.extend([
                int(spec.m, "gemm m")?,
                int(spec.n, "gemm n")?,
                int(spec.k, "gemm k")?,
                int(lda, "gemm lda")?,
                int(ldb, "gemm ldb")?,
                int(ldc, "gemm ldc")?,
                stride_arg(spec.stride_a, "gemm A")?,
                stride_arg(spec.stride_b, "gemm B")?,
                stride_arg(spec.stride_c, "gemm C")?,
                KernelArg::F32(spec.alpha),
                KernelArg::F32(spec.beta),
                vectorizable(a, off_a, lda, spec.stride_a, batch),
                vectorizable(b, off_b, ldb, spec.stride_b, batch),
                vectorizable(c, off_c, ldc, spec.stride_c, batch),
            ]);
            self.launch(module, &kernel, tile_grid(spec, tile, batch), &args)?;
        }
        Ok(())
    }

    /// Split-K: every (batch matrix, K-slice) pair's partial product into a scratch buffer of
    /// splits x batch x m x n floats (at most `SPLIT_K_SCRATCH_BYTES`), then one reduction over
    /// the slices in order that applies alpha and beta. The plan's K split keeps batch x splits
    /// within the grid's z limit, so each pass is one launch.
    #[allow(clippy::too_many_arguments)]
    fn gemm_split_k(&self, engine: GemmEngine, spec: &GemmSpec<f32>, plan: GemmPlan, a: &GpuBuf<f32>, b: &GpuBuf<f32>, bias: Option<&GpuBuf<f32>>, c: &mut GpuBuf<f32>) -> Result<()> {
        let GemmPlan { tile, k_split: KSplit { splits, k_per_split } } = plan;
        let lda = if spec.trans_a { spec.m } else { spec.k };
        let ldb = if spec.trans_b { spec.k } else { spec.n };
        let partial = self.alloc::<f32>(splits * spec.batch * spec.m * spec.n)?;
        let (off_a, off_b) = (spec.offset_a, spec.offset_b);
        // A slice starts k_per_split (a multiple of 4) elements or rows further on, so the first
        // matrix's alignment holds for every slice; each partial matrix starts m*n floats apart.
        let mut args = engine.operand(a, off_a);
        args.extend(engine.operand(b, off_b));
        args.extend([
            partial.arg(),
            int(spec.m, "gemm m")?,
            int(spec.n, "gemm n")?,
            int(spec.k, "gemm k")?,
            int(lda, "gemm lda")?,
            int(ldb, "gemm ldb")?,
            stride_arg(spec.stride_a, "gemm A")?,
            stride_arg(spec.stride_b, "gemm B")?,
            int(splits, "gemm K-splits")?,
            int(k_per_split, "gemm K per split")?,
            vectorizable(a, off_a, lda, spec.stride_a, spec.batch),
            vectorizable(b, off_b, ldb, spec.stride_b, spec.batch),
            vec_partial(spec, &partial),
        ]);
        let (module, kernel) = engine.kernel(spec, tile, true);
        self.launch(module, &kernel, tile_grid(spec, tile, spec.batch * splits), &args)?;
        let target = GemmTarget { format: c.stored(), bias: bias.map_or(0, |b| b.ptr()), ..GemmTarget::row_major(c.ptr_at(spec.offset_c), spec) };
        self.reduce_splits(&partial, spec, splits, &target)
    }

    /// C = alpha * (the split partial products summed in split order) + the target's bias + beta
    /// * C, stored where and as `target` says.
    pub(crate) fn reduce_splits(&self, partial: &GpuBuf<f32>, spec: &GemmSpec<f32>, splits: usize, target: &GemmTarget) -> Result<()> {
        let mn = spec.m * spec.n;
        let total = spec.batch * mn;
        let args = [
            partial.arg(),
            KernelArg::Ptr(target.ptr),
            KernelArg::I32(target.format.code()),
            KernelArg::Ptr(target.bias),
            KernelArg::I32(target.bias_rows as i32),
            int(spec.n, "gemm n")?,
            int(mn, "a gemm output matrix")?,
            int(splits, "gemm K-splits")?,
            int(total, "the gemm output")?,
            stride_arg(target.batch_stride, "gemm C")?,
            int(target.plane, "a gemm output plane")?,
            stride_arg(target.image_stride, "gemm C image")?,
            KernelArg::F32(spec.alpha),
            KernelArg::F32(spec.beta),
        ];
        self.launch("gemm", "splitk_reduce", per_element(total, "the gemm output")?, &args)
    }

    /// Launches a GEMM kernel of another op family built on `kernels/gemm_tile.cuh` that begins
    /// with the arguments of conv.cu's `CONV_GEMM_PARAMS` (C = op(A) op(B) for `spec`'s m, n, k
    /// and batch, alpha 1, beta 0), followed by its own `operands`: `kernel` on the plan's tile
    /// (`kernel` with the tile's suffix) and with K split as it says, the partial products then
    /// summed into `target`.
    pub(crate) fn launch_tiled_gemm(
        &self,
        module: &str,
        kernel: &str,
        spec: &GemmSpec<f32>,
        plan: GemmPlan,
        target: &GemmTarget,
        operands: &[KernelArg],
    ) -> Result<()> {
        if spec.m == 0 || spec.n == 0 || spec.batch == 0 {
            return Ok(());
        }
        if let Some(e) = too_many_rows(kernel, spec) {
            return Err(e);
        }
        let GemmPlan { tile, k_split: KSplit { splits, k_per_split } } = plan;
        let partial = if splits > 1 { Some(self.alloc::<f32>(splits * spec.batch * spec.m * spec.n)?) } else { None };
        let vec_out = match &partial {
            Some(p) => vec_partial(spec, p),
            None => KernelArg::I32(target.vec as i32),
        };
        let mut args = vec![
            KernelArg::Ptr(target.ptr),
            KernelArg::I32(target.format.code()),
            KernelArg::Ptr(target.bias),
            KernelArg::Ptr(partial.as_ref().map_or(0, |p| p.ptr())),
            int(spec.m, "gemm m")?,
            int(spec.n, "gemm n")?,
            int(spec.k, "gemm k")?,
            int(splits, "gemm K-splits")?,
            int(k_per_split, "gemm K per split")?,
            stride_arg(target.batch_stride, "gemm C")?,
            int(target.plane, "a gemm output plane")?,
            stride_arg(target.image_stride, "gemm C image")?,
            vec_out,
        ];
        args.extend_from_slice(operands);
        self.launch(module, &format!("{kernel}{}", tile.suffix()), tile_grid(spec, tile, spec.batch * splits), &args)?;
        match partial {
            Some(p) => self.reduce_splits(&p, spec, splits, target),
            None => Ok(()),
        }
    }

    /// y[(o * channels + c) * inner + i] += bias[c] for a y of outer x channels x inner elements.
    pub(crate) fn add_bias(&self, y: &mut GpuBuf<f32>, bias: &GpuBuf<f32>, channels: usize, inner: usize) -> Result<()> {
        let cfg = per_element(y.len(), "the biased output")?;
        let args = [y.arg(), bias.arg(), int(channels, "bias channels")?, int(inner, "bias inner size")?, int(y.len(), "the output")?];
        self.launch("gemm", "add_bias", cfg, &args)
    }

    /// The bias gradient [channels]: dy (outer x channels x inner, any stored format) summed over
    /// outer and inner.
    pub(crate) fn bias_grad(&self, dy: &GpuBuf<f32>, outer: usize, channels: usize, inner: usize) -> Result<GpuBuf<f32>> {
        let db = self.alloc::<f32>(channels)?;
        let cfg = reduction(channels, outer * inner)?;
        int(outer * inner, "the positions summed per bias channel")?;
        let args = [dy.stored_arg(), dy.format_arg(), db.arg(), int(outer, "bias outer size")?, int(channels, "bias channels")?, int(inner, "bias inner size")?];
        self.launch("gemm", "bias_grad", cfg, &args)?;
        Ok(db)
    }
}
