//! GPU convolution: implicit GEMMs on the tiled SGEMM, which read the input's im2col matrix on
//! the fly and NCHW activations in place, with no column buffer in any pass: forward (the bias
//! added as y is stored), weight gradient, the data gradient of a stride-1 convolution as dy
//! convolved with the reversed window, and a strided one's by stride phase (each phase of dx
//! summing only the taps that reach it); groups (and phases) as the GEMM batch; and the dedicated
//! depthwise kernels. The GEMMs and the depthwise kernels read x and dy in their stored formats
//! and write y in x's, dx in dy's (a bf16/fp16 run's 16-bit activations in place); the weights
//! and dW are f32. When the run's GEMM operands are bf16, fp16 or tf32 on a device whose tensor
//! cores take them (8.0+; fp16 from 7.5)
//! (`training_tc_input`), the same GEMMs run on the tensor cores (kernels/conv_tc.cu: the same
//! operands, arguments and grids on tensor-core tiles), pointwise convolutions included.
//! Channels-last (NHWC) tensors take their own GEMMs, reading them in place ([`nhwc`]).

mod nhwc;

use super::{depthwise_nhwc, ConvGeom, ConvOps};
use crate::shape::Layout;
use crate::device::Buffer;
use crate::error::{Error, Result};
use crate::device::driver::{KernelArg, LaunchConfig};
use crate::gpu::grid::{int, per_element, pointers_aligned16, reduction};
use crate::gpu::{GpuBackend, GpuBuf};
use crate::ops::check::expect_len;
use crate::ops::gemm::cuda::{stride_arg, tile_grid, vectorizable, GemmTarget};
use crate::ops::gemm::{GemmPlan, GemmSpec, GemmTile, SplitK};

/// The window geometry as kernel `int`s, in the order the callers destructure it into each
/// kernel's own argument order.
fn window_args(g: &ConvGeom) -> Result<[KernelArg; 12]> {
    Ok([
        int(g.kh, "conv kernel height")?,
        int(g.kw, "conv kernel width")?,
        int(g.sh, "conv stride")?,
        int(g.sw, "conv stride")?,
        int(g.ph, "conv padding")?,
        int(g.pw, "conv padding")?,
        int(g.dh, "conv dilation")?,
        int(g.dw, "conv dilation")?,
        int(g.oh, "conv output height")?,
        int(g.ow, "conv output width")?,
        int(g.h, "conv input height")?,
        int(g.w, "conv input width")?,
    ])
}

/// The geometry of the stride-phase kernels (pack_phase_weights, the phase GEMMs of either
/// layout): H, W, KH, KW, sh, sw, ph, pw, dh, dw, OH, OW.
fn phase_geometry_args(g: &ConvGeom) -> Result<[KernelArg; 12]> {
    let [kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, h, w] = window_args(g)?;
    Ok([h, w, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow])
}

/// The im2col operand of the convolution GEMMs (`CONV_WINDOW_PARAMS` in kernels/conv.cu): H, W,
/// KH, KW, sh, sw, ph, pw, dh, dw, OW, OH * OW and the input's image stride.
fn im2col_operand_args(g: &ConvGeom) -> Result<Vec<KernelArg>> {
    let [kh, kw, sh, sw, ph, pw, dh, dw, _, ow, h, w] = window_args(g)?;
    Ok(vec![h, w, kh, kw, sh, sw, ph, pw, dh, dw, ow, int(g.oh * g.ow, "conv output plane")?, image_stride(g.c_in * g.h * g.w)?])
}

fn image_stride(elements: usize) -> Result<KernelArg> {
    stride_arg(elements, "conv image")
}

/// Whether an NCHW tensor at `ptr` with `plane`-pixel planes takes 16-byte accesses as an
/// image-major matrix: 4 consecutive columns then stay in one plane, and every plane, image and
/// group starts 16-byte aligned.
fn image_major_vec(ptr: u64, plane: usize) -> bool {
    ptr.is_multiple_of(16) && plane.is_multiple_of(4)
}

/// The GEMM of a pointwise convolution (1x1 kernel, stride 1, no padding, one group): the NCHW
/// input already is the image-major [C_in, n * H*W] matrix im2col would build, so forward (C_out
/// rows) and backward data (`transpose`d weight, C_in rows) read it (or dy) in place as one
/// GEMM with the weight (kernels/conv_gemm.cuh, conv_pointwise_*), with no gather arithmetic.
fn pointwise_spec(g: &ConvGeom, transpose: bool) -> Option<GemmSpec<f32>> {
    let pointwise = g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0 && g.groups == 1;
    if !pointwise {
        return None;
    }
    let (rows, inner) = if transpose { (g.c_in, g.c_out) } else { (g.c_out, g.c_in) };
    Some(GemmSpec::new(transpose, false, rows, g.n * g.h * g.w, inner))
}

