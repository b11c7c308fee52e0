//! GPU pooling against the f64 CPU reference: max (values, argmax, ties, NaN), average (both
//! divisor rules) and adaptive average, forward and backward, with overlapping windows, padding,
//! ceil mode and odd sizes; channels last against the channels-first reference reordered. Rows
//! a multiple of 4 long run the kernels that take 4 values per thread (`_vec4`).

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, upload_pair, widen};
use ferronet_test_support::stored::{Agreement, StoredPrecision};

use ferronet::cpu::layout::nchw_to_nhwc;
use ferronet::cpu::{CpuBackend, CpuBuf};
use ferronet::device::Device;
use ferronet::gpu::{GpuBackend, GpuBuf};
use ferronet::sim::{SimDriver, SimOptions};
use std::sync::Arc;
use ferronet::ops::{AdaptivePoolGeom, PoolGeom, PoolOps};
use ferronet::precision::Precision;
use ferronet::shape::Layout;

const ATOL: f64 = 1e-5;
const RTOL: f64 = 1e-5;

/// (N, C, (H, W), kernel, stride, padding, ceil_mode)
type Case = (usize, usize, (usize, usize), (usize, usize), (usize, usize), (usize, usize), bool);

const CASES: [Case; 9] = [
    (2, 3, (7, 7), (3, 3), (2, 2), (0, 0), false), // overlapping windows
    (1, 2, (6, 6), (3, 3), (2, 2), (0, 0), true),  // ceil mode: a clipped last window
    (2, 2, (9, 8), (3, 2), (2, 2), (1, 1), true),  // padding and ceil mode; 4 inputs per thread backwards
    (1, 3, (5, 7), (2, 2), (2, 2), (0, 0), false), // disjoint windows, odd size drops a row
    (2, 1, (8, 5), (3, 3), (1, 1), (1, 1), false), // stride 1, every input in up to 9 windows
    (1, 2, (11, 6), (5, 3), (3, 2), (2, 1), true),
    // 4 values per thread both ways (W = 16 -> OW = 8): the stem's 3x3 stride-2 padded pool, and
    // stride 1 (W = OW = 12) where a thread's windows overlap and pad both row ends.
    (2, 2, (8, 16), (3, 3), (2, 2), (1, 1), false),
    (2, 1, (5, 12), (3, 3), (1, 1), (1, 1), false),
    // 4 outputs per thread over rows of 9 inputs, read value by value.
    (1, 3, (6, 9), (2, 2), (2, 2), (0, 0), false),
];

/// The channels-first kernel `base` writing rows of `row` values: 4 per thread (`_vec4`) when
/// `row` is a multiple of 4 (the test's buffers are all 16-byte aligned).
fn nchw_kernel(base: &str, row: usize) -> String {
    format!("pool::{base}{}", if row.is_multiple_of(4) { "_vec4" } else { "" })
}

fn geom(&(n, c, hw, k, s, p, ceil): &Case, count_include_pad: bool) -> PoolGeom {
    PoolGeom::new(n, c, hw, k, s, p, ceil, count_include_pad).unwrap()
}

#[test]
fn max_pool_matches_the_reference_values_indices_and_gradients() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    for (i, case) in CASES.iter().enumerate() {
        let g = geom(case, true);
        let x = random_f32(g.x_len(), 10 + i as u64, -1.0, 1.0);
        let dy = random_f32(g.y_len(), 20 + i as u64, -1.0, 1.0);
        let (gx, gdy) = (gpu.upload(&x).unwrap(), gpu.upload(&dy).unwrap());
        gpu.take_kernel_log();
        let (y, idx) = gpu.max_pool2d_forward(&gx, &g).unwrap();
        assert_eq!(gpu.take_kernel_log(), [nchw_kernel("max_pool_forward", g.ow)]);
        let (y_ref, idx_ref) = cpu.max_pool2d_forward(&cpu.upload(&widen(&x)).unwrap(), &g).unwrap();
        assert_close(&format!("max forward {g:?}"), &gpu.download(&y).unwrap(), &y_ref, 0.0, 0.0);
        assert_eq!(gpu.download_idx(&idx).unwrap(), idx_ref.to_vec(), "max argmax {g:?}");
        let dx = gpu.max_pool2d_backward(&gdy, &idx, &g).unwrap();
        assert_eq!(gpu.take_kernel_log(), [nchw_kernel("max_pool_backward", g.w)]);
        let want = cpu.max_pool2d_backward(&cpu.upload(&widen(&dy)).unwrap(), &idx_ref, &g).unwrap();
        assert_close(&format!("max backward {g:?}"), &gpu.download(&dx).unwrap(), &want, ATOL, RTOL);
    }
}

