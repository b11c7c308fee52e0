//! GPU convolution against the f64 CPU reference: the implicit-GEMM convolution (forward,
//! backward data/filter/bias; a strided data gradient by stride phase) over odd sizes, groups,
//! dilation, stride and padding, its GEMMs with K split and on the larger tiles, on the fp32
//! tiles and on the tensor-core tiles of each reduced format (operands rounded to the format as
//! training stores them, the reference on the same rounded values: only f32 accumulation differs,
//! so the fp32 tolerance holds), and the dedicated depthwise kernels.

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, upload_pair, widen};
use ferronet_test_support::stored::{Agreement, StoredPrecision};

use ferronet::cpu::layout::{nchw_to_nhwc, nhwc_to_nchw};
use ferronet::cpu::CpuBackend;
use ferronet::device::{Buffer, Device};
use ferronet::gpu::GpuBackend;
use ferronet::ops::conv::gpu_workspace_bytes;
use ferronet::ops::{ConvGeom, ConvOps, PrecisionOps};
use ferronet::ops::gemm::tc::TcInput;
use ferronet::precision::{Precision, StoredFormat};
use ferronet::rng::Rng;
use ferronet::ops::conv::depthwise_gpu_workspace_bytes;
use ferronet::shape::Layout;
use ferronet::sim::{SimDriver, SimOptions};
use std::sync::Arc;

const ATOL: f64 = 1e-4;
const RTOL: f64 = 1e-4;

/// (N, C_in, (H, W), C_out, kernel, stride, padding, dilation, groups)
type Config = (usize, usize, (usize, usize), usize, (usize, usize), (usize, usize), (usize, usize), (usize, usize), usize);

fn geom(c: Config) -> ConvGeom {
    ConvGeom::new(c.0, c.1, c.2, c.3, c.4, c.5, c.6, c.7, c.8).unwrap()
}

/// Hand-picked geometries covering each feature, plus random ones (fixed seed).
fn configs() -> Vec<ConvGeom> {
    let mut out: Vec<ConvGeom> = [
        (2, 3, (7, 6), 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (3, 4, (9, 8), 6, (3, 2), (2, 1), (1, 0), (1, 2), 2),
        (2, 4, (5, 5), 8, (1, 1), (1, 1), (0, 0), (1, 1), 4),
        (1, 3, (11, 10), 5, (5, 5), (3, 2), (2, 2), (1, 1), 1),
        (3, 6, (6, 7), 6, (3, 3), (2, 2), (1, 1), (1, 1), 6),
        (3, 5, (4, 6), 7, (1, 1), (1, 1), (0, 0), (1, 1), 1), // pointwise: GEMMs on the tensors
        // Strided data gradients by phase, as the zoo's layers: a grouped 1x1 stride-2
        // downsample (three of four phases reached by no tap), the 7x7 stride-2 stem, AlexNet's
        // 11x11 stride 4, and dilation 2 at stride 2 (the odd phases reached by no tap).
        (2, 4, (7, 8), 6, (1, 1), (2, 2), (0, 0), (1, 1), 2),
        (1, 2, (13, 12), 3, (7, 7), (2, 2), (3, 3), (1, 1), 1),
        (1, 2, (19, 18), 2, (11, 11), (4, 4), (2, 2), (1, 1), 1),
        (2, 3, (9, 10), 3, (3, 3), (2, 2), (2, 2), (2, 2), 3),
    ]
    .into_iter()
    .map(geom)
    .collect();
    let mut rng = Rng::new(7);
    let mut pick = |lo: usize, hi: usize| lo + rng.below((hi - lo + 1) as u64) as usize;
    while out.len() < 13 {
        let groups = pick(1, 3);
        let (k, s, p, d) = ((pick(1, 3), pick(1, 3)), (pick(1, 2), pick(1, 3)), (pick(0, 2), pick(0, 1)), (pick(1, 2), pick(1, 2)));
        let c = (pick(1, 3), groups * pick(1, 3), (pick(3, 9), pick(3, 9)), groups * pick(1, 3), k, s, p, d, groups);
        if let Ok(g) = ConvGeom::new(c.0, c.1, c.2, c.3, c.4, c.5, c.6, c.7, c.8) {
            out.push(g);
        }
    }
    out
}

/// The CPU reference's copy of GPU inputs.
fn widened(cpu: &CpuBackend, host: &[f32]) -> ferronet::cpu::CpuBuf<f64> {
    cpu.upload(&widen(host)).unwrap()
}

/// Random f32 values in [-1, 1): the GPU gets them as they are, the CPU widened to f64.
fn values(len: usize, seed: u64) -> Vec<f32> {
    random_f32(len, seed, -1.0, 1.0)
}

/// Every GEMM engine of the convolution: fp32, and the tensor cores at each reduced format (the
/// simulator is an sm_80+ device).
const ENGINES: [Precision; 4] = [Precision::Fp32, Precision::Bf16, Precision::Fp16, Precision::Tf32];

/// `values` rounded to `p`'s format, as a run at `p` stores a GEMM's operands.
fn values_at(p: Precision, len: usize, seed: u64) -> Vec<f32> {
    values(len, seed).into_iter().map(|v| p.round(v)).collect()
}

/// The launched name of convolution GEMM kernel `base` (before its tile suffix) at `p`.
fn kernel_at(p: Precision, base: &str) -> String {
    match TcInput::for_precision(p) {
        Some(input) => format!("conv_tc::{base}_tc_{}", input.name()),
        None => format!("conv::{base}"),
    }
}

/// A backend whose convolution GEMMs run on `p`'s engine.
fn at_precision(gpu: GpuBackend, p: Precision) -> GpuBackend {
    gpu.declare_gemm_operand_format(p);
    gpu
}

#[test]
fn convolution_forward_and_backward_match_the_reference() {
    let cpu = CpuBackend::new();
    for (p, (i, g)) in ENGINES.into_iter().flat_map(|p| configs().into_iter().enumerate().map(move |c| (p, c))) {
        let g = &g;
        let seed = 1000 + 10 * i as u64;
        let (x, w, b, dy) = (values_at(p, g.x_len(), seed), values_at(p, g.weight_len(), seed + 1), values(g.c_out, seed + 2), values_at(p, g.y_len(), seed + 3));
        let (cx, cw, cb, cdy) = (widened(&cpu, &x), widened(&cpu, &w), widened(&cpu, &b), widened(&cpu, &dy));
        let y_ref = cpu.conv2d_forward(&cx, &cw, Some(&cb), g).unwrap();
        let dx_ref = cpu.conv2d_backward_data(&cdy, &cw, g).unwrap();
        let dw_ref = cpu.conv2d_backward_filter(&cx, &cdy, g).unwrap();
        let gpu = at_precision(gpu(), p);
        let (gx, gw, gb, gdy) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap(), gpu.upload(&b).unwrap(), gpu.upload(&dy).unwrap());
        let y = gpu.conv2d_forward(&gx, &gw, Some(&gb), g).unwrap();
        assert_close(&format!("forward {p} {g:?}"), &gpu.download(&y).unwrap(), &y_ref, ATOL, RTOL);
        gpu.take_kernel_log();
        // dx starts from a pool block another buffer dirtied: every element, those of phases no
        // tap reaches included, must be written.
        drop(gpu.upload(&vec![f32::NAN; g.x_len()]).unwrap());
        let dx = gpu.conv2d_backward_data(&gdy, &gw, g).unwrap();
        assert_close(&format!("backward data {p} {g:?}"), &gpu.download(&dx).unwrap(), &dx_ref, ATOL, RTOL);
        let log = gpu.take_kernel_log();
        assert!(log.iter().all(|k| !k.contains("im2col") && !k.contains("col2im")), "no columns: {log:?}");
        if g.sh > 1 || g.sw > 1 {
            assert_eq!(log.len(), 2, "a strided data gradient packs the weight, then is one launch for every group and phase: {log:?}");
            assert_eq!(log[0], "conv::pack_phase_weights");
            assert!(log[1].starts_with(&kernel_at(p, "conv_data_phase_gemm")), "{log:?}");
        } else if !(g.is_pointwise() && g.groups == 1 && p == Precision::Fp32) {
            assert_eq!(log[0], "conv::pack_flipped_weights", "the direct data gradient reads the flipped weight packed: {log:?}");
            assert!(log[1].starts_with(&kernel_at(p, "conv_data_direct_gemm")), "{log:?}");
        }
        let dw = gpu.conv2d_backward_filter(&gx, &gdy, g).unwrap();
        assert_close(&format!("backward filter {p} {g:?}"), &gpu.download(&dw).unwrap(), &dw_ref, ATOL, RTOL);
        let y = gpu.conv2d_forward(&gx, &gw, None, g).unwrap();
        let want = cpu.conv2d_forward(&cx, &cw, None, g).unwrap();
        assert_close(&format!("forward without bias {p} {g:?}"), &gpu.download(&y).unwrap(), &want, ATOL, RTOL);
        let db = gpu.conv2d_backward_bias(&gdy, g).unwrap();
        let want = cpu.conv2d_backward_bias(&cdy, g).unwrap();
        assert_close(&format!("backward bias {p} {g:?}"), &gpu.download(&db).unwrap(), &want, ATOL, RTOL);
    }
}