/// Rows of one group's weight matrix (C_out / groups) and its columns, the GEMMs' inner size
/// (C_in / groups * KH * KW).
fn group_gemm_dims(g: &ConvGeom) -> (usize, usize) {
    (g.c_out_per_group(), g.c_in_per_group() * g.kh * g.kw)
}

/// The NCHW tensor `t` of `channels` channels of `plane`-pixel planes as the GEMMs' image-major
/// [channels / groups, images * plane] matrices, one per group, in its stored format; plus
/// `bias` (one f32 per channel: per row) when given.
fn nchw_target(t: &GpuBuf<f32>, g: &ConvGeom, channels: usize, plane: usize, bias: Option<&GpuBuf<f32>>) -> GemmTarget {
    let group = channels / g.groups * plane;
    GemmTarget {
        ptr: t.ptr(),
        batch_stride: group,
        plane,
        image_stride: channels * plane,
        vec: image_major_vec(t.ptr(), plane),
        format: t.stored(),
        bias: bias.map_or(0, |b| b.ptr()),
        bias_rows: true,
    }
}

/// A product of `spec`'s shape (batch = groups), alpha 1, beta 0.
fn group_spec(g: &ConvGeom, m: usize, n: usize, k: usize) -> GemmSpec<f32> {
    GemmSpec { batch: g.groups, ..GemmSpec::new(false, false, m, n, k) }
}

/// The GPU forward GEMM: y_g [C_out/g, n * OH * OW] = W_g x im2col(x)_g.
pub(crate) fn forward_spec(g: &ConvGeom) -> GemmSpec<f32> {
    let (cout_g, k) = group_gemm_dims(g);
    group_spec(g, cout_g, g.n * g.oh * g.ow, k)
}

/// Stride-1 data gradient: dx_g [C_in/g, n * H * W] = flipped W_g^T x im2col(dy)_g.
fn data_direct_spec(g: &ConvGeom) -> GemmSpec<f32> {
    group_spec(g, g.c_in_per_group(), g.n * g.h * g.w, g.c_out_per_group() * g.kh * g.kw)
}

/// Strided data gradient as one batch of groups x phases, each phase at the largest's size:
/// dx_phase [C_in/g, n * phase plane] = phase weights x the phase's gather of dy, K at most
/// C_out/g times the taps of the phase with the most (kernels/conv.cu, conv_data_phase_gemm).
/// The first phase (0, 0) has the largest plane, ceil(H / sh) x ceil(W / sw).
fn data_phase_spec(g: &ConvGeom) -> GemmSpec<f32> {
    let phase_taps = |k: usize, s: usize| k.div_ceil(s);
    let k = g.c_out_per_group() * phase_taps(g.kh, g.sh) * phase_taps(g.kw, g.sw);
    let plane = g.h.div_ceil(g.sh) * g.w.div_ceil(g.sw);
    GemmSpec { batch: g.groups * g.sh * g.sw, ..GemmSpec::new(false, false, g.c_in_per_group(), g.n * plane, k) }
}

/// Weight gradient: dW_g [C_out/g, k] = dy_g x im2col(x)_g^T over the whole batch.
fn filter_spec(g: &ConvGeom) -> GemmSpec<f32> {
    let (cout_g, k) = group_gemm_dims(g);
    group_spec(g, cout_g, k, g.n * g.oh * g.ow)
}

/// Bytes the GPU convolution holds while its largest pass runs on a device of `sms` SMs: the
/// split-K partial products (no pass builds columns; a strided data gradient never splits K),
/// and in the implicit data gradient the weight packed for its GEMM. On the `tensor_cores` a
/// pointwise convolution runs the implicit GEMMs too.
pub fn gpu_workspace_bytes(g: &ConvGeom, sms: usize, tensor_cores: bool) -> usize {
    if g.layout == Layout::Nhwc {
        return nhwc::workspace_bytes(g, sms, tensor_cores);
    }
    let f32_bytes = std::mem::size_of::<f32>();
    let partials = |spec: &GemmSpec<f32>| match spec.plan(SplitK::Auto, sms).k_split.splits {
        1 => 0,
        splits => splits * spec.batch * spec.m * spec.n * f32_bytes,
    };
    let pointwise = |transpose: bool| pointwise_spec(g, transpose).filter(|_| !tensor_cores);
    let forward = partials(&pointwise(false).unwrap_or_else(|| forward_spec(g)));
    let packed_weight = g.weight_len() * f32_bytes;
    let data = match pointwise(true) {
        Some(spec) => partials(&spec),
        None if g.sh == 1 && g.sw == 1 => packed_weight + partials(&data_direct_spec(g)),
        None => packed_weight,
    };
    let filter = partials(&filter_spec(g));
    forward.max(data).max(filter)
}

/// Rows and columns of the tile a block of the tiled depthwise kernels computes a value per
/// thread (DW_TILE_ROWS and DW_TILE_COLS in kernels/conv.cu): a warp per row. The filter
/// gradient's, and the forward's and data gradient's where they cannot store quads.
const DEPTHWISE_TILE: (usize, usize) = (8, 32);