/// Random valid geometries (fixed seed): kernels 1..=4, strides 1..=3, legal padding, both modes.
fn random_cases() -> Vec<Case> {
    let mut rng = ferronet::rng::Rng::new(5);
    let mut pick = |lo: usize, hi: usize| lo + rng.below((hi - lo + 1) as u64) as usize;
    let mut out = Vec::new();
    while out.len() < 8 {
        let k = (pick(1, 4), pick(1, 4));
        let case = (pick(1, 2), pick(1, 3), (pick(3, 12), pick(3, 12)), k, (pick(1, 3), pick(1, 3)), (pick(0, k.0 / 2), pick(0, k.1 / 2)), pick(0, 1) == 1);
        if PoolGeom::new(case.0, case.1, case.2, case.3, case.4, case.5, case.6, true).is_ok() {
            out.push(case);
        }
    }
    out
}

#[test]
fn random_geometries_match_the_reference() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    for (i, case) in random_cases().iter().enumerate() {
        let g = geom(case, i % 2 == 0);
        let x = random_f32(g.x_len(), 70 + i as u64, -1.0, 1.0);
        let dy = random_f32(g.y_len(), 80 + i as u64, -1.0, 1.0);
        let ((gx, cx), (gdy, cdy)) = (upload_pair(&gpu, &cpu, &x), upload_pair(&gpu, &cpu, &dy));
        let (y, idx) = gpu.max_pool2d_forward(&gx, &g).unwrap();
        let (y_ref, idx_ref) = cpu.max_pool2d_forward(&cx, &g).unwrap();
        assert_close(&format!("max forward {g:?}"), &gpu.download(&y).unwrap(), &y_ref, 0.0, 0.0);
        assert_eq!(gpu.download_idx(&idx).unwrap(), idx_ref.to_vec(), "max argmax {g:?}");
        let dx = gpu.max_pool2d_backward(&gdy, &idx, &g).unwrap();
        let want = cpu.max_pool2d_backward(&cdy, &idx_ref, &g).unwrap();
        assert_close(&format!("max backward {g:?}"), &gpu.download(&dx).unwrap(), &want, ATOL, RTOL);
        let y = gpu.avg_pool2d_forward(&gx, &g).unwrap();
        let want = cpu.avg_pool2d_forward(&cx, &g).unwrap();
        assert_close(&format!("avg forward {g:?}"), &gpu.download(&y).unwrap(), &want, ATOL, RTOL);
        let dx = gpu.avg_pool2d_backward(&gdy, &g).unwrap();
        let want = cpu.avg_pool2d_backward(&cdy, &g).unwrap();
        assert_close(&format!("avg backward {g:?}"), &gpu.download(&dx).unwrap(), &want, ATOL, RTOL);
    }
}