/// On a 4-SM simulator the GEMMs of these geometries split K (forward: K = 64 * 9; filter:
/// K = 2 images * 256 positions; stride-1 data: K = 512 * 9), with planes that are and that are not a multiple of 4 (16-byte loads and stores
/// of the NCHW operands, or scalar ones), on every engine.
#[test]
fn convolution_gemms_with_k_split_match_the_reference() {
    let cpu = CpuBackend::new();
    let cases = [
        ((2, 64, (6, 6), 8, (3, 3), (1, 1), (1, 1), (1, 1), 1), "conv_forward_gemm"),
        ((2, 4, (16, 16), 6, (3, 3), (1, 1), (1, 1), (1, 1), 2), "conv_filter_gemm"),
        ((2, 6, (5, 6), 256, (3, 3), (1, 1), (2, 1), (2, 1), 2), "conv_data_direct_gemm"),
    ];
    for (p, (i, (config, split_kernel))) in ENGINES.into_iter().flat_map(|p| cases.into_iter().enumerate().map(move |c| (p, c))) {
        let gpu = at_precision(GpuBackend::new(Arc::new(SimDriver::new(SimOptions { multiprocessors: 4, ..SimOptions::default() }))), p);
        let g = geom(config);
        let seed = 5000 + 10 * i as u64;
        let (x, w, dy) = (values_at(p, g.x_len(), seed), values_at(p, g.weight_len(), seed + 1), values_at(p, g.y_len(), seed + 2));
        let (cx, cw, cdy) = (widened(&cpu, &x), widened(&cpu, &w), widened(&cpu, &dy));
        let (gx, gw, gdy) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap(), gpu.upload(&dy).unwrap());
        gpu.take_kernel_log();
        let y = gpu.conv2d_forward(&gx, &gw, None, &g).unwrap();
        assert_close(&format!("forward {p} {g:?}"), &gpu.download(&y).unwrap(), &cpu.conv2d_forward(&cx, &cw, None, &g).unwrap(), ATOL, RTOL);
        let dx = gpu.conv2d_backward_data(&gdy, &gw, &g).unwrap();
        assert_close(&format!("backward data {p} {g:?}"), &gpu.download(&dx).unwrap(), &cpu.conv2d_backward_data(&cdy, &cw, &g).unwrap(), ATOL, RTOL);
        let dw = gpu.conv2d_backward_filter(&gx, &gdy, &g).unwrap();
        assert_close(&format!("backward filter {p} {g:?}"), &gpu.download(&dw).unwrap(), &cpu.conv2d_backward_filter(&cx, &cdy, &g).unwrap(), ATOL, RTOL);
        let log = gpu.take_kernel_log();
        let split_kernel = kernel_at(p, split_kernel);
        let split = log.iter().position(|k| *k == split_kernel).map(|at| log.get(at + 1).map(String::as_str));
        assert_eq!(split, Some(Some("gemm::splitk_reduce")), "{split_kernel} splits K for {p} {g:?}: {log:?}");
    }
}

/// ResNet-like layers, stride 1 and 2, large enough for the 64x128 and 128x128 tiles in all four
/// GEMMs (on 2 SMs, which even the large tiles' grids fill): 128 output rows take the 128x128
/// tile, 64 the 64x128; on the fp32 tiles and the bf16 and tf32 tensor-core ones (fp16's tiles
/// are bf16's with the other conversion and mma, which the smaller cases check).
#[test]
fn convolution_gemms_on_the_larger_tiles_match_the_reference() {
    for p in [Precision::Fp32, Precision::Bf16, Precision::Tf32] {
        let mut ran = Vec::new();
        for (i, (c_in, c_out)) in [(64, 128), (128, 64)].into_iter().enumerate() {
            ran.extend(larger_tile_layer(p, geom((2, c_in, (16, 16), c_out, (3, 3), (1, 1), (1, 1), (1, 1), 1)), 6000 + 10 * i as u64));
            // Stride 2: the data gradient's phase GEMMs have c_in rows.
            ran.extend(larger_tile_layer(p, geom((2, c_in, (16, 16), c_out, (3, 3), (2, 2), (1, 1), (1, 1), 1)), 6100 + 10 * i as u64));
        }
        for gemm in ["conv_forward_gemm", "conv_data_direct_gemm", "conv_data_phase_gemm", "conv_filter_gemm"] {
            for tile in ["_64x128", "_128"] {
                let kernel = format!("{}{tile}", kernel_at(p, gemm));
                assert!(ran.contains(&kernel), "{kernel} ran: {ran:?}");
            }
        }
    }
}

/// Forward and both gradients of `g` at `p` against the CPU on a 2-SM simulator; the kernels
/// launched.
fn larger_tile_layer(p: Precision, g: ConvGeom, seed: u64) -> Vec<String> {
    let cpu = CpuBackend::new();
    let gpu = at_precision(GpuBackend::new(Arc::new(SimDriver::new(SimOptions { multiprocessors: 2, ..SimOptions::default() }))), p);
    let (x, w, dy) = (values_at(p, g.x_len(), seed), values_at(p, g.weight_len(), seed + 1), values_at(p, g.y_len(), seed + 2));
    let (cx, cw, cdy) = (widened(&cpu, &x), widened(&cpu, &w), widened(&cpu, &dy));
    let (gx, gw, gdy) = (gpu.upload(&x).unwrap(), gpu.upload(&w).unwrap(), gpu.upload(&dy).unwrap());
    gpu.take_kernel_log();
    let y = gpu.conv2d_forward(&gx, &gw, None, &g).unwrap();
    assert_close(&format!("{p} forward"), &gpu.download(&y).unwrap(), &cpu.conv2d_forward(&cx, &cw, None, &g).unwrap(), ATOL, RTOL);
    let dx = gpu.conv2d_backward_data(&gdy, &gw, &g).unwrap();
    assert_close(&format!("{p} backward data"), &gpu.download(&dx).unwrap(), &cpu.conv2d_backward_data(&cdy, &cw, &g).unwrap(), ATOL, RTOL);
    let dw = gpu.conv2d_backward_filter(&gx, &gdy, &g).unwrap();
    assert_close(&format!("{p} backward filter"), &gpu.download(&dw).unwrap(), &cpu.conv2d_backward_filter(&cx, &cdy, &g).unwrap(), ATOL, RTOL);
    gpu.take_kernel_log()
}

#[test]
fn pointwise_convolution_skips_im2col() {
    let gpu = gpu();
    let g = geom((2, 3, (3, 5), 4, (1, 1), (1, 1), (0, 0), (1, 1), 1));
    let (x, w, b) = (gpu.upload(&values(g.x_len(), 1)).unwrap(), gpu.upload(&values(g.weight_len(), 2)).unwrap(), gpu.upload(&values(g.c_out, 3)).unwrap());
    gpu.take_kernel_log();
    let y = gpu.conv2d_forward(&x, &w, Some(&b), &g).unwrap();
    assert_eq!(gpu.take_kernel_log(), ["conv::conv_pointwise_gemm"]);
    gpu.conv2d_backward_data(&y, &w, &g).unwrap();
    assert_eq!(gpu.take_kernel_log(), ["conv::conv_pointwise_data_gemm"]);
    // On the tensor cores it runs the implicit GEMMs (the 1x1 window reads x in place): one
    // launch per pass, the data gradient's after the weight's transpose (its 1x1 flip).
    gpu.declare_gemm_operand_format(Precision::Bf16);
    let y = gpu.conv2d_forward(&x, &w, Some(&b), &g).unwrap();
    assert_eq!(gpu.take_kernel_log(), ["conv_tc::conv_forward_gemm_tc_bf16"]);
    gpu.conv2d_backward_data(&y, &w, &g).unwrap();
    assert_eq!(gpu.take_kernel_log(), ["conv::pack_flipped_weights", "conv_tc::conv_data_direct_gemm_tc_bf16"]);
}