/// A tile of the tiled forward and data-gradient depthwise kernels (kernels/conv.cu): a value
/// per thread, or with [`DepthwiseTile::Quads`] (the `_vec4` kernels, where the rows they write
/// are whole quads in a 16-byte aligned buffer) 4 rows per warp, each thread storing 4
/// consecutive outputs of one row in one access after staging its sums in shared memory.
#[derive(Clone, Copy, Debug, PartialEq)]
enum DepthwiseTile {
    Values,
    Quads,
}

impl DepthwiseTile {
    /// The tile's rows and columns: DEPTHWISE_TILE, 4 times as many rows with quads.
    fn shape(self) -> (usize, usize) {
        match self {
            DepthwiseTile::Values => DEPTHWISE_TILE,
            DepthwiseTile::Quads => (4 * DEPTHWISE_TILE.0, DEPTHWISE_TILE.1),
        }
    }

    /// Shared memory the kernel takes besides its windows: the quad kernels' staged sums
    /// (DW_STAGED floats, a value per output of the tile).
    fn staged_bytes(self) -> usize {
        match self {
            DepthwiseTile::Values => 0,
            DepthwiseTile::Quads => self.shape().0 * self.shape().1 * std::mem::size_of::<f32>(),
        }
    }

    /// The tiles over an R x S plane.
    fn tiles(self, rows: usize, columns: usize) -> usize {
        let (r, s) = self.shape();
        rows.div_ceil(r) * columns.div_ceil(s)
    }

    /// The kernel `base` (depthwise_forward_tiled, depthwise_backward_data_tiled) on this tile.
    fn kernel(self, base: &str) -> String {
        match self {
            DepthwiseTile::Values => base.to_string(),
            DepthwiseTile::Quads => format!("{base}_vec4"),
        }
    }

    /// The tiles a kernel writing `t`, an NCHW tensor of `width`-value rows, may take, the
    /// larger first: quads where its rows are whole quads in a 16-byte aligned buffer.
    fn candidates(t: &GpuBuf<f32>, width: usize) -> &'static [DepthwiseTile] {
        if rows_of_quads(t, width) {
            &[DepthwiseTile::Quads, DepthwiseTile::Values]
        } else {
            &[DepthwiseTile::Values]
        }
    }
}

/// Shared memory a block may take without opting in, on every supported device.
const STATIC_SHARED_LIMIT: usize = 48 * 1024;

/// The input window (rows, columns) an output tile of `shape` of the tiled depthwise kernels
/// reads: a stride per row and column after the first plus the dilated kernel's extent.
fn forward_window(g: &ConvGeom, shape: (usize, usize)) -> (usize, usize) {
    ((shape.0 - 1) * g.sh + (g.kh - 1) * g.dh + 1, (shape.1 - 1) * g.sw + (g.kw - 1) * g.dw + 1)
}

/// The dy window an input-gradient tile of `shape` of depthwise_backward_data_tiled(_vec4)
/// reaches: the outputs whose taps reach its rows and columns, one more for the rounding of the
/// first.
fn backward_data_window(g: &ConvGeom, shape: (usize, usize)) -> (usize, usize) {
    ((shape.0 - 1 + (g.kh - 1) * g.dh) / g.sh + 2, (shape.1 - 1 + (g.kw - 1) * g.dw) / g.sw + 2)
}

/// Shared memory of a block of the tiled depthwise filter gradient besides its windows: each
/// thread's sum per tap.
fn depthwise_filter_sums_bytes(g: &ConvGeom) -> usize {
    g.kh * g.kw * DEPTHWISE_TILE.0 * DEPTHWISE_TILE.1 * std::mem::size_of::<f32>()
}

/// How many chunks of images the tiled depthwise filter gradient splits the batch into on a
/// device of `sms` SMs (enough blocks, one per output channel and chunk, for two per SM), or
/// None when its shared memory would not fit (the per-tap kernel then runs).
fn depthwise_filter_chunks(g: &ConvGeom, sms: usize) -> Option<usize> {
    tiled_windows(forward_window(g, DEPTHWISE_TILE), 2, depthwise_filter_sums_bytes(g), false)
        .map(|_| (2 * sms).div_ceil(g.c_out.max(1)).clamp(1, g.n.max(1)))
}

/// Bytes a depthwise convolution holds on a GPU of `sms` SMs: the filter gradient's partial
/// sums per chunk of images, when the batch is split.
pub fn depthwise_gpu_workspace_bytes(g: &ConvGeom, sms: usize) -> usize {
    if g.layout == Layout::Nhwc {
        return depthwise_nhwc::workspace_bytes(g, sms);
    }
    match depthwise_filter_chunks(g, sms) {
        Some(chunks) if chunks > 1 => chunks * g.weight_len() * std::mem::size_of::<f32>(),
        _ => 0,
    }
}