/// Ties and NaNs with one output per thread (5x5) and four (8x8: a thread's overlapping windows
/// see each value in the order one output's would).
#[test]
fn max_pool_ties_pick_the_first_element_and_nan_propagates() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    for (hw, nans) in [((5, 5), [7, 8]), ((8, 8), [10, 11])] {
        let g = geom(&(1, 1, hw, (3, 3), (1, 1), (1, 1), false), true);
        // Mostly equal values (ties everywhere) with two NaNs.
        let mut x: Vec<f32> = (0..g.x_len()).map(|i| if i % 3 == 0 { 1.0 } else { 0.5 }).collect();
        for i in nans {
            x[i] = f32::NAN;
        }
        gpu.take_kernel_log();
        let (y, idx) = gpu.max_pool2d_forward(&gpu.upload(&x).unwrap(), &g).unwrap();
        assert_eq!(gpu.take_kernel_log(), [nchw_kernel("max_pool_forward", g.ow)]);
        let (y_ref, idx_ref) = cpu.max_pool2d_forward(&cpu.upload(&widen(&x)).unwrap(), &g).unwrap();
        assert_eq!(gpu.download_idx(&idx).unwrap(), idx_ref.to_vec(), "{hw:?}");
        let y = gpu.download(&y).unwrap();
        for (got, want) in y.iter().zip(y_ref.iter()) {
            assert!(got.is_nan() == want.is_nan() && (got.is_nan() || *got as f64 == *want), "{hw:?}: {got} vs {want}");
        }
    }
}

#[test]
fn avg_pool_matches_the_reference_for_both_divisor_rules() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    for (i, case) in CASES.iter().enumerate() {
        for count_include_pad in [true, false] {
            let g = geom(case, count_include_pad);
            let x = random_f32(g.x_len(), 30 + i as u64, -1.0, 1.0);
            let dy = random_f32(g.y_len(), 40 + i as u64, -1.0, 1.0);
            let (gx, gdy) = (gpu.upload(&x).unwrap(), gpu.upload(&dy).unwrap());
            gpu.take_kernel_log();
            let y = gpu.avg_pool2d_forward(&gx, &g).unwrap();
            assert_eq!(gpu.take_kernel_log(), [nchw_kernel("avg_pool_forward", g.ow)]);
            let want = cpu.avg_pool2d_forward(&cpu.upload(&widen(&x)).unwrap(), &g).unwrap();
            assert_close(&format!("avg forward {g:?}"), &gpu.download(&y).unwrap(), &want, ATOL, RTOL);
            let dx = gpu.avg_pool2d_backward(&gdy, &g).unwrap();
            assert_eq!(gpu.take_kernel_log(), [nchw_kernel("avg_pool_backward", g.w)]);
            let want = cpu.avg_pool2d_backward(&cpu.upload(&widen(&dy)).unwrap(), &g).unwrap();
            assert_close(&format!("avg backward {g:?}"), &gpu.download(&dx).unwrap(), &want, ATOL, RTOL);
        }
    }
}

/// The channels-first adaptive pooling kernel forwards: global_avg_pool (`_vec4` when H*W is a
/// multiple of 4) for a 1x1 output, else the windowed kernel writing rows of OW values.
fn adaptive_forward_kernel(g: &AdaptivePoolGeom) -> String {
    if (g.oh, g.ow) == (1, 1) {
        nchw_kernel("global_avg_pool", g.h * g.w)
    } else {
        nchw_kernel("adaptive_avg_pool_forward", g.ow)
    }
}

/// And backwards, over rows of W inputs, or of H*W for a 1x1 output (a plane as one row).
fn adaptive_backward_kernel(g: &AdaptivePoolGeom) -> String {
    nchw_kernel("adaptive_avg_pool_backward", if (g.oh, g.ow) == (1, 1) { g.h * g.w } else { g.w })
}