/// Channels-last geometries: 3x3 stride 1 (odd channel counts, and multiples of 4 for 16-byte
/// loads and stores), the pointwise plain GEMMs, a grouped 5x5 stride 2, the 7x7 stride-2 stem,
/// a grouped 1x1 stride-2 downsample, dilation 2 at stride 1 and 2, and an asymmetric window.
fn nhwc_configs() -> Vec<ConvGeom> {
    [
        (2, 3, (7, 6), 5, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (2, 8, (6, 5), 12, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (3, 5, (4, 6), 7, (1, 1), (1, 1), (0, 0), (1, 1), 1),
        (2, 8, (9, 8), 8, (5, 5), (2, 2), (2, 2), (1, 1), 2),
        (1, 2, (13, 12), 3, (7, 7), (2, 2), (3, 3), (1, 1), 1),
        (2, 8, (7, 8), 16, (1, 1), (2, 2), (0, 0), (1, 1), 2),
        (2, 2, (9, 7), 3, (3, 3), (1, 1), (2, 2), (2, 2), 1),
        (2, 6, (9, 10), 6, (3, 3), (2, 2), (2, 2), (2, 2), 3),
        (1, 4, (5, 6), 8, (3, 2), (1, 2), (1, 0), (2, 1), 2),
    ]
    .into_iter()
    .map(|c| geom(c).with_layout(Layout::Nhwc))
    .collect()
}

/// Forward (with and without bias) and the three gradients of channels-last `g` on `gpu` at `p`
/// against the CPU's NCHW reference on the same values reordered; the kernels launched.
fn nhwc_layer(gpu: &GpuBackend, p: Precision, g: &ConvGeom, seed: u64) -> Vec<String> {
    let cpu = CpuBackend::new();
    let nchw = g.with_layout(Layout::Nchw);
    let (x, w, b, dy) = (values_at(p, g.x_len(), seed), values_at(p, g.weight_len(), seed + 1), values(g.c_out, seed + 2), values_at(p, g.y_len(), seed + 3));
    let (cx, cw, cb, cdy) = (widened(&cpu, &x), widened(&cpu, &w), widened(&cpu, &b), widened(&cpu, &dy));
    let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
    let (gx, gw, gb) = (gpu.upload(&nchw_to_nhwc(&x, g.c_in, in_plane)).unwrap(), gpu.upload(&w).unwrap(), gpu.upload(&b).unwrap());
    let gdy = gpu.upload(&nchw_to_nhwc(&dy, g.c_out, out_plane)).unwrap();
    let as_nchw = |buf: &ferronet::gpu::GpuBuf<f32>, c: usize, plane: usize| nhwc_to_nchw(&gpu.download(buf).unwrap(), c, plane);
    gpu.take_kernel_log();
    for bias in [Some((&gb, &cb)), None] {
        let y = gpu.conv2d_forward(&gx, &gw, bias.map(|b| b.0), g).unwrap();
        let want = cpu.conv2d_forward(&cx, &cw, bias.map(|b| b.1), &nchw).unwrap();
        assert_close(&format!("nhwc forward (bias {}) {p} {g:?}", bias.is_some()), &as_nchw(&y, g.c_out, out_plane), &want, ATOL, RTOL);
    }
    // dx starts from a pool block another buffer dirtied: every element must be written.
    drop(gpu.upload(&vec![f32::NAN; g.x_len()]).unwrap());
    let dx = gpu.conv2d_backward_data(&gdy, &gw, g).unwrap();
    let want = cpu.conv2d_backward_data(&cdy, &cw, &nchw).unwrap();
    assert_close(&format!("nhwc backward data {p} {g:?}"), &as_nchw(&dx, g.c_in, in_plane), &want, ATOL, RTOL);
    let dw = gpu.conv2d_backward_filter(&gx, &gdy, g).unwrap();
    let want = cpu.conv2d_backward_filter(&cx, &cdy, &nchw).unwrap();
    assert_close(&format!("nhwc backward filter {p} {g:?}"), &gpu.download(&dw).unwrap(), &want, ATOL, RTOL);
    let db = gpu.conv2d_backward_bias(&gdy, g).unwrap();
    let want = cpu.conv2d_backward_bias(&cdy, &nchw).unwrap();
    assert_close(&format!("nhwc backward bias {p} {g:?}"), &gpu.download(&db).unwrap(), &want, ATOL, RTOL);
    gpu.take_kernel_log()
}

/// The kernels `nhwc_layer` on `g` at `p` launches, without tile suffixes, in the kernel log's
/// order (each once): a pointwise geometry of one
/// group runs plain GEMMs (the tensor-core ones at a reduced format), any other the channels-last
/// GEMMs after their weight packing, the weight gradient unpacked after; the bias is added as the
/// GEMM stores y, except after the fp32 SGEMM's unsplit plain GEMM; splitk_reduce entries are
/// left out (the plan decides them).
fn nhwc_launches(p: Precision, g: &ConvGeom) -> Vec<String> {
    let plain = |transposes: &str| match TcInput::for_precision(p) {
        Some(input) => format!("gemm_tc::sgemm_{transposes}_tc_{}", input.name()),
        None => format!("gemm::sgemm_{transposes}"),
    };
    let forward = || match g.is_pointwise() && g.groups == 1 {
        true => vec![plain("nt")],
        false => vec!["layout::transpose_images".to_string(), kernel_at(p, "conv_nhwc_gemm")],
    };
    let mut want = forward();
    if g.is_pointwise() && g.groups == 1 && TcInput::for_precision(p).is_none() {
        want.push("gemm::add_bias".into());
    }
    want.extend(forward());
    want.extend(match (g.is_pointwise() && g.groups == 1, g.sh * g.sw > 1) {
        (true, _) => vec![plain("nn")],
        (false, false) => vec!["conv::pack_flipped_weights".to_string(), kernel_at(p, "conv_nhwc_gemm")],
        (false, true) => vec!["conv::pack_phase_weights".to_string(), kernel_at(p, "conv_nhwc_data_phase_gemm")],
    });
    want.extend(match g.is_pointwise() && g.groups == 1 {
        true => vec![plain("tn")],
        false => vec![kernel_at(p, "conv_nhwc_filter_gemm"), "layout::transpose_images".to_string()],
    });
    want.push("gemm::bias_grad".into());
    // The log names each kernel once, at its first launch.
    let mut once = Vec::new();
    for k in want {
        if !once.contains(&k) {
            once.push(k);
        }
    }
    once
}

/// A launch name without its tile suffix (and a plain GEMM's split marker after it).
fn without_tile(kernel: &str) -> &str {
    let kernel = kernel.strip_suffix("_split").unwrap_or(kernel);
    kernel.strip_suffix("_64x128").or_else(|| kernel.strip_suffix("_128")).unwrap_or(kernel)
}

#[test]
fn channels_last_convolution_runs_nhwc_kernels_matching_the_reference() {
    for (p, (i, g)) in ENGINES.into_iter().flat_map(|p| nhwc_configs().into_iter().enumerate().map(move |c| (p, c))) {
        let gpu = at_precision(gpu(), p);
        let log = nhwc_layer(&gpu, p, &g, 7000 + 10 * i as u64);
        let mut ran: Vec<&str> = Vec::new();
        for k in log.iter().map(|k| without_tile(k)).filter(|k| *k != "gemm::splitk_reduce") {
            if !ran.contains(&k) {
                ran.push(k);
            }
        }
        assert_eq!(ran, nhwc_launches(p, &g), "{p} {g:?}");
    }
}

/// A bf16/fp16 run's channels-last convolution on 16-bit x and dy (im2col, stride-phase and
/// pointwise GEMMs, and a forward whose K splits on a 4-SM simulator): y and dx are stored in the
/// input's format and equal the CPU's f64 results rounded to it (to one unit of the format's last
/// place, where the sums differ across a rounding boundary); dW and db stay f32.
#[test]
fn channels_last_convolution_reads_and_writes_16_bit_activations() {
    let configs = [
        (2, 8, (6, 5), 12, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (2, 8, (9, 8), 8, (5, 5), (2, 2), (2, 2), (1, 1), 2),
        (3, 5, (4, 6), 7, (1, 1), (1, 1), (0, 0), (1, 1), 1),
        (2, 64, (6, 6), 8, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ];
    let cpu = CpuBackend::new();
    for (p, tol) in [(Precision::Bf16, 8e-3), (Precision::Fp16, 1e-3)] {
        let within = Agreement::Within { atol: tol, rtol: tol };
        for (i, config) in configs.into_iter().enumerate() {
            let sms = if i == 3 { 4 } else { SimOptions::default().multiprocessors };
            let driver = Arc::new(SimDriver::new(SimOptions { multiprocessors: sms, ..SimOptions::default() }));
            let gpu = at_precision(GpuBackend::new(driver.clone()), p);
            let stored = StoredPrecision::new(&gpu, &cpu, p);
            let g = geom(config).with_layout(Layout::Nhwc);
            let nchw = g.with_layout(Layout::Nchw);
            let seed = 9500 + 10 * i as u64;
            let (x, w, b, dy) = (values_at(p, g.x_len(), seed), values_at(p, g.weight_len(), seed + 1), values(g.c_out, seed + 2), values_at(p, g.y_len(), seed + 3));
            let (cx, cw, cb, cdy) = (widened(&cpu, &x), widened(&cpu, &w), widened(&cpu, &b), widened(&cpu, &dy));
            let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
            let (gx, gdy) = (stored.on_gpu(&nchw_to_nhwc(&x, g.c_in, in_plane)), stored.on_gpu(&nchw_to_nhwc(&dy, g.c_out, out_plane)));
            let (gw, gb) = (gpu.upload(&w).unwrap(), gpu.upload(&b).unwrap());
            let what = |pass: &str| format!("16-bit nhwc {pass} {g:?}");
            let as_nchw = |pass: &str, buf: &ferronet::gpu::GpuBuf<f32>, c: usize, plane: usize| nhwc_to_nchw(&stored.download(&what(pass), buf), c, plane);
            let y = gpu.conv2d_forward(&gx, &gw, Some(&gb), &g).unwrap();
            let want = stored.as_stored(cpu.conv2d_forward(&cx, &cw, Some(&cb), &nchw).unwrap());
            stored.compare(&what("forward"), &as_nchw("y", &y, g.c_out, out_plane), &want, within);
            let dx = gpu.conv2d_backward_data(&gdy, &gw, &g).unwrap();
            let want = stored.as_stored(cpu.conv2d_backward_data(&cdy, &cw, &nchw).unwrap());
            stored.compare(&what("backward data"), &as_nchw("dx", &dx, g.c_in, in_plane), &want, within);
            driver.take_launch_stats();
            let dw = gpu.conv2d_backward_filter(&gx, &gdy, &g).unwrap();
            assert_close(&what("backward filter"), &gpu.download(&dw).unwrap(), &cpu.conv2d_backward_filter(&cx, &cdy, &nchw).unwrap(), ATOL, RTOL);
            // The weight gradient reads dy and im2col(x) along their rows (4 channels per load
            // where the channel counts allow) and stores them k-contiguous without bank conflicts.
            let stats = driver.take_launch_stats();
            let on_tensor_cores: Vec<_> = stats.iter().filter(|s| s.kernel.contains("_tc_")).collect();
            assert!(!on_tensor_cores.is_empty(), "{}: the weight gradient ran on the CUDA cores", what("backward filter"));
            for s in on_tensor_cores {
                assert_eq!(s.bank_conflicts, 0, "{} {}", what("backward filter"), s.kernel);
            }
            let db = gpu.conv2d_backward_bias(&gdy, &g).unwrap();
            assert_close(&what("backward bias"), &gpu.download(&db).unwrap(), &cpu.conv2d_backward_bias(&cdy, &nchw).unwrap(), ATOL, RTOL);
            let log = gpu.take_kernel_log();
            assert!(i != 3 || log.iter().any(|k| k == "gemm::splitk_reduce"), "{}: K splits: {log:?}", what("forward"));
        }
    }
}

/// A bf16/fp16 run's channels-first convolution on 16-bit x and dy, on the tensor-core tiles (an
/// sm_80 simulator; sm_75 at fp16) and on the fp32 ones (sm_75 at bf16): 3x3 stride 1 (planes a multiple of 4: 4-value loads and stores, and not),
/// a grouped 5x5 stride 2 (the data gradient by phase), a grouped 3x3, pointwise, and a forward
/// whose K splits on a 4-SM simulator (the reduction adds the bias per channel). y and dx are
/// stored in the input's format and equal the CPU's f64 results rounded to it (to one unit of the
/// format's last place, where the sums differ across a rounding boundary); dW and db stay f32; no
/// pass converts a buffer.
#[test]
fn channels_first_convolution_reads_and_writes_16_bit_activations() {
    let configs = [
        (2, 8, (6, 5), 12, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (2, 4, (4, 4), 8, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (2, 8, (9, 8), 8, (5, 5), (2, 2), (2, 2), (1, 1), 2),
        (2, 8, (7, 6), 8, (3, 3), (1, 1), (1, 1), (1, 1), 2),
        (3, 5, (4, 6), 7, (1, 1), (1, 1), (0, 0), (1, 1), 1),
        (2, 64, (6, 6), 8, (3, 3), (1, 1), (1, 1), (1, 1), 1),
    ];
    let cpu = CpuBackend::new();
    for (cc, p, tol) in [((8, 0), Precision::Bf16, 8e-3), ((8, 0), Precision::Fp16, 1e-3), ((7, 5), Precision::Bf16, 8e-3), ((7, 5), Precision::Fp16, 1e-3)] {
        let within = Agreement::Within { atol: tol, rtol: tol };
        for (i, config) in configs.into_iter().enumerate() {
            let sms = if i == 5 { 4 } else { SimOptions::default().multiprocessors };
            let gpu = at_precision(GpuBackend::new(Arc::new(SimDriver::new(SimOptions { multiprocessors: sms, compute_capability: cc, ..SimOptions::default() }))), p);
            let stored = StoredPrecision::new(&gpu, &cpu, p);
            let g = geom(config);
            let seed = 9700 + 10 * i as u64;
            let (x, w, b, dy) = (values_at(p, g.x_len(), seed), values_at(p, g.weight_len(), seed + 1), values(g.c_out, seed + 2), values_at(p, g.y_len(), seed + 3));
            let (cx, cw, cb, cdy) = (widened(&cpu, &x), widened(&cpu, &w), widened(&cpu, &b), widened(&cpu, &dy));
            let (gx, gdy, gw, gb) = (stored.on_gpu(&x), stored.on_gpu(&dy), gpu.upload(&w).unwrap(), gpu.upload(&b).unwrap());
            let what = |pass: &str| format!("16-bit nchw {pass} sm_{}{} {g:?}", cc.0, cc.1);
            gpu.take_kernel_log();
            let y = gpu.conv2d_forward(&gx, &gw, Some(&gb), &g).unwrap();
            let want = stored.as_stored(cpu.conv2d_forward(&cx, &cw, Some(&cb), &g).unwrap());
            stored.compare(&what("forward"), &stored.download(&what("y"), &y), &want, within);
            let dx = gpu.conv2d_backward_data(&gdy, &gw, &g).unwrap();
            let want = stored.as_stored(cpu.conv2d_backward_data(&cdy, &cw, &g).unwrap());
            stored.compare(&what("backward data"), &stored.download(&what("dx"), &dx), &want, within);
            let dw = gpu.conv2d_backward_filter(&gx, &gdy, &g).unwrap();
            assert_close(&what("backward filter"), &gpu.download(&dw).unwrap(), &cpu.conv2d_backward_filter(&cx, &cdy, &g).unwrap(), ATOL, RTOL);
            let db = gpu.conv2d_backward_bias(&gdy, &g).unwrap();
            assert_close(&what("backward bias"), &gpu.download(&db).unwrap(), &cpu.conv2d_backward_bias(&cdy, &g).unwrap(), ATOL, RTOL);
            let log = gpu.take_kernel_log();
            assert!(log.iter().all(|k| !k.starts_with("precision::") && k != "gemm::add_bias"), "{}: {log:?}", what("passes"));
            assert_eq!(log.iter().any(|k| k.starts_with("conv_tc::")), cc >= (8, 0) || p == Precision::Fp16, "{}: {log:?}", what("engine"));
            assert!(i != 5 || log.iter().any(|k| k == "gemm::splitk_reduce"), "{}: K splits: {log:?}", what("forward"));
        }
    }
}

/// A strided channels-first data gradient whose phase GEMMs (128 x 256, K = 256) the 128x128
/// tile takes best on a 2-SM simulator: Ampere's tensor cores take it, Turing's (whose module has
/// no 128x128 data-phase kernel: sm_75 spills it) the best 64-row tile; both equal the CPU's
/// result rounded to fp16.
#[test]
fn turing_strided_data_gradients_take_64_row_tensor_core_tiles() {
    let cpu = CpuBackend::new();
    let p = Precision::Fp16;
    let g = geom((1, 128, (32, 32), 64, (3, 3), (2, 2), (1, 1), (1, 1), 1));
    let (dy, w) = (values_at(p, g.y_len(), 9800), values_at(p, g.weight_len(), 9801));
    let (cdy, cw) = (widened(&cpu, &dy), widened(&cpu, &w));
    for (cc, tile) in [((8, 0), "_128"), ((7, 5), "_64x128")] {
        let gpu = at_precision(GpuBackend::new(Arc::new(SimDriver::new(SimOptions { compute_capability: cc, multiprocessors: 2, ..SimOptions::default() }))), p);
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let what = format!("strided data gradient sm_{}{}", cc.0, cc.1);
        gpu.take_kernel_log();
        let dx = gpu.conv2d_backward_data(&stored.on_gpu(&dy), &gpu.upload(&w).unwrap(), &g).unwrap();
        let want = stored.as_stored(cpu.conv2d_backward_data(&cdy, &cw, &g).unwrap());
        stored.compare(&what, &stored.download(&what, &dx), &want, Agreement::Within { atol: 1e-3, rtol: 1e-3 });
        let log = gpu.take_kernel_log();
        let kernel = format!("conv_tc::conv_data_phase_gemm_tc_f16{tile}");
        assert!(log.contains(&kernel), "{what}: {kernel} expected: {log:?}");
    }
}

/// The fp32 tiles' pointwise GEMMs read a 16-bit x (or dy) 4 values per 8-byte load and store y
/// (or dx) 4 values per 8-byte store, the weight 4 per 16-byte load: each 16-deep k-step of a
/// 64x64 tile is one load of a quad per thread of each operand (8 warp loads each), and 4 values
/// per store; with a plane not a multiple of 4 they fall back to single values (and still match).
#[test]
fn channels_first_pointwise_gemms_move_four_16_bit_values_per_access() {
    let cpu = CpuBackend::new();
    let p = Precision::Bf16;
    let driver = Arc::new(SimDriver::new(SimOptions { compute_capability: (7, 5), ..SimOptions::default() }));
    let gpu = at_precision(GpuBackend::new(driver.clone()), p);
    let stored = StoredPrecision::new(&gpu, &cpu, p);
    let within = Agreement::Within { atol: 8e-3, rtol: 8e-3 };
    for (config, vectorised) in [((1, 16, (8, 8), 64, (1, 1), (1, 1), (0, 0), (1, 1), 1), true), ((1, 16, (7, 9), 64, (1, 1), (1, 1), (0, 0), (1, 1), 1), false)] {
        let g = geom(config);
        let (x, w, dy) = (values_at(p, g.x_len(), 9900), values_at(p, g.weight_len(), 9901), values_at(p, g.y_len(), 9902));
        let (cx, cw, cdy) = (widened(&cpu, &x), widened(&cpu, &w), widened(&cpu, &dy));
        let (gx, gdy, gw) = (stored.on_gpu(&x), stored.on_gpu(&dy), gpu.upload(&w).unwrap());
        driver.take_launch_stats();
        let y = gpu.conv2d_forward(&gx, &gw, None, &g).unwrap();
        stored.compare(&format!("pointwise forward {g:?}"), &stored.download("y", &y), &stored.as_stored(cpu.conv2d_forward(&cx, &cw, None, &g).unwrap()), within);
        let dx = gpu.conv2d_backward_data(&gdy, &gw, &g).unwrap();
        stored.compare(&format!("pointwise backward data {g:?}"), &stored.download("dx", &dx), &stored.as_stored(cpu.conv2d_backward_data(&cdy, &cw, &g).unwrap()), within);
        let stats = driver.take_launch_stats();
        for kernel in ["conv::conv_pointwise_gemm", "conv::conv_pointwise_data_gemm"] {
            let s = stats.iter().find(|s| s.kernel == kernel).unwrap_or_else(|| panic!("{kernel} ran: {stats:?}"));
            // The forward's tile is 64 output channels x 64 pixels over 16 input channels; the
            // data gradient's 16 input channels x 64 pixels over 64 output channels (4 k-steps).
            let (rows, steps) = if kernel.ends_with("data_gemm") { (16, 4) } else { (64, 1) };
            let (loads, stores) = (2 * 8 * steps, rows * 64 / 4 / 32);
            if vectorised {
                assert_eq!(s.global_accesses, (loads + stores) as u64, "{kernel}: 4 values per access");
                assert_eq!(s.global_store_bytes, (rows * 64 * 2) as u64, "{kernel}: 16-bit stores");
            } else {
                assert!(s.global_accesses > (loads + stores) as u64, "{kernel}: single values");
            }
        }
    }
}

/// A geometry whose GEMM splits K, and the launch its reduction follows in the kernel log at a
/// precision.
type SplitCase = (Config, fn(Precision) -> String);

/// On a 4-SM simulator the channels-last GEMMs split K (forward: K = 9 * 64; weight gradient: K =
/// 2 images * 256 pixels; stride-1 data gradient: K = 9 * 256), with channel counts that are and
/// that are not multiples of 4, on every engine; and ResNet-like layers on 2 SMs take the larger
/// tiles.
#[test]
fn channels_last_gemms_split_k_and_take_the_larger_tiles() {
    // The launch the split GEMM's reduction follows in the kernel log, which names each kernel
    // once: the data gradient's GEMM is the forward's, so its reduction follows the weight pack.
    let forward = |p| kernel_at(p, "conv_nhwc_gemm");
    let filter = |p| kernel_at(p, "conv_nhwc_filter_gemm");
    let data = |_| "conv::pack_flipped_weights".to_string();
    let cases: [SplitCase; 3] = [
        ((2, 64, (6, 6), 8, (3, 3), (1, 1), (1, 1), (1, 1), 1), forward),
        ((2, 4, (16, 16), 6, (3, 3), (1, 1), (1, 1), (1, 1), 2), filter),
        ((2, 6, (5, 6), 256, (3, 3), (1, 1), (2, 1), (2, 1), 2), data),
    ];
    for (p, (i, (config, split_kernel))) in ENGINES.into_iter().flat_map(|p| cases.into_iter().enumerate().map(move |c| (p, c))) {
        let gpu = at_precision(GpuBackend::new(Arc::new(SimDriver::new(SimOptions { multiprocessors: 4, ..SimOptions::default() }))), p);
        let g = geom(config).with_layout(Layout::Nhwc);
        let log = nhwc_layer(&gpu, p, &g, 8000 + 10 * i as u64);
        let split_kernel = split_kernel(p);
        let split = log.iter().position(|k| without_tile(k) == split_kernel).map(|at| log.get(at + 1).map(String::as_str));
        assert_eq!(split, Some(Some("gemm::splitk_reduce")), "{split_kernel} splits K for {p} {g:?}: {log:?}");
    }
    for p in [Precision::Fp32, Precision::Bf16, Precision::Tf32] {
        let mut ran = Vec::new();
        // 512 or 128 pixel rows take 128x128 tiles; 64 (one image's 8x8 output or stride phase)
        // with 128 channels the 64x128 ones.
        for (i, (n, c_in, c_out, stride)) in [(2, 64, 128, 1), (2, 128, 64, 2), (1, 128, 128, 2)].into_iter().enumerate() {
            let gpu = at_precision(GpuBackend::new(Arc::new(SimDriver::new(SimOptions { multiprocessors: 2, ..SimOptions::default() }))), p);
            let g = geom((n, c_in, (16, 16), c_out, (3, 3), (stride, stride), (1, 1), (1, 1), 1)).with_layout(Layout::Nhwc);
            ran.extend(nhwc_layer(&gpu, p, &g, 9000 + 10 * i as u64));
        }
        for gemm in ["conv_nhwc_gemm", "conv_nhwc_data_phase_gemm", "conv_nhwc_filter_gemm"] {
            for tile in ["_64x128", "_128"] {
                let kernel = format!("{}{tile}", kernel_at(p, gemm));
                assert!(ran.contains(&kernel), "{kernel} ran: {ran:?}");
            }
        }
    }
}

/// `gpu_workspace_bytes` is what the largest channels-last pass holds beyond its operands and
/// result (packed weights, the weight gradient in K order, split-K partial products, on 4 SMs so
/// that K splits), on the fp32 tiles and on the tensor cores.
#[test]
fn channels_last_workspace_is_what_the_largest_pass_holds() {
    let split = [(2, 64, (6, 6), 8, (3, 3), (1, 1), (1, 1), (1, 1), 1), (2, 6, (5, 6), 256, (3, 3), (1, 1), (2, 1), (2, 1), 2)];
    for p in [Precision::Fp32, Precision::Bf16] {
        for g in nhwc_configs().into_iter().chain(split.map(|c| geom(c).with_layout(Layout::Nhwc))) {
            let gpu = at_precision(GpuBackend::new(Arc::new(SimDriver::new(SimOptions { multiprocessors: 4, ..SimOptions::default() }))), p);
            let (x, w, dy) = (gpu.zeros(g.x_len()).unwrap(), gpu.zeros(g.weight_len()).unwrap(), gpu.zeros(g.y_len()).unwrap());
            let held = |pass: &dyn Fn() -> ferronet::gpu::GpuBuf<f32>| {
                let before = gpu.memory().current_bytes;
                gpu.reset_peak();
                let result = pass();
                gpu.memory().peak_bytes - before - result.len() * std::mem::size_of::<f32>()
            };
            let most = [
                held(&|| gpu.conv2d_forward(&x, &w, None, &g).unwrap()),
                held(&|| gpu.conv2d_backward_data(&dy, &w, &g).unwrap()),
                held(&|| gpu.conv2d_backward_filter(&x, &dy, &g).unwrap()),
            ]
            .into_iter()
            .max();
            assert_eq!(most, Some(gpu_workspace_bytes(&g, 4, p != Precision::Fp32)), "{p} {g:?}");
        }
    }
}

fn depthwise_configs() -> Vec<ConvGeom> {
    [
        (2, 3, (7, 7), 3, (3, 3), (1, 1), (1, 1), (1, 1), 3),
        (2, 4, (8, 7), 8, (3, 3), (2, 2), (1, 1), (1, 1), 4),
        (1, 2, (9, 9), 6, (5, 5), (1, 1), (2, 2), (2, 2), 2),
        (3, 5, (6, 5), 5, (3, 1), (1, 2), (1, 0), (1, 1), 5),
        // Several 8 x 32 tiles per plane, forward and backward, at strides 1 and 2.
        (2, 2, (19, 37), 2, (3, 3), (1, 1), (1, 1), (1, 1), 2),
        (1, 2, (20, 70), 4, (5, 5), (2, 2), (2, 2), (1, 1), 2),
        // A forward window too large for shared memory (61 x 253 floats): the per-element kernel.
        (1, 2, (40, 40), 2, (5, 5), (8, 8), (0, 0), (1, 1), 2),
    ]
    .into_iter()
    .map(geom)
    .collect()
}

#[test]
fn depthwise_kernels_match_the_reference() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    for (i, g) in depthwise_configs().into_iter().enumerate() {
        let seed = 2000 + 10 * i as u64;
        let (x, w, b, dy) =
            (values(g.x_len(), seed), values(g.weight_len(), seed + 1), values(g.c_out, seed + 2), values(g.y_len(), seed + 3));
        let ((gx, cx), (gw, cw)) = (upload_pair(&gpu, &cpu, &x), upload_pair(&gpu, &cpu, &w));
        let ((gb, cb), (gdy, cdy)) = (upload_pair(&gpu, &cpu, &b), upload_pair(&gpu, &cpu, &dy));
        for bias in [true, false] {
            let y = gpu.depthwise_conv2d_forward(&gx, &gw, bias.then_some(&gb), &g).unwrap();
            let want = cpu.depthwise_conv2d_forward(&cx, &cw, bias.then_some(&cb), &g).unwrap();
            assert_close(&format!("depthwise forward (bias {bias}) {g:?}"), &gpu.download(&y).unwrap(), &want, ATOL, RTOL);
        }
        let dx = gpu.depthwise_conv2d_backward_data(&gdy, &gw, &g).unwrap();
        let want = cpu.depthwise_conv2d_backward_data(&cdy, &cw, &g).unwrap();
        assert_close(&format!("depthwise backward data {g:?}"), &gpu.download(&dx).unwrap(), &want, ATOL, RTOL);
        let dw = gpu.depthwise_conv2d_backward_filter(&gx, &gdy, &g).unwrap();
        let want = cpu.depthwise_conv2d_backward_filter(&cx, &cdy, &g).unwrap();
        assert_close(&format!("depthwise backward filter {g:?}"), &gpu.download(&dw).unwrap(), &want, ATOL, RTOL);
    }
}

#[test]
fn depthwise_kernels_tile_unless_the_window_outgrows_shared_memory() {
    let gpu = gpu();
    let run = |g: &ConvGeom| depthwise_kernels_run(&gpu, g);
    // 8 channels on the simulator's SMs: a block per channel and image, the two images' partial
    // sums added after.
    let mobilenet = geom((2, 8, (14, 14), 8, (3, 3), (2, 2), (1, 1), (1, 1), 8));
    let tiled = ["conv::depthwise_forward_tiled", "conv::depthwise_backward_data_tiled", "conv::depthwise_backward_filter_tiled", "gemm::splitk_reduce"];
    assert_eq!(run(&mobilenet), tiled);
    let wide_stride = geom((1, 2, (40, 40), 2, (5, 5), (8, 8), (0, 0), (1, 1), 2));
    // dx's rows of 40 values are whole quads: the data gradient's 32 x 32 tile, 4 values per thread.
    assert_eq!(run(&wide_stride), ["conv::depthwise_forward", "conv::depthwise_backward_data_tiled_vec4", "conv::depthwise_backward_filter"]);
}

#[test]
fn bad_buffers_and_geometries_are_clear_errors() {
    let gpu = gpu();
    let g = geom((1, 2, (4, 4), 2, (3, 3), (1, 1), (1, 1), (1, 1), 1));
    let x = gpu.zeros(g.x_len()).unwrap();
    let short = gpu.zeros(g.weight_len() - 1).unwrap();
    let err = gpu.conv2d_forward(&x, &short, None, &g).err().expect("short weight").to_string();
    assert_eq!(err, "shape error: conv2d: weight has 35 elements but 36 are needed");
    let w = gpu.zeros(g.weight_len()).unwrap();
    let err = gpu.depthwise_conv2d_forward(&x, &w, None, &g).err().expect("groups = 1 is not depthwise").to_string();
    assert!(err.contains("depthwise convolution needs groups == in channels"), "{err}");
}

// ---- nhwc depthwise: channels-last depthwise kernels (kernels/conv_depthwise_nhwc.cu) against
// the f64 CPU reference in NCHW, their results reordered.

/// Channels-last depthwise geometries and the kernels' shape suffix ("3x3_s1_v4"; None: the
/// generic kernels): 3x3 and 5x5 at strides 1 and 2 with 4 channels per thread (C % 4 == 0) and
/// with 1, paddings 0 to 2, and the generic kernels' multiplier 2, dilation 2 and rectangular
/// window and stride. The first and the 2-multiplier 12x12 have enough pixels for several chunks
/// of the filter gradient on the simulator's SMs.
fn nhwc_depthwise_configs() -> Vec<(ConvGeom, Option<&'static str>)> {
    [
        ((2, 8, (16, 16), 8, (3, 3), (1, 1), (1, 1), (1, 1), 8), Some("3x3_s1_v4")),
        ((1, 6, (6, 5), 6, (3, 3), (1, 1), (1, 1), (1, 1), 6), Some("3x3_s1_v1")),
        ((1, 4, (5, 6), 4, (3, 3), (1, 1), (2, 2), (1, 1), 4), Some("3x3_s1_v4")),
        ((2, 4, (8, 7), 4, (3, 3), (2, 2), (1, 1), (1, 1), 4), Some("3x3_s2_v4")),
        ((1, 3, (9, 10), 3, (3, 3), (2, 2), (0, 0), (1, 1), 3), Some("3x3_s2_v1")),
        ((1, 4, (10, 9), 4, (5, 5), (1, 1), (2, 2), (1, 1), 4), Some("5x5_s1_v4")),
        ((1, 5, (9, 8), 5, (5, 5), (1, 1), (2, 2), (1, 1), 5), Some("5x5_s1_v1")),
        ((2, 8, (11, 10), 8, (5, 5), (2, 2), (2, 2), (1, 1), 8), Some("5x5_s2_v4")),
        ((1, 3, (12, 11), 3, (5, 5), (2, 2), (1, 1), (1, 1), 3), Some("5x5_s2_v1")),
        ((1, 3, (7, 7), 6, (3, 3), (1, 1), (1, 1), (1, 1), 3), None),
        ((2, 4, (12, 12), 8, (3, 3), (1, 1), (1, 1), (1, 1), 4), None),
        ((2, 4, (9, 9), 4, (3, 3), (1, 1), (2, 2), (2, 2), 4), None),
        ((1, 5, (8, 9), 5, (3, 1), (1, 2), (1, 0), (1, 1), 5), None),
        // More output channels than a filter-gradient block has threads: blocks of 256 channel
        // lanes by one pixel lane, two of them across.
        ((1, 129, (3, 4), 258, (3, 3), (1, 1), (1, 1), (1, 1), 129), None),
    ]
    .into_iter()
    .map(|(c, kernels)| (geom(c).with_layout(Layout::Nhwc), kernels))
    .collect()
}

/// The kernel that packs the weight tap-major for the forward and data-gradient kernels.
const PACK: &str = "conv_depthwise_nhwc::depthwise_nhwc_pack_weights";

/// A GPU result in NHWC ([N, OH*OW or H*W, C]) reordered to NCHW, for the CPU reference.
fn nhwc_result(gpu: &GpuBackend, buf: &ferronet::gpu::GpuBuf<f32>, c: usize, hw: usize) -> Vec<f32> {
    nhwc_to_nchw(&gpu.download(buf).unwrap(), c, hw)
}

#[test]
fn nhwc_depthwise_kernels_match_the_nchw_reference() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    let sms = gpu.driver().multiprocessor_count();
    for (i, (g, shape)) in nhwc_depthwise_configs().into_iter().enumerate() {
        let nchw = g.with_layout(Layout::Nchw);
        let seed = 7000 + 10 * i as u64;
        let (x, w, b, dy) = (values(g.x_len(), seed), values(g.weight_len(), seed + 1), values(g.c_out, seed + 2), values(g.y_len(), seed + 3));
        let (in_plane, out_plane) = (g.h * g.w, g.oh * g.ow);
        let (gx, gdy) = (gpu.upload(&nchw_to_nhwc(&x, g.c_in, in_plane)).unwrap(), gpu.upload(&nchw_to_nhwc(&dy, g.c_out, out_plane)).unwrap());
        let ((gw, cw), (gb, cb)) = (upload_pair(&gpu, &cpu, &w), upload_pair(&gpu, &cpu, &b));
        let (cx, cdy) = (widened(&cpu, &x), widened(&cpu, &dy));
        let kernel = |pass: &str| match shape {
            Some(shape) => format!("conv_depthwise_nhwc::depthwise_nhwc_{pass}_{shape}"),
            None => format!("conv_depthwise_nhwc::depthwise_nhwc_{pass}"),
        };
        gpu.take_kernel_log();
        for bias in [true, false] {
            let y = gpu.depthwise_conv2d_forward(&gx, &gw, bias.then_some(&gb), &g).unwrap();
            let want = cpu.depthwise_conv2d_forward(&cx, &cw, bias.then_some(&cb), &nchw).unwrap();
            assert_close(&format!("nhwc depthwise forward (bias {bias}) {g:?}"), &nhwc_result(&gpu, &y, g.c_out, out_plane), &want, ATOL, RTOL);
            assert_eq!(gpu.take_kernel_log(), [PACK.to_string(), kernel("forward")], "{g:?}");
        }
        // dx starts from a pool block another buffer dirtied: every element must be written.
        drop(gpu.upload(&vec![f32::NAN; g.x_len()]).unwrap());
        let dx = gpu.depthwise_conv2d_backward_data(&gdy, &gw, &g).unwrap();
        let want = cpu.depthwise_conv2d_backward_data(&cdy, &cw, &nchw).unwrap();
        assert_close(&format!("nhwc depthwise backward data {g:?}"), &nhwc_result(&gpu, &dx, g.c_in, in_plane), &want, ATOL, RTOL);
        assert_eq!(gpu.take_kernel_log(), [PACK.to_string(), kernel("backward_data")], "{g:?}");
        let dw = gpu.depthwise_conv2d_backward_filter(&gx, &gdy, &g).unwrap();
        let want = cpu.depthwise_conv2d_backward_filter(&cx, &cdy, &nchw).unwrap();
        assert_close(&format!("nhwc depthwise backward filter {g:?}"), &gpu.download(&dw).unwrap(), &want, ATOL, RTOL);
        // The workspace the memory plan counts: the packed weight, or the filter gradient's
        // partial sums when it has several chunks.
        let log = gpu.take_kernel_log();
        let chunked = log.len() == 2;
        assert_eq!(log[0], kernel("backward_filter"), "{g:?}");
        if chunked {
            assert_eq!(log[1], "gemm::splitk_reduce", "{g:?}");
        }
        let (workspace, weight) = (depthwise_gpu_workspace_bytes(&g, sms), 4 * g.weight_len());
        assert!(if chunked { workspace > weight } else { workspace == weight }, "{g:?}: {workspace} bytes, {log:?}");
    }
}

/// The channels-last depthwise kernels (specialised with 4 and with 1 channel per thread, and
/// generic with multiplier 2) on bf16 and fp16 x and dy: y and dx are stored in the input's
/// format and equal the f32 kernels' results on the same values rounded once; dW stays f32 and
/// equals the f32 run's (the same sums of exactly widened values).
#[test]
fn nhwc_depthwise_reads_and_writes_16_bit_activations() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    let configs = [
        ((1, 8, (6, 6), 8, (3, 3), (1, 1), (1, 1), (1, 1), 8), "3x3_s1_v4"),
        ((1, 3, (7, 6), 3, (3, 3), (2, 2), (1, 1), (1, 1), 3), "3x3_s2_v1"),
        ((1, 3, (5, 5), 6, (3, 3), (1, 1), (1, 1), (1, 1), 3), ""),
    ];
    for p in [Precision::Bf16, Precision::Fp16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        for (i, (config, shape)) in configs.into_iter().enumerate() {
            let g = geom(config).with_layout(Layout::Nhwc);
            let seed = 7600 + 10 * i as u64;
            let (x, w, b, dy) = (values_at(p, g.x_len(), seed), values(g.weight_len(), seed + 1), values(g.c_out, seed + 2), values_at(p, g.y_len(), seed + 3));
            let (fx, fdy, gw, gb) = (gpu.upload(&x).unwrap(), gpu.upload(&dy).unwrap(), gpu.upload(&w).unwrap(), gpu.upload(&b).unwrap());
            let (gx, gdy) = (stored.on_gpu(&x), stored.on_gpu(&dy));
            let what = |pass: &str| format!("16-bit nhwc depthwise {pass} {p} {g:?}");
            let rounded = |buf: &ferronet::gpu::GpuBuf<f32>| gpu.download(buf).unwrap().into_iter().map(|v| p.round(v).to_bits()).collect::<Vec<_>>();
            let bits = |buf: &ferronet::gpu::GpuBuf<f32>| gpu.download(buf).unwrap().into_iter().map(f32::to_bits).collect::<Vec<_>>();
            let stored_bits = |pass: &str, buf: &ferronet::gpu::GpuBuf<f32>| stored.download(&what(pass), buf).into_iter().map(f32::to_bits).collect::<Vec<_>>();
            let y = gpu.depthwise_conv2d_forward(&gx, &gw, Some(&gb), &g).unwrap();
            assert_eq!(stored_bits("y", &y), rounded(&gpu.depthwise_conv2d_forward(&fx, &gw, Some(&gb), &g).unwrap()), "{}", what("forward"));
            let dx = gpu.depthwise_conv2d_backward_data(&gdy, &gw, &g).unwrap();
            assert_eq!(stored_bits("dx", &dx), rounded(&gpu.depthwise_conv2d_backward_data(&fdy, &gw, &g).unwrap()), "{}", what("backward data"));
            let dw = gpu.depthwise_conv2d_backward_filter(&gx, &gdy, &g).unwrap();
            assert_eq!(gpu.stored_format(&dw), StoredFormat::F32, "{}", what("dW"));
            assert_eq!(bits(&dw), bits(&gpu.depthwise_conv2d_backward_filter(&fx, &fdy, &g).unwrap()), "{}", what("backward filter"));
            let log = gpu.take_kernel_log();
            let forward = if shape.is_empty() { "depthwise_nhwc_forward".to_string() } else { format!("depthwise_nhwc_forward_{shape}") };
            assert!(log.iter().any(|k| *k == format!("conv_depthwise_nhwc::{forward}")), "{}: {log:?}", what("kernels"));
        }
    }
}

/// Which kernels run (each named once, at its first launch): the specialised ones, the filter gradient's chunks summed by splitk_reduce
/// when the batch's pixels fill several blocks, the generic ones for a geometry they do not take.
#[test]
fn nhwc_depthwise_runs_the_specialised_kernels_where_they_apply() {
    let gpu = gpu();
    let run = |g: &ConvGeom| depthwise_kernels_run(&gpu, g);
    let nhwc = |c: Config| geom(c).with_layout(Layout::Nhwc);
    // MobileNetV2's stride-2 depthwise at a small size: 4 channels per thread, two chunks.
    let mobilenet = nhwc((2, 8, (32, 32), 8, (3, 3), (2, 2), (1, 1), (1, 1), 8));
    assert_eq!(
        run(&mobilenet),
        [
            PACK,
            "conv_depthwise_nhwc::depthwise_nhwc_forward_3x3_s2_v4",
            "conv_depthwise_nhwc::depthwise_nhwc_backward_data_3x3_s2_v4",
            "conv_depthwise_nhwc::depthwise_nhwc_backward_filter_3x3_s2_v4",
            "gemm::splitk_reduce"
        ]
    );
    // A 7x7 window: the generic kernels, one chunk.
    let wide = nhwc((1, 3, (8, 8), 3, (7, 7), (1, 1), (3, 3), (1, 1), 3));
    assert_eq!(
        run(&wide),
        [PACK, "conv_depthwise_nhwc::depthwise_nhwc_forward", "conv_depthwise_nhwc::depthwise_nhwc_backward_data", "conv_depthwise_nhwc::depthwise_nhwc_backward_filter"]
    );
}

/// The kernels a depthwise convolution's three passes of `g` launch on zeros.
fn depthwise_kernels_run(gpu: &GpuBackend, g: &ConvGeom) -> Vec<String> {
    let (x, w, dy) = (gpu.zeros(g.x_len()).unwrap(), gpu.zeros(g.weight_len()).unwrap(), gpu.zeros(g.y_len()).unwrap());
    gpu.take_kernel_log();
    gpu.depthwise_conv2d_forward(&x, &w, None, g).unwrap();
    gpu.depthwise_conv2d_backward_data(&dy, &w, g).unwrap();
    gpu.depthwise_conv2d_backward_filter(&x, &dy, g).unwrap();
    gpu.take_kernel_log()
}

// ---- Channels-first depthwise kernels on stored formats (kernels/conv.cu).

/// Channels-first depthwise geometries and the kernels their forward, data-gradient and
/// filter-gradient passes run: tiled with windows copied in quads (x rows of 32, 16, 20, 72 and
/// 36 values, dy rows of 32, 8, 20, 72 and 40) and a value at a time (rows of 14, 15, 18 and
/// 33); writing y or dx 4 values per thread on 32 x 32 tiles (the `_vec4` kernels: rows of 32,
/// 8, 20 and 72 values, one, two or three tiles a side, at strides 1 and 2, multiplier 2 and
/// dilation 2) and a value per thread on 8 x 32 tiles (rows of 14, 15, 18 and 33, and rows of 8
/// whose 32-row tile's window would not fit in shared memory while the 8-row one's does: stride
/// 4); and untiled: a forward and filter window too large for shared memory (strides 8 and 4),
/// a data-gradient one (dilation 8, multiplier 8).
fn channels_first_depthwise_cases() -> Vec<(ConvGeom, [&'static str; 3])> {
    let tiled = ["depthwise_forward_tiled", "depthwise_backward_data_tiled", "depthwise_backward_filter_tiled"];
    let quads = ["depthwise_forward_tiled_vec4", "depthwise_backward_data_tiled_vec4", "depthwise_backward_filter_tiled"];
    [
        ((2, 4, (16, 32), 4, (3, 3), (1, 1), (1, 1), (1, 1), 4), quads),
        ((1, 4, (14, 16), 8, (3, 3), (2, 2), (1, 1), (1, 1), 4), quads),
        ((1, 2, (12, 20), 4, (3, 3), (1, 1), (2, 2), (2, 2), 2), quads),
        ((1, 2, (40, 72), 2, (3, 3), (1, 1), (1, 1), (1, 1), 2), quads),
        ((2, 2, (70, 36), 2, (3, 3), (2, 2), (1, 1), (1, 1), 2), ["depthwise_forward_tiled", "depthwise_backward_data_tiled_vec4", "depthwise_backward_filter_tiled"]),
        ((2, 3, (9, 14), 3, (5, 5), (1, 1), (2, 2), (1, 1), 3), tiled),
        ((1, 2, (33, 33), 2, (5, 5), (4, 4), (0, 0), (1, 1), 2), ["depthwise_forward_tiled", "depthwise_backward_data_tiled", "depthwise_backward_filter"]),
        ((1, 2, (40, 40), 2, (5, 5), (8, 8), (0, 0), (1, 1), 2), ["depthwise_forward", "depthwise_backward_data_tiled_vec4", "depthwise_backward_filter"]),
        ((1, 2, (24, 15), 16, (5, 5), (1, 1), (16, 16), (8, 8), 2), ["depthwise_forward_tiled", "depthwise_backward_data", "depthwise_backward_filter_tiled"]),
    ]
    .into_iter()
    .map(|(c, kernels)| (geom(c), kernels))
    .collect()
}

/// The channels-first depthwise passes on x and dy stored in f32, bf16 and fp16, tiled (windows
/// copied in quads and a value at a time) and untiled: y is stored in x's format, dx in dy's,
/// and both equal the CPU's f64 results on the same rounded values rounded once (within one
/// unit of the format's last place where the sums differ across a rounding boundary) and, bit
/// for bit, the f32 kernels' results on the same values rounded once; dW stays f32 and equals
/// the f32 run's bit for bit (the same sums of exactly widened values). No pass converts a
/// buffer.
#[test]
fn channels_first_depthwise_reads_and_writes_stored_formats() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    for (p, tol) in [(Precision::Fp32, ATOL), (Precision::Bf16, 8e-3), (Precision::Fp16, 1e-3)] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let within = Agreement::Within { atol: tol, rtol: tol };
        for (i, (g, kernels)) in channels_first_depthwise_cases().into_iter().enumerate() {
            let seed = 8100 + 10 * i as u64;
            let (x, w, b, dy) = (values_at(p, g.x_len(), seed), values(g.weight_len(), seed + 1), values(g.c_out, seed + 2), values_at(p, g.y_len(), seed + 3));
            let (cx, cw, cb, cdy) = (widened(&cpu, &x), widened(&cpu, &w), widened(&cpu, &b), widened(&cpu, &dy));
            let (fx, fdy, gw, gb) = (gpu.upload(&x).unwrap(), gpu.upload(&dy).unwrap(), gpu.upload(&w).unwrap(), gpu.upload(&b).unwrap());
            let (gx, gdy) = (stored.on_gpu(&x), stored.on_gpu(&dy));
            let what = |pass: &str| format!("nchw depthwise {pass} {p} {g:?}");
            let rounded = |buf: &ferronet::gpu::GpuBuf<f32>| gpu.download(buf).unwrap().into_iter().map(|v| p.round(v)).collect::<Vec<_>>();
            let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
            gpu.take_kernel_log();
            let y = gpu.depthwise_conv2d_forward(&gx, &gw, Some(&gb), &g).unwrap();
            let dx = gpu.depthwise_conv2d_backward_data(&gdy, &gw, &g).unwrap();
            let dw = gpu.depthwise_conv2d_backward_filter(&gx, &gdy, &g).unwrap();
            let log = gpu.take_kernel_log();
            let (y, dx) = (stored.download(&what("y"), &y), stored.download(&what("dx"), &dx));
            stored.compare(&what("forward"), &y, &stored.as_stored(cpu.depthwise_conv2d_forward(&cx, &cw, Some(&cb), &g).unwrap()), within);
            stored.compare(&what("backward data"), &dx, &stored.as_stored(cpu.depthwise_conv2d_backward_data(&cdy, &cw, &g).unwrap()), within);
            assert_eq!(gpu.stored_format(&dw), StoredFormat::F32, "{}", what("dW"));
            assert_close(&what("backward filter"), &gpu.download(&dw).unwrap(), &cpu.depthwise_conv2d_backward_filter(&cx, &cdy, &g).unwrap(), ATOL, RTOL);
            for kernel in kernels {
                assert!(log.iter().any(|k| *k == format!("conv::{kernel}")), "{}: {log:?}", what(kernel));
            }
            assert!(log.iter().all(|k| k.starts_with("conv::") || k == "gemm::splitk_reduce"), "{}: {log:?}", what("passes"));
            // The f32 kernels on the same values, rounded once.
            assert_eq!(bits(y), bits(rounded(&gpu.depthwise_conv2d_forward(&fx, &gw, Some(&gb), &g).unwrap())), "{}", what("forward"));
            assert_eq!(bits(dx), bits(rounded(&gpu.depthwise_conv2d_backward_data(&fdy, &gw, &g).unwrap())), "{}", what("backward data"));
            assert_eq!(bits(gpu.download(&dw).unwrap()), bits(gpu.download(&gpu.depthwise_conv2d_backward_filter(&fx, &fdy, &g).unwrap()).unwrap()), "{}", what("backward filter"));
        }
    }
}

/// The tiled forward copies its input window in quads where x's rows are whole quads (W = 32):
/// per block, one access per warp of the window's 10 rows of 10 quads (40 columns: the 34 the
/// tile reads, 3 more at most to start at a multiple of 4, rounded up to quads), 4 warps,
/// against one per warp of its values where they are not (W = 30: the 32 x 32 tile's window of
/// 34 x 34 values, whose first 10 rows, 340 values, lie in the plane: 11 warps). Every warp
/// with outputs adds its 9 weight loads and its stores: the 8 x 32 tile's 8 warps a row each
/// where y's rows of 30 are not whole quads, the 32 x 32 tile's 2 warps 4 rows each in one
/// access where they are (28). The 16-bit store moves 2 bytes per value; bias-free, so no bias
/// load.
#[test]
fn channels_first_depthwise_windows_move_four_values_per_access() {
    let cpu = CpuBackend::new();
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let gpu = GpuBackend::new(driver.clone());
    let (taps, planes) = (9, 2);
    for p in [Precision::Fp32, Precision::Bf16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        for (w, window_accesses, output_warps, kernel) in [(32, 4, 8, "depthwise_forward_tiled"), (30, 11, 2, "depthwise_forward_tiled_vec4")] {
            let g = geom((1, 2, (10, w), 2, (3, 3), (1, 1), (0, 0), (1, 1), 2));
            let (x, wt) = (values_at(p, g.x_len(), 8300), values(g.weight_len(), 8301));
            let (gx, gw) = (stored.on_gpu(&x), gpu.upload(&wt).unwrap());
            driver.take_launch_stats();
            let y = gpu.depthwise_conv2d_forward(&gx, &gw, None, &g).unwrap();
            let stats = driver.take_launch_stats();
            let want = stored.as_stored(cpu.depthwise_conv2d_forward(&widened(&cpu, &x), &widened(&cpu, &wt), None, &g).unwrap());
            stored.compare(&format!("depthwise forward {g:?}"), &stored.download("y", &y), &want, Agreement::Within { atol: 8e-3, rtol: 8e-3 });
            let [s] = stats.as_slice() else { panic!("one launch: {stats:?}") };
            assert_eq!(s.kernel, format!("conv::{kernel}"));
            assert_eq!(s.global_accesses, (planes * (window_accesses + output_warps * (taps + 1))) as u64, "{p} W = {w}: window accesses");
            assert_eq!(s.global_store_bytes, (g.y_len() * p.stored_format().map_or(4, |f| f.bytes())) as u64, "{p} W = {w}: y stores");
        }
    }
}

/// The tiled forward and data-gradient kernels store 4 values per access where the rows they
/// write are whole quads. On 2 planes of 8 x 28 (3x3, stride 1, padding 1: y and dx take x's
/// shape), each block of the 32 x 32 tile copies its window in quads (34 x 34 values for the
/// forward, 35 x 35 for the data gradient, both from row -1 and column -4: 10 quads a row, of
/// which rows 1..=8, quads 1..=7, lie in the plane, windows items 11..=87: 3 warps), and its 2
/// warps with outputs (rows 0..=3 and 4..=7) load the 9 taps once each and store the warp's 4
/// rows of 28 in one access: 56 quads in 2 accesses. On 8 x 30 the 8 x 32 tile runs, a value per
/// thread: windows of 10 x 34 (forward) and 11 x 35 (data gradient) values from row and column
/// -1, of which items 35..=302 and 36..=310 lie in the plane (warps 1..=9 of 32 items), and 8
/// warps a row, each with its 9 tap loads and a store of 30 values in one access, but for the
/// data gradient's row 0, which no output reaches through the filter's last row (3 taps fewer;
/// the 32 x 32 tile's warp sums rows 1..=3 through it too). The stores move 4 and 2 bytes per
/// value (f32, bf16) either way.
#[test]
fn channels_first_depthwise_tiles_store_four_values_per_access() {
    let cpu = CpuBackend::new();
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let gpu = GpuBackend::new(driver.clone());
    let (taps, planes) = (9, 2);
    let within = Agreement::Within { atol: 8e-3, rtol: 8e-3 };
    for p in [Precision::Fp32, Precision::Bf16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let bytes = p.stored_format().map_or(4, |f| f.bytes());
        // (W, kernel suffix, window accesses, warps with outputs, the data gradient's taps skipped)
        for (w, suffix, window_accesses, output_warps, skipped) in [(28, "_vec4", 3, 2, 0), (30, "", 9, 8, 3)] {
            let g = geom((1, 2, (8, w), 2, (3, 3), (1, 1), (1, 1), (1, 1), 2));
            // Per plane: the window, and each warp with outputs' tap loads and one store.
            let accesses = |skipped: usize| (planes * (window_accesses + output_warps * (taps + 1) - skipped)) as u64;
            let (x, dy, wt) = (values_at(p, g.x_len(), 8400), values_at(p, g.y_len(), 8401), values(g.weight_len(), 8402));
            let (gx, gdy, gw) = (stored.on_gpu(&x), stored.on_gpu(&dy), gpu.upload(&wt).unwrap());
            let cw = widened(&cpu, &wt);
            driver.take_launch_stats();
            let y = gpu.depthwise_conv2d_forward(&gx, &gw, None, &g).unwrap();
            let dx = gpu.depthwise_conv2d_backward_data(&gdy, &gw, &g).unwrap();
            let stats = driver.take_launch_stats();
            let want_y = stored.as_stored(cpu.depthwise_conv2d_forward(&widened(&cpu, &x), &cw, None, &g).unwrap());
            stored.compare(&format!("depthwise forward {g:?}"), &stored.download("y", &y), &want_y, within);
            let want_dx = stored.as_stored(cpu.depthwise_conv2d_backward_data(&widened(&cpu, &dy), &cw, &g).unwrap());
            stored.compare(&format!("depthwise backward data {g:?}"), &stored.download("dx", &dx), &want_dx, within);
            let [forward, data] = stats.as_slice() else { panic!("two launches: {stats:?}") };
            for (s, base, len, skipped) in [(forward, "depthwise_forward_tiled", g.y_len(), 0), (data, "depthwise_backward_data_tiled", g.x_len(), skipped)] {
                assert_eq!(s.kernel, format!("conv::{base}{suffix}"), "{p} W = {w}");
                assert_eq!(s.global_accesses, accesses(skipped), "{p} W = {w}: {base}'s accesses");
                assert_eq!(s.global_store_bytes, (len * bytes) as u64, "{p} W = {w}: {base}'s stores");
            }
        }
    }
}