/// The windows a tiled depthwise kernel holds in shared memory, as it takes them: PH, PW (the
/// columns held) and `vec` (whole quads).
struct TiledWindows {
    rows: usize,
    columns: usize,
    quads: bool,
    shared_bytes: usize,
}

impl TiledWindows {
    /// The kernel's PH, PW and vec arguments.
    fn args(&self) -> Result<[KernelArg; 3]> {
        Ok([int(self.rows, "depthwise patch")?, int(self.columns, "depthwise patch")?, KernelArg::I32(self.quads as i32)])
    }
}

/// How a tiled depthwise kernel holds `copies` windows of `window` (rows, columns) besides
/// `other_bytes` of shared memory: in whole quads when `quads` (the tensor's rows are whole
/// quads, W % 4 == 0, in a 16-byte aligned buffer) and they fit, each window then starting at
/// the multiple of 4 at most 3 columns left of its first and 3 columns wider rounded up to 4
/// (dw_window_start in kernels/conv.cu); else a value at a time. None when neither fits in
/// shared memory (the untiled kernels run).
fn tiled_windows(window: (usize, usize), copies: usize, other_bytes: usize, quads: bool) -> Option<TiledWindows> {
    let held = |columns: usize, quads: bool| {
        let shared_bytes = other_bytes + copies * window.0 * columns * std::mem::size_of::<f32>();
        fits_in_shared(shared_bytes).then_some(TiledWindows { rows: window.0, columns, quads, shared_bytes })
    };
    quads.then(|| held((window.1 + 3).next_multiple_of(4), true)).flatten().or_else(|| held(window.1, false))
}

/// Whether a tiled depthwise kernel may move `t`, an NCHW tensor of `width`-value rows, in quads
/// (copy its windows, or store its outputs, 4 values per access): every row then starts at a
/// multiple of 4 values of a 16-byte aligned buffer.
fn rows_of_quads(t: &GpuBuf<f32>, width: usize) -> bool {
    width.is_multiple_of(4) && pointers_aligned16(&[t.stored_arg()])
}

/// Whether a tiled depthwise kernel's block fits in the shared memory a block may take (the
/// untiled kernels run otherwise).
fn fits_in_shared(bytes: usize) -> bool {
    bytes <= STATIC_SHARED_LIMIT
}

/// The launch of a tiled depthwise kernel: `blocks` blocks (at least one) of one tile's threads,
/// each with `shared_bytes` of shared memory.
fn depthwise_launch(blocks: usize, shared_bytes: usize) -> Result<LaunchConfig> {
    int(blocks, "the depthwise blocks")?;
    let threads = (DEPTHWISE_TILE.0 * DEPTHWISE_TILE.1) as u32;
    Ok(LaunchConfig { grid: (blocks as u32, 1, 1), block: (threads, 1, 1), shared_mem_bytes: shared_bytes as u32 })
}

impl GpuBackend {
    /// The module and name of a convolution GEMM kernel (`base` the fp32 one's, before the tile
    /// suffix): its tensor-core twin when the run's operands take the tensor cores
    /// (`training_tc_input`).
    fn conv_gemm_kernel(&self, base: &str) -> (&'static str, String) {
        match self.training_tc_input() {
            Some(input) => ("conv_tc", format!("{base}_tc_{}", input.name())),
            None => ("conv", base.to_string()),
        }
    }

    /// A pointwise convolution's GEMM on its tensors in place (`pointwise_spec`), unless the
    /// tensor cores run its implicit GEMMs.
    fn pointwise_gemm(&self, g: &ConvGeom, transpose: bool) -> Option<GemmSpec<f32>> {
        pointwise_spec(g, transpose).filter(|_| self.training_tc_input().is_none())
    }

    /// The tile of a channels-first strided data gradient (`data_phase_spec`): never split (a
    /// split would need a reduction that scatters into the phase's pixels; a phase's GEMM already
    /// has images x phase plane columns of blocks), and on Turing's tensor cores one of 64 rows,
    /// the 128x128 one spilling on sm_75 (kernels/conv_tc.cu builds none).
    fn data_phase_plan(&self, spec: &GemmSpec<f32>) -> GemmTile {
        let turing_tensor_cores = self.training_tc_input().is_some() && self.driver().compute_capability() < (8, 0);
        let tiles: &[GemmTile] = match turing_tensor_cores {
            true => &[GemmTile::Small, GemmTile::Wide],
            false => &[GemmTile::Small, GemmTile::Wide, GemmTile::Large],
        };
        spec.plan_among(tiles, SplitK::Splits(1), self.driver().multiprocessor_count()).tile
    }