#[test]
fn adaptive_avg_pool_matches_the_reference_for_any_ratio() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    // Divisible, non-divisible (overlapping ranges), global, and larger-than-input outputs; then
    // rows a multiple of 4 long: both ways, forwards only (W = 7), and overlapping ranges.
    let shapes = [((8, 6), (4, 3)), ((7, 5), (3, 2)), ((5, 6), (1, 1)), ((3, 2), (5, 4)), ((6, 8), (3, 4)), ((5, 7), (2, 4)), ((4, 12), (3, 8))];
    for (i, &(hw, out)) in shapes.iter().enumerate() {
        let g = AdaptivePoolGeom::new(2, 3, hw, out).unwrap();
        let x = random_f32(g.x_len(), 50 + i as u64, -1.0, 1.0);
        let dy = random_f32(g.y_len(), 60 + i as u64, -1.0, 1.0);
        let (gx, gdy) = (gpu.upload(&x).unwrap(), gpu.upload(&dy).unwrap());
        gpu.take_kernel_log();
        let y = gpu.adaptive_avg_pool2d_forward(&gx, &g).unwrap();
        assert_eq!(gpu.take_kernel_log(), [adaptive_forward_kernel(&g)]);
        let want = cpu.adaptive_avg_pool2d_forward(&cpu.upload(&widen(&x)).unwrap(), &g).unwrap();
        assert_close(&format!("adaptive forward {g:?}"), &gpu.download(&y).unwrap(), &want, ATOL, RTOL);
        let dx = gpu.adaptive_avg_pool2d_backward(&gdy, &g).unwrap();
        assert_eq!(gpu.take_kernel_log(), [adaptive_backward_kernel(&g)]);
        let want = cpu.adaptive_avg_pool2d_backward(&cpu.upload(&widen(&dy)).unwrap(), &g).unwrap();
        assert_close(&format!("adaptive backward {g:?}"), &gpu.download(&dx).unwrap(), &want, ATOL, RTOL);
    }
}

#[test]
fn mismatched_buffers_are_clear_errors() {
    let gpu = gpu();
    let g = geom(&CASES[0], true);
    let err = gpu.avg_pool2d_forward(&gpu.zeros(3).unwrap(), &g).err().expect("3 is not N*C*H*W").to_string();
    assert_eq!(err, format!("shape error: avg_pool2d: input has 3 elements but {} are needed", g.x_len()));
    let dy = gpu.zeros(g.y_len()).unwrap();
    let idx = gpu.upload_idx(&[0]).unwrap();
    let err = gpu.max_pool2d_backward(&dy, &idx, &g).err().expect("one index").to_string();
    assert!(err.contains("indices has 1 elements"), "{err}");
}

/// The pooling kernel `base` launched on channels-last tensors of `c` channels: float4 over four
/// channels where C % 4 == 0 (the test's buffers are all 16-byte aligned), else one channel.
fn nhwc_kernel(base: &str, c: usize) -> Vec<String> {
    vec![format!("pool::{base}_nhwc{}", if c.is_multiple_of(4) { "_vec4" } else { "" })]
}

#[test]
fn channels_last_max_and_avg_pooling_match_the_reordered_reference() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    for (i, &(n, _, (h, w), k, s, p, ceil)) in CASES.iter().enumerate() {
        for c in [3, 8] {
            let count_include_pad = i % 2 == 0;
            let g = geom(&(n, c, (h, w), k, s, p, ceil), count_include_pad);
            let nhwc = g.with_layout(Layout::Nhwc);
            let (x, dy) = (random_f32(g.x_len(), 90 + i as u64, -1.0, 1.0), random_f32(g.y_len(), 95 + i as u64, -1.0, 1.0));
            let (input, output) = ((c, h * w), (c, g.oh * g.ow));
            let (gx, gdy) = (gpu.upload(&nchw_to_nhwc(&x, input.0, input.1)).unwrap(), gpu.upload(&nchw_to_nhwc(&dy, output.0, output.1)).unwrap());
            let (cx, cdy) = (cpu.upload(&widen(&x)).unwrap(), cpu.upload(&widen(&dy)).unwrap());
            let what = format!("NHWC {g:?}");

            gpu.take_kernel_log();
            let (y, idx) = gpu.max_pool2d_forward(&gx, &nhwc).unwrap();
            assert_eq!(gpu.take_kernel_log(), nhwc_kernel("max_pool_forward", c));
            let (y_ref, idx_ref) = cpu.max_pool2d_forward(&cx, &g).unwrap();
            assert_close(&format!("max forward {what}"), &gpu.download(&y).unwrap(), &nchw_to_nhwc(&y_ref, output.0, output.1), 0.0, 0.0);
            assert_eq!(gpu.download_idx(&idx).unwrap(), nchw_to_nhwc(&idx_ref, output.0, output.1), "max argmax {what}");
            let dx = gpu.max_pool2d_backward(&gdy, &idx, &nhwc).unwrap();
            assert_eq!(gpu.take_kernel_log(), nhwc_kernel("max_pool_backward", c));
            let want = cpu.max_pool2d_backward(&cdy, &idx_ref, &g).unwrap();
            assert_close(&format!("max backward {what}"), &gpu.download(&dx).unwrap(), &nchw_to_nhwc(&want, input.0, input.1), ATOL, RTOL);

            let y = gpu.avg_pool2d_forward(&gx, &nhwc).unwrap();
            assert_eq!(gpu.take_kernel_log(), nhwc_kernel("avg_pool_forward", c));
            let want = cpu.avg_pool2d_forward(&cx, &g).unwrap();
            assert_close(&format!("avg forward {what}"), &gpu.download(&y).unwrap(), &nchw_to_nhwc(&want, output.0, output.1), ATOL, RTOL);
            let dx = gpu.avg_pool2d_backward(&gdy, &nhwc).unwrap();
            assert_eq!(gpu.take_kernel_log(), nhwc_kernel("avg_pool_backward", c));
            let want = cpu.avg_pool2d_backward(&cdy, &g).unwrap();
            assert_close(&format!("avg backward {what}"), &gpu.download(&dx).unwrap(), &nchw_to_nhwc(&want, input.0, input.1), ATOL, RTOL);
        }
    }
}

#[test]
fn channels_last_adaptive_and_global_average_pooling_match_the_reordered_reference() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    // Global pools over one and several 32-lane channel chunks (the last one partial), with and
    // without float4, and adaptive pools with overlapping and larger-than-input outputs.
    let shapes = [(3, (9, 9), (1, 1)), (8, (5, 6), (1, 1)), (130, (4, 3), (1, 1)), (136, (3, 3), (1, 1)), (4, (7, 5), (3, 2)), (3, (3, 2), (5, 4))];
    for (i, &(c, (h, w), out)) in shapes.iter().enumerate() {
        let g = AdaptivePoolGeom::new(2, c, (h, w), out).unwrap();
        let nhwc = g.with_layout(Layout::Nhwc);
        let (input, output) = ((c, h * w), (c, g.oh * g.ow));
        let (x, dy) = (random_f32(g.x_len(), 110 + i as u64, -1.0, 1.0), random_f32(g.y_len(), 120 + i as u64, -1.0, 1.0));
        let what = format!("NHWC {g:?}");
        gpu.take_kernel_log();
        let y = gpu.adaptive_avg_pool2d_forward(&gpu.upload(&nchw_to_nhwc(&x, input.0, input.1)).unwrap(), &nhwc).unwrap();
        let forward = if out == (1, 1) { format!("pool::global_avg_pool_nhwc{}", if c.is_multiple_of(4) { "_vec4" } else { "" }) } else { nhwc_kernel("adaptive_avg_pool_forward", c).remove(0) };
        assert_eq!(gpu.take_kernel_log(), [forward]);
        let want = cpu.adaptive_avg_pool2d_forward(&cpu.upload(&widen(&x)).unwrap(), &g).unwrap();
        assert_close(&format!("adaptive forward {what}"), &gpu.download(&y).unwrap(), &nchw_to_nhwc(&want, output.0, output.1), ATOL, RTOL);
        let dx = gpu.adaptive_avg_pool2d_backward(&gpu.upload(&nchw_to_nhwc(&dy, output.0, output.1)).unwrap(), &nhwc).unwrap();
        assert_eq!(gpu.take_kernel_log(), nhwc_kernel("adaptive_avg_pool_backward", c));
        let want = cpu.adaptive_avg_pool2d_backward(&cpu.upload(&widen(&dy)).unwrap(), &g).unwrap();
        assert_close(&format!("adaptive backward {what}"), &gpu.download(&dx).unwrap(), &nchw_to_nhwc(&want, input.0, input.1), ATOL, RTOL);
    }
}