    /// `spec` (`pointwise_gemm`'s) of the weight and `src` (x forward, dy for the data
    /// gradient) into NCHW `target` (conv_pointwise_gemm or conv_pointwise_data_gemm).
    fn pointwise(&self, kernel: &str, spec: &GemmSpec<f32>, w: &GpuBuf<f32>, src: &GpuBuf<f32>, g: &ConvGeom, target: &GemmTarget) -> Result<()> {
        let plane = g.h * g.w;
        let operands = [
            w.arg(),
            src.stored_arg(),
            src.format_arg(),
            int(plane, "conv input plane")?,
            image_stride(spec.k * plane)?,
            vectorizable(w, 0, g.c_in, 0, 1),
            KernelArg::I32(image_major_vec(src.ptr(), plane) as i32),
        ];
        self.launch_conv_gemm(kernel, spec, target, &operands)
    }

    /// A convolution GEMM of `spec` on `kernel` (`conv_gemm_kernel`'s base name).
    fn launch_conv_gemm(&self, kernel: &str, spec: &GemmSpec<f32>, target: &GemmTarget, operands: &[KernelArg]) -> Result<()> {
        let (module, name) = self.conv_gemm_kernel(kernel);
        self.launch_tiled_gemm(module, &name, spec, self.plan(spec), target, operands)
    }

    /// The tile and K split of `spec` on this device.
    fn plan(&self, spec: &GemmSpec<f32>) -> GemmPlan {
        spec.plan(SplitK::Auto, self.driver().multiprocessor_count())
    }

    /// y = conv(x, w) + bias: one GEMM per group reading x's im2col matrix on the fly, the bias
    /// added as y is stored.
    fn forward_implicit(&self, x: &GpuBuf<f32>, w: &GpuBuf<f32>, bias: Option<&GpuBuf<f32>>, g: &ConvGeom, y: &mut GpuBuf<f32>) -> Result<()> {
        let (cout_g, k) = group_gemm_dims(g);
        let spec = forward_spec(g);
        let mut operands = vec![w.arg(), x.stored_arg(), x.format_arg(), stride_arg(cout_g * k, "conv weight group")?, stride_arg(g.c_in_per_group() * g.h * g.w, "conv input group")?];
        operands.extend(im2col_operand_args(g)?);
        operands.push(vectorizable(w, 0, k, cout_g * k, g.groups));
        self.launch_conv_gemm("conv_forward_gemm", &spec, &nchw_target(y, g, g.c_out, g.oh * g.ow, bias), &operands)
    }

    /// The weight packed as the data-gradient GEMMs read it (kernels/conv.cu): `kernel`
    /// (pack_flipped_weights or pack_phase_weights) run over `z` matrices with `args` after the
    /// two pointers, and whether the packing takes 16-byte loads. Its rows are C_out/g times a
    /// phase's taps floats and its matrices start at multiples of C_in/g x C_out/g, so C_out/g a
    /// multiple of 4 (`vectorizable`'s row length) keeps every row 16-byte aligned.
    fn pack_data_weights(&self, kernel: &str, w: &GpuBuf<f32>, g: &ConvGeom, z: usize, args: &[KernelArg]) -> Result<(GpuBuf<f32>, KernelArg)> {
        let packed = self.alloc::<f32>(w.len())?;
        let per_group = per_element(g.weight_len() / g.groups, "the convolution weight")?;
        let cfg = LaunchConfig { grid: (per_group.grid.0, 1, z as u32), ..per_group };
        let mut all = vec![packed.arg(), w.arg()];
        all.extend_from_slice(args);
        self.launch("conv", kernel, cfg, &all)?;
        let vec = vectorizable(&packed, 0, g.c_out_per_group(), g.weight_len() / g.groups, g.groups);
        Ok((packed, vec))
    }

    /// The flipped weight of the stride-1 data gradient (pack_flipped_weights), K in the order of
    /// `g.layout`'s GEMM.
    fn pack_flipped_weights(&self, w: &GpuBuf<f32>, g: &ConvGeom) -> Result<(GpuBuf<f32>, KernelArg)> {
        let args = [
            int(g.c_in_per_group(), "conv input channels per group")?,
            int(g.c_out_per_group(), "conv output channels per group")?,
            int(g.kh * g.kw, "conv taps")?,
            KernelArg::I32((g.layout == Layout::Nhwc) as i32),
        ];
        self.pack_data_weights("pack_flipped_weights", w, g, g.groups, &args)
    }