/// 16-bit stored x and dy (bf16, fp16), both layouts (channels first with rows of 16 inputs and 8
/// outputs, and channels last with 8 channels: 4 values per thread, 8-byte accesses; channels
/// first with rows of 7 and channels last with 3: one), and global average pooling: y comes back in x's format
/// and dx in dy's, equal to the CPU's f32 results on the same rounded values rounded once; max
/// pooling's values and argmax bit for bit, sums within an ulp of the format (summation order).
#[test]
fn sixteen_bit_values_round_once_as_the_cpu_emulation() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    for p in [Precision::Bf16, Precision::Fp16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let sum = stored.one_ulp(ATOL);
        let check = |what: &str, got: &GpuBuf<f32>, want: CpuBuf<f32>, agreement: Agreement, (c, hw): (usize, usize), layout: Layout| {
            let what = format!("{what} {layout:?}");
            let want = stored.as_stored(want);
            let want = if layout == Layout::Nhwc { nchw_to_nhwc(&want, c, hw) } else { want };
            stored.compare(&what, &stored.download(&what, got), &want, agreement);
        };
        for (layout, c, (h, w), ceil) in [(Layout::Nchw, 3, (7, 7), true), (Layout::Nchw, 3, (8, 16), false), (Layout::Nhwc, 3, (7, 7), true), (Layout::Nhwc, 8, (7, 7), true)] {
            let g = geom(&(2, c, (h, w), (3, 3), (2, 2), (1, 1), ceil), false);
            let (input, output) = ((c, h * w), (c, g.oh * g.ow));
            let (x, dy) = (stored.rounded(&random_f32(g.x_len(), 130, -1.0, 1.0)), stored.rounded(&random_f32(g.y_len(), 131, -1.0, 1.0)));
            let in_layout = |v: &[f32], (c, hw): (usize, usize)| if layout == Layout::Nhwc { nchw_to_nhwc(v, c, hw) } else { v.to_vec() };
            let store = |v: &[f32], shape| stored.on_gpu(&in_layout(v, shape));
            let (gx, gdy) = (store(&x, input), store(&dy, output));
            let (cx, cdy) = (cpu.upload(&x).unwrap(), cpu.upload(&dy).unwrap());
            let on_gpu = g.with_layout(layout);

            gpu.take_kernel_log();
            let (y, idx) = gpu.max_pool2d_forward(&gx, &on_gpu).unwrap();
            let kernel = if layout == Layout::Nhwc { nhwc_kernel("max_pool_forward", c).remove(0) } else { nchw_kernel("max_pool_forward", g.ow) };
            assert_eq!(gpu.take_kernel_log(), [kernel], "{p}");
            let (y_ref, idx_ref) = cpu.max_pool2d_forward(&cx, &g).unwrap();
            check("max forward", &y, y_ref, Agreement::Exact, output, layout);
            assert_eq!(gpu.download_idx(&idx).unwrap(), in_layout_idx(&idx_ref, output, layout), "{p} max argmax {layout:?}");
            let dx = gpu.max_pool2d_backward(&gdy, &idx, &on_gpu).unwrap();
            check("max backward", &dx, cpu.max_pool2d_backward(&cdy, &idx_ref, &g).unwrap(), sum, input, layout);
            check("avg forward", &gpu.avg_pool2d_forward(&gx, &on_gpu).unwrap(), cpu.avg_pool2d_forward(&cx, &g).unwrap(), sum, output, layout);
            check("avg backward", &gpu.avg_pool2d_backward(&gdy, &on_gpu).unwrap(), cpu.avg_pool2d_backward(&cdy, &g).unwrap(), sum, input, layout);

            for out in [(1, 1), (3, 2), (2, 4)] {
                let a = AdaptivePoolGeom::new(2, c, (h, w), out).unwrap();
                let pooled = (c, out.0 * out.1);
                let ady = stored.rounded(&random_f32(a.y_len(), 132, -1.0, 1.0));
                let y = gpu.adaptive_avg_pool2d_forward(&gx, &a.with_layout(layout)).unwrap();
                check(&format!("adaptive {out:?} forward"), &y, cpu.adaptive_avg_pool2d_forward(&cx, &a).unwrap(), sum, pooled, layout);
                let dx = gpu.adaptive_avg_pool2d_backward(&store(&ady, pooled), &a.with_layout(layout)).unwrap();
                let want = cpu.adaptive_avg_pool2d_backward(&cpu.upload(&ady).unwrap(), &a).unwrap();
                check(&format!("adaptive {out:?} backward"), &dx, want, sum, input, layout);
            }
        }
    }
}

/// Max-pool indices `idx` ([N, C, OH*OW] of plane offsets) in `layout`'s order.
fn in_layout_idx(idx: &[u32], (c, hw): (usize, usize), layout: Layout) -> Vec<u32> {
    if layout == Layout::Nhwc {
        nchw_to_nhwc(idx, c, hw)
    } else {
        idx.to_vec()
    }
}

/// On the simulator, channels-first pooling of 16x16 planes to 8x8 (2x2 windows, stride 2) moves
/// 4 values per lane in every access of x, y, dy, dx and the indices (16 bytes of f32, 8 of bf16;
/// indices 16). In warp accesses of 128 values, `x` covers the input and `y` the output once.
/// Forwards a thread's 4 outputs read 2 window rows of 8 inputs (2 pieces each: x once over) and
/// write y (and the indices) once; backwards a thread's 4 inputs lie in 2 windows of one output
/// row, one piece of dy (and of the indices), so the threads of 2 outputs' 8 inputs read it each.
#[test]
fn channels_first_pooling_moves_four_values_per_lane() {
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let (gpu, cpu) = (GpuBackend::new(driver.clone()), CpuBackend::new());
    let g = geom(&(1, 8, (16, 16), (2, 2), (2, 2), (0, 0), false), true);
    let a = AdaptivePoolGeom::new(1, 8, (16, 16), (8, 8)).unwrap();
    let (x, y) = ((g.x_len() / 128) as u64, (g.y_len() / 128) as u64);
    for p in [Precision::Fp32, Precision::Bf16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let gx = stored.on_gpu(&random_f32(g.x_len(), 140, -1.0, 1.0));
        let gdy = stored.on_gpu(&random_f32(g.y_len(), 141, -1.0, 1.0));
        driver.take_launch_stats();
        let (_, idx) = gpu.max_pool2d_forward(&gx, &g).unwrap();
        gpu.max_pool2d_backward(&gdy, &idx, &g).unwrap();
        gpu.avg_pool2d_forward(&gx, &g).unwrap();
        gpu.avg_pool2d_backward(&gdy, &g).unwrap();
        gpu.adaptive_avg_pool2d_forward(&gx, &a).unwrap();
        gpu.adaptive_avg_pool2d_backward(&gdy, &a).unwrap();
        let stats: Vec<_> = driver.take_launch_stats().into_iter().filter(|s| s.kernel.starts_with("pool::")).collect();
        let accesses: Vec<_> = stats.iter().map(|s| (s.kernel.as_str(), s.global_accesses)).collect();
        let want = [
            ("pool::max_pool_forward_vec4", x + 2 * y),
            ("pool::max_pool_backward_vec4", 3 * x),
            ("pool::avg_pool_forward_vec4", x + y),
            ("pool::avg_pool_backward_vec4", 2 * x),
            ("pool::adaptive_avg_pool_forward_vec4", x + y),
            ("pool::adaptive_avg_pool_backward_vec4", 2 * x),
        ];
        assert_eq!(accesses, want, "{p}: one access per 4 values per lane");
        let size = if p == Precision::Fp32 { 4 } else { 2 };
        for forward in [&stats[0], &stats[2], &stats[4]] {
            assert_eq!(forward.global_load_bytes, (size * g.x_len()) as u64, "{p} {}: x read once", forward.kernel);
        }
    }
}