    /// Every stride phase's weight of the strided data gradient (pack_phase_weights) packed, K in
    /// the order of `g.layout`'s phase GEMM; the packing, whether it takes 16-byte loads, and the
    /// arguments both layouts' phase GEMMs start with: dx and its stored format, the packing, dy
    /// and its stored format, C_in/g, images, phases and the packing's group stride.
    fn phase_gemm_head(&self, dx: &GpuBuf<f32>, dy: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom) -> Result<(GpuBuf<f32>, KernelArg, Vec<KernelArg>)> {
        let phases = g.sh * g.sw;
        let (cin_g, cout_g) = (g.c_in_per_group(), g.c_out_per_group());
        let mut args = vec![int(cin_g, "conv input channels per group")?, int(cout_g, "conv output channels per group")?, int(phases, "conv stride phases")?];
        args.extend(&phase_geometry_args(g)?[..10]);
        args.push(KernelArg::I32((g.layout == Layout::Nhwc) as i32));
        let (packed, vec_w) = self.pack_data_weights("pack_phase_weights", w, g, g.groups * phases, &args)?;
        let mut head = vec![dx.stored_arg(), dx.format_arg(), packed.arg(), dy.stored_arg(), dy.format_arg()];
        head.extend([
            args[0],
            int(g.n, "batch")?,
            args[2],
            stride_arg(cout_g * cin_g * g.kh * g.kw, "conv weight group")?,
        ]);
        Ok((packed, vec_w, head))
    }

    /// dx of a stride-1 convolution: one GEMM per group, dy convolved with the reversed window
    /// and the transposed weight (kernels/conv.cu, conv_data_direct_gemm), no columns.
    fn backward_data_direct(&self, dy: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom, dx: &mut GpuBuf<f32>) -> Result<()> {
        let taps = g.kh * g.kw;
        let (cout_g, cin_g) = (g.c_out_per_group(), g.c_in_per_group());
        let spec = data_direct_spec(g);
        let (flipped, vec_w) = self.pack_flipped_weights(w, g)?;
        // The reversed window's padding: dilation * (kernel - 1) - padding, negative when the
        // padding exceeds the window's reach (the bounds checks then skip the far taps).
        let reversed_pad = |d: usize, k: usize, p: usize| {
            i32::try_from(d as i64 * (k as i64 - 1) - p as i64).map(KernelArg::I32).map_err(|_| Error::shape("conv padding or dilation is too large"))
        };
        let operands = [
            flipped.arg(),
            dy.stored_arg(),
            dy.format_arg(),
            stride_arg(cout_g * cin_g * taps, "conv weight group")?,
            stride_arg(cout_g * g.oh * g.ow, "conv output-gradient group")?,
            int(g.oh, "conv output height")?,
            int(g.ow, "conv output width")?,
            int(g.kh, "conv kernel height")?,
            int(g.kw, "conv kernel width")?,
            KernelArg::I32(1),
            KernelArg::I32(1),
            reversed_pad(g.dh, g.kh, g.ph)?,
            reversed_pad(g.dw, g.kw, g.pw)?,
            int(g.dh, "conv dilation")?,
            int(g.dw, "conv dilation")?,
            int(g.w, "conv input width")?,
            int(g.h * g.w, "conv input plane")?,
            image_stride(g.c_out * g.oh * g.ow)?,
            vec_w,
        ];
        self.launch_conv_gemm("conv_data_direct_gemm", &spec, &nchw_target(dx, g, g.c_in, g.h * g.w, None), &operands)
    }

    /// dx of a strided convolution: one launch of phase GEMMs (kernels/conv.cu,
    /// conv_data_phase_gemm), each of the stride's sh * sw phases of dx of every group summing
    /// only the taps that reach it; no columns, no col2im.
    fn backward_data_phased(&self, dy: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom, dx: &mut GpuBuf<f32>) -> Result<()> {
        let (cout_g, cin_g) = (g.c_out_per_group(), g.c_in_per_group());
        let spec = data_phase_spec(g);
        if spec.m == 0 || spec.n == 0 {
            return Ok(());
        }
        let tile = self.data_phase_plan(&spec);
        let (_packed, vec_w, mut args) = self.phase_gemm_head(dx, dy, w, g)?;
        args.extend([
            stride_arg(cout_g * g.oh * g.ow, "conv output-gradient group")?,
            stride_arg(cin_g * g.h * g.w, "conv input-gradient group")?,
            int(cout_g, "conv output channels per group")?,
        ]);
        args.extend(phase_geometry_args(g)?);
        args.extend([image_stride(g.c_out * g.oh * g.ow)?, image_stride(g.c_in * g.h * g.w)?, vec_w]);
        int(spec.n, "conv input-gradient phase columns")?;
        let (module, kernel) = self.conv_gemm_kernel("conv_data_phase_gemm");
        self.launch(module, &format!("{kernel}{}", tile.suffix()), tile_grid(&spec, tile, spec.batch), &args)
    }

    fn check_depthwise(&self, g: &ConvGeom) -> Result<Vec<KernelArg>> {
        g.check_depthwise()?;
        let [kh, kw, sh, sw, ph, pw, dh, dw, oh, ow, h, w] = window_args(g)?;
        let mult = int(g.c_out / g.c_in, "depthwise multiplier")?;
        Ok(vec![int(g.n, "batch")?, int(g.c_in, "channels")?, h, w, mult, kh, kw, sh, sw, ph, pw, dh, dw, oh, ow])
    }
}

impl ConvOps<f32> for GpuBackend {
    fn conv2d_forward(&self, x: &GpuBuf<f32>, w: &GpuBuf<f32>, bias: Option<&GpuBuf<f32>>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
        g.check_forward_operands("conv2d", x.len(), w.len(), bias.map(|b| b.len()))?;
        // y takes x's stored format and the GEMM (or its split-K reduction) adds the bias as it
        // stores y: one rounding.
        let mut y = self.alloc_stored(g.y_len(), x.stored())?;
        if g.layout == Layout::Nhwc {
            self.forward_nhwc(x, w, bias, g, &mut y)?;
            return Ok(y);
        }
        match self.pointwise_gemm(g, false) {
            Some(spec) => self.pointwise("conv_pointwise_gemm", &spec, w, x, g, &nchw_target(&y, g, g.c_out, g.oh * g.ow, bias))?,
            None => self.forward_implicit(x, w, bias, g, &mut y)?,
        }
        Ok(y)
    }

    fn conv2d_backward_data(&self, dy: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
        expect_len("conv2d", "output gradient", dy.len(), g.y_len())?;
        expect_len("conv2d", "weight", w.len(), g.weight_len())?;
        // dx takes dy's stored format.
        let mut dx = self.alloc_stored(g.x_len(), dy.stored())?;
        if g.layout == Layout::Nhwc {
            self.backward_data_nhwc(dy, w, g, &mut dx)?;
            return Ok(dx);
        }
        match self.pointwise_gemm(g, true) {
            Some(spec) => self.pointwise("conv_pointwise_data_gemm", &spec, w, dy, g, &nchw_target(&dx, g, g.c_in, g.h * g.w, None))?,
            None if g.sh == 1 && g.sw == 1 => self.backward_data_direct(dy, w, g, &mut dx)?,
            None => self.backward_data_phased(dy, w, g, &mut dx)?,
        }
        Ok(dx)
    }

    fn conv2d_backward_filter(&self, x: &GpuBuf<f32>, dy: &GpuBuf<f32>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
        expect_len("conv2d", "input", x.len(), g.x_len())?;
        expect_len("conv2d", "output gradient", dy.len(), g.y_len())?;
        let plane = g.oh * g.ow;
        let cout_g = g.c_out_per_group();
        let mut dw = self.alloc::<f32>(g.weight_len())?;
        if g.layout == Layout::Nhwc {
            self.backward_filter_nhwc(x, dy, g, &mut dw)?;
            return Ok(dw);
        }
        // Per group: dW_g [C_out/g, k] = dy_g [C_out/g, n * plane] x im2col(x)_g^T, in one GEMM
        // over the whole batch (K = n * plane, split as the device needs).
        let spec = filter_spec(g);
        let mut operands = vec![
            dy.stored_arg(),
            dy.format_arg(),
            x.stored_arg(),
            x.format_arg(),
            stride_arg(cout_g * plane, "conv output-gradient group")?,
            image_stride(g.c_out * plane)?,
            stride_arg(g.c_in_per_group() * g.h * g.w, "conv input group")?,
        ];
        operands.extend(im2col_operand_args(g)?);
        operands.push(KernelArg::I32(image_major_vec(dy.ptr(), plane) as i32));
        self.launch_conv_gemm("conv_filter_gemm", &spec, &GemmTarget::row_major(dw.ptr(), &spec), &operands)?;
        Ok(dw)
    }

    fn conv2d_backward_bias(&self, dy: &GpuBuf<f32>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
        expect_len("conv2d", "output gradient", dy.len(), g.y_len())?;
        match g.layout {
            Layout::Nchw => self.bias_grad(dy, g.n, g.c_out, g.oh * g.ow),
            // The columns of dy's [pixels, C_out] matrix.
            Layout::Nhwc => self.bias_grad(dy, g.n * g.oh * g.ow, g.c_out, 1),
        }
    }

    fn depthwise_conv2d_forward(&self, x: &GpuBuf<f32>, w: &GpuBuf<f32>, bias: Option<&GpuBuf<f32>>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
        let geometry = self.check_depthwise(g)?;
        g.check_forward_operands("depthwise conv2d", x.len(), w.len(), bias.map(|b| b.len()))?;
        // y takes x's stored format (the kernels add the bias before their one rounding).
        let y = self.alloc_stored(g.y_len(), x.stored())?;
        if g.y_len() == 0 {
            return Ok(y);
        }
        if g.layout == Layout::Nhwc {
            depthwise_nhwc::forward(self, x, w, bias, g, &y, geometry)?;
            return Ok(y);
        }
        let mut args = vec![x.stored_arg(), x.format_arg(), w.arg(), KernelArg::Ptr(bias.map_or(0, |b| b.ptr())), y.stored_arg(), y.format_arg()];
        args.extend(geometry);
        args.push(KernelArg::I32(bias.is_some() as i32));
        // The largest tile whose window fits, each output's sum the same on either.
        let tiled = DepthwiseTile::candidates(&y, g.ow).iter().find_map(|&tile| {
            tiled_windows(forward_window(g, tile.shape()), 1, tile.staged_bytes(), rows_of_quads(x, g.w)).map(|windows| (tile, windows))
        });
        match tiled {
            Some((tile, windows)) => {
                args.extend(windows.args()?);
                let cfg = depthwise_launch(g.n * g.c_out * tile.tiles(g.oh, g.ow), windows.shared_bytes)?;
                self.launch("conv", &tile.kernel("depthwise_forward_tiled"), cfg, &args)?;
            }
            None => self.launch("conv", "depthwise_forward", per_element(g.y_len(), "the depthwise output")?, &args)?,
        }
        Ok(y)
    }