/// Channels-first global average pooling, forwards and backwards, against the f64 CPU reference
/// rounded once to the stored format (f32, bf16, fp16): planes of H*W a multiple of 4 (4x4, 8x8,
/// 7x8, and 6x6 whose rows are not) read 4 values per access, the others (7x7, 3x3) one. On the
/// simulator, forwards each run of lanes (a power of two up to 32: a lane per 4 pieces of the
/// plane, but enough lanes for a 32-byte sector per load and no more than the pieces) reads the
/// plane's pieces once, so a warp makes ceil(pieces / run) loads and one store of the means;
/// backwards a warp writes 32 groups of 4 (or 32 values) and reads their planes' dy in one access
/// each.
#[test]
fn channels_first_global_average_pooling_reads_four_values_per_access() {
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let (gpu, cpu) = (GpuBackend::new(driver.clone()), CpuBackend::new());
    for p in [Precision::Fp32, Precision::Bf16, Precision::Fp16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let size = if p == Precision::Fp32 { 4 } else { 2 };
        for (i, hw) in [(4, 4), (8, 8), (7, 8), (6, 6), (7, 7), (3, 3)].into_iter().enumerate() {
            let g = AdaptivePoolGeom::new(2, 8, hw, (1, 1)).unwrap();
            let (planes, plane) = (g.y_len(), hw.0 * hw.1);
            let x = stored.rounded(&random_f32(g.x_len(), 150 + i as u64, -1.0, 1.0));
            let dy = stored.rounded(&random_f32(g.y_len(), 160 + i as u64, -1.0, 1.0));
            let what = format!("global pool {hw:?}");
            driver.take_launch_stats();
            let y = gpu.adaptive_avg_pool2d_forward(&stored.on_gpu(&x), &g).unwrap();
            let dx = gpu.adaptive_avg_pool2d_backward(&stored.on_gpu(&dy), &g).unwrap();
            let stats: Vec<_> = driver.take_launch_stats().into_iter().filter(|s| s.kernel.starts_with("pool::")).collect();
            let want = cpu.adaptive_avg_pool2d_forward(&cpu.upload(&widen(&x)).unwrap(), &g).unwrap();
            stored.check(&format!("{what} forward"), &y, want, stored.one_ulp(ATOL));
            let want = cpu.adaptive_avg_pool2d_backward(&cpu.upload(&widen(&dy)).unwrap(), &g).unwrap();
            stored.check(&format!("{what} backward"), &dx, want, stored.one_ulp(ATOL));

            let lanes = if plane % 4 == 0 { 4 } else { 1 };
            let pieces = plane / lanes;
            let run = pieces.div_ceil(4).max(32 / (lanes * size)).min(pieces).next_power_of_two().min(32);
            let forward_warps = (planes * run).div_ceil(32);
            let backward_warps = g.x_len().div_ceil(32 * lanes);
            let accesses: Vec<_> = stats.iter().map(|s| (s.kernel.clone(), s.global_accesses)).collect();
            let want = [
                (adaptive_forward_kernel(&g), (forward_warps * (pieces.div_ceil(run) + 1)) as u64),
                (adaptive_backward_kernel(&g), (2 * backward_warps) as u64),
            ];
            assert_eq!(accesses, want, "{p} {what}: {lanes} values per access");
            assert_eq!(stats[0].global_load_bytes, (size * g.x_len()) as u64, "{p} {what}: x read once");
            assert_eq!(stats[0].global_store_bytes, (size * planes) as u64, "{p} {what}: y written once");
        }
    }
}