    fn depthwise_conv2d_backward_data(&self, dy: &GpuBuf<f32>, w: &GpuBuf<f32>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
        let geometry = self.check_depthwise(g)?;
        expect_len("depthwise conv2d", "output gradient", dy.len(), g.y_len())?;
        expect_len("depthwise conv2d", "weight", w.len(), g.weight_len())?;
        int(g.y_len(), "the depthwise output")?;
        // dx takes dy's stored format.
        let dx = self.alloc_stored(g.x_len(), dy.stored())?;
        if g.x_len() == 0 {
            return Ok(dx);
        }
        if g.layout == Layout::Nhwc {
            depthwise_nhwc::backward_data(self, dy, w, g, &dx, geometry)?;
            return Ok(dx);
        }
        let mut args = vec![dy.stored_arg(), dy.format_arg(), w.arg(), dx.stored_arg(), dx.format_arg()];
        args.extend(geometry);
        let tiled = DepthwiseTile::candidates(&dx, g.w).iter().find_map(|&tile| {
            let window = backward_data_window(g, tile.shape());
            tiled_windows(window, g.c_out / g.c_in, tile.staged_bytes(), rows_of_quads(dy, g.ow)).map(|windows| (tile, windows))
        });
        match tiled {
            Some((tile, windows)) => {
                args.extend(windows.args()?);
                let cfg = depthwise_launch(g.n * g.c_in * tile.tiles(g.h, g.w), windows.shared_bytes)?;
                self.launch("conv", &tile.kernel("depthwise_backward_data_tiled"), cfg, &args)?;
            }
            None => self.launch("conv", "depthwise_backward_data", per_element(g.x_len(), "the depthwise input")?, &args)?,
        }
        Ok(dx)
    }

    fn depthwise_conv2d_backward_filter(&self, x: &GpuBuf<f32>, dy: &GpuBuf<f32>, g: &ConvGeom) -> Result<GpuBuf<f32>> {
        let geometry = self.check_depthwise(g)?;
        expect_len("depthwise conv2d", "input", x.len(), g.x_len())?;
        expect_len("depthwise conv2d", "output gradient", dy.len(), g.y_len())?;
        int(g.y_len(), "the depthwise output")?;
        int(g.x_len(), "the depthwise input")?;
        let dw = self.alloc::<f32>(g.weight_len())?;
        if g.layout == Layout::Nhwc {
            depthwise_nhwc::backward_filter(self, x, dy, g, &dw, geometry)?;
            return Ok(dw);
        }
        let mut args = vec![x.stored_arg(), x.format_arg(), dy.stored_arg(), dy.format_arg()];
        let chunks = depthwise_filter_chunks(g, self.driver().multiprocessor_count());
        let windows = tiled_windows(forward_window(g, DEPTHWISE_TILE), 2, depthwise_filter_sums_bytes(g), rows_of_quads(x, g.w));
        let (Some(chunks), Some(windows)) = (chunks, windows) else {
            // One block per filter tap.
            let cfg = reduction(g.weight_len(), g.n * g.oh * g.ow)?;
            args.push(dw.arg());
            args.extend(geometry);
            self.launch("conv", "depthwise_backward_filter", cfg, &args)?;
            return Ok(dw);
        };
        // One block per output channel and chunk of images; several chunks' partial sums are
        // summed as split-K's partial products are.
        let sums = GemmSpec::new(false, false, g.c_out, g.kh * g.kw, 0);
        let partial = if chunks > 1 { Some(self.alloc::<f32>(chunks * g.weight_len())?) } else { None };
        let cfg = depthwise_launch(g.c_out * chunks, windows.shared_bytes)?;
        args.push(partial.as_ref().map_or(dw.arg(), |p| p.arg()));
        args.extend(geometry);
        args.extend(windows.args()?);
        args.push(int(chunks, "depthwise image chunks")?);
        self.launch("conv", "depthwise_backward_filter_tiled", cfg, &args)?;
        if let Some(p) = partial {
            self.reduce_splits(&p, &sums, chunks, &GemmTarget::row_major(dw.ptr(), &sums))?;
        }
        Ok(dw)
    }
}
