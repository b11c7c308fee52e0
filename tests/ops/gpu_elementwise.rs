//! GPU elementwise ops and channel broadcasts against the f64 CPU reference.

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, random_nchw, upload_pair, widen};
use ferronet_test_support::stored::{Agreement, StoredPrecision};

use ferronet::cpu::layout::nchw_to_nhwc;
use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::gpu::GpuBackend;
use ferronet::ops::{ChannelBroadcast, ElementwiseOps, PrecisionOps};
use ferronet::precision::{Precision, StoredFormat};
use ferronet::shape::Layout;
use ferronet::sim::{LaunchStats, SimDriver, SimOptions};
use std::sync::Arc;

/// [N, C, HW] shapes with odd sizes, a one-image batch and more values per channel than a block
/// has threads (random ones are added). Channels first, HW 300 reduces 4 values per access,
/// the others one.
const SHAPES: [(usize, usize, usize); 5] = [(1, 3, 35), (5, 3, 35), (2, 1, 1), (3, 7, 300), (5, 2, 300)];

#[test]
fn add_mul_and_mul_backward_match_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    for (len, seed) in [(1, 1), (37, 2), (1001, 3)] {
        let a = random_f32(len, seed, -3.0, 3.0);
        let b = random_f32(len, seed + 10, -3.0, 3.0);
        let dy = random_f32(len, seed + 20, -1.0, 1.0);
        let [(ga, ca), (gb, cb), (gdy, cdy)] = [&a, &b, &dy].map(|v| upload_pair(&gpu, &cpu, v));

        let got = gpu.download(&gpu.add(&ga, &gb).unwrap()).unwrap();
        assert_close("add", &got, &cpu.add(&ca, &cb).unwrap(), 1e-6, 1e-6);
        let got = gpu.download(&gpu.mul(&ga, &gb).unwrap()).unwrap();
        assert_close("mul", &got, &cpu.mul(&ca, &cb).unwrap(), 1e-6, 1e-6);
        let (da, db) = gpu.mul_backward(&ga, &gb, &gdy).unwrap();
        let (want_da, want_db) = cpu.mul_backward(&ca, &cb, &cdy).unwrap();
        assert_close("mul backward da", &gpu.download(&da).unwrap(), &want_da, 1e-6, 1e-6);
        assert_close("mul backward db", &gpu.download(&db).unwrap(), &want_db, 1e-6, 1e-6);
    }
}

#[test]
fn channel_broadcasts_and_their_reductions_match_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    for (seed, (n, c, hw)) in SHAPES.into_iter().chain(random_nchw(4, 77)).enumerate() {
        for per_sample in [false, true] {
            let g = ChannelBroadcast { n, c, hw, per_sample, layout: Layout::Nchw };
            let what = format!("N={n} C={c} HW={hw} per_sample={per_sample}");
            let seed = seed as u64 * 10;
            let x = random_f32(g.x_len(), seed, -2.0, 2.0);
            let s = random_f32(g.operand_len(), seed + 1, -2.0, 2.0);
            let dy = random_f32(g.x_len(), seed + 2, -1.0, 1.0);
            let [(gx, cx), (gs, cs), (gdy, cdy)] = [&x, &s, &dy].map(|v| upload_pair(&gpu, &cpu, v));

            let got = gpu.download(&gpu.add_channel(&gx, &gs, &g).unwrap()).unwrap();
            assert_close(&format!("add_channel {what}"), &got, &cpu.add_channel(&cx, &cs, &g).unwrap(), 1e-6, 1e-6);
            let got = gpu.download(&gpu.add_channel_backward(&gdy, &g).unwrap()).unwrap();
            let want = cpu.add_channel_backward(&cdy, &g).unwrap();
            assert_close(&format!("add_channel backward {what}"), &got, &want, 1e-5, 1e-5);

            let got = gpu.download(&gpu.mul_channel(&gx, &gs, &g).unwrap()).unwrap();
            assert_close(&format!("mul_channel {what}"), &got, &cpu.mul_channel(&cx, &cs, &g).unwrap(), 1e-6, 1e-6);
            let (dx, ds) = gpu.mul_channel_backward(&gx, &gs, &gdy, &g).unwrap();
            let (want_dx, want_ds) = cpu.mul_channel_backward(&cx, &cs, &cdy, &g).unwrap();
            assert_close(&format!("mul_channel backward dx {what}"), &gpu.download(&dx).unwrap(), &want_dx, 1e-6, 1e-6);
            assert_close(&format!("mul_channel backward ds {what}"), &gpu.download(&ds).unwrap(), &want_ds, 1e-5, 1e-5);
        }
    }
}

#[test]
fn channels_last_broadcasts_and_their_reductions_match_the_reordered_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    // Besides SHAPES: two 32-channel chunks (the last of 8), and C = 24 over 4 x 81 pixels, both
    // reduced 4 channels per thread (the odd C of SHAPES one).
    let shapes = SHAPES.into_iter().chain([(2, 40, 100), (4, 24, 81)]).chain(random_nchw(3, 78));
    for (seed, (n, c, hw)) in shapes.enumerate() {
        for per_sample in [false, true] {
            let g = ChannelBroadcast { n, c, hw, per_sample, layout: Layout::Nchw };
            let nhwc = ChannelBroadcast { layout: Layout::Nhwc, ..g };
            let what = format!("NHWC N={n} C={c} HW={hw} per_sample={per_sample}");
            let seed = 500 + seed as u64 * 10;
            let x = random_f32(g.x_len(), seed, -2.0, 2.0);
            let s = random_f32(g.operand_len(), seed + 1, -2.0, 2.0);
            let dy = random_f32(g.x_len(), seed + 2, -1.0, 1.0);
            let [(_, cx), (gs, cs), (_, cdy)] = [&x, &s, &dy].map(|v| upload_pair(&gpu, &cpu, v));
            let [gx, gdy] = [&x, &dy].map(|v| gpu.upload(&nchw_to_nhwc(v, c, hw)).unwrap());
            let channels_last = |v: &[f64]| nchw_to_nhwc(v, c, hw);
            gpu.take_kernel_log();

            let got = gpu.download(&gpu.add_channel(&gx, &gs, &nhwc).unwrap()).unwrap();
            assert_close(&format!("add_channel {what}"), &got, &channels_last(&cpu.add_channel(&cx, &cs, &g).unwrap()), 1e-6, 1e-6);
            assert_eq!(gpu.take_kernel_log(), ["elementwise::add_channel_nhwc"]);
            let got = gpu.download(&gpu.add_channel_backward(&gdy, &nhwc).unwrap()).unwrap();
            assert_close(&format!("add_channel backward {what}"), &got, &cpu.add_channel_backward(&cdy, &g).unwrap(), 1e-5, 1e-5);
            assert_eq!(gpu.take_kernel_log(), ["elementwise::channel_sum_nhwc"]);

            let got = gpu.download(&gpu.mul_channel(&gx, &gs, &nhwc).unwrap()).unwrap();
            assert_close(&format!("mul_channel {what}"), &got, &channels_last(&cpu.mul_channel(&cx, &cs, &g).unwrap()), 1e-6, 1e-6);
            let (dx, ds) = gpu.mul_channel_backward(&gx, &gs, &gdy, &nhwc).unwrap();
            let (want_dx, want_ds) = cpu.mul_channel_backward(&cx, &cs, &cdy, &g).unwrap();
            assert_close(&format!("mul_channel backward dx {what}"), &gpu.download(&dx).unwrap(), &channels_last(&want_dx), 1e-6, 1e-6);
            assert_close(&format!("mul_channel backward ds {what}"), &gpu.download(&ds).unwrap(), &want_ds, 1e-5, 1e-5);
            // The partial sums of several row ranges are added by channel_sum_nhwc.
            let log = gpu.take_kernel_log();
            assert_eq!(log[..2], ["elementwise::mul_channel_nhwc", "elementwise::channel_dot_nhwc"], "{what}: {log:?}");
            assert!(log[2..].iter().all(|k| k == "elementwise::channel_sum_nhwc"), "{what}: {log:?}");
        }
    }
}

/// 517 values: whole groups of 4 in one access per buffer and a last partial one value by value.
#[test]
fn axpy_scale_and_fill_update_in_place() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    let x = random_f32(517, 7, -2.0, 2.0);
    let y = random_f32(517, 8, -2.0, 2.0);
    let [(gx, cx), (mut gy, mut cy)] = [&x, &y].map(|v| upload_pair(&gpu, &cpu, v));

    gpu.axpy(-0.75, &gx, &mut gy).unwrap();
    cpu.axpy(-0.75, &cx, &mut cy).unwrap();
    assert_close("axpy", &gpu.download(&gy).unwrap(), &cy, 1e-6, 1e-6);

    gpu.scale(1.5, &mut gy).unwrap();
    cpu.scale(1.5, &mut cy).unwrap();
    assert_close("scale", &gpu.download(&gy).unwrap(), &cy, 1e-6, 1e-6);

    gpu.fill(-4.25, &mut gy).unwrap();
    assert!(gpu.download(&gy).unwrap().iter().all(|&v| v == -4.25), "fill left other values");
}

#[test]
fn mismatched_operands_are_errors() {
    let gpu = gpu();
    let a = gpu.upload(&[1.0f32; 6]).unwrap();
    let b = gpu.upload(&[1.0f32; 5]).unwrap();
    assert_eq!(gpu.add(&a, &b).err().unwrap().to_string(), "shape error: add: b has 5 elements but 6 are needed");
    let g = ChannelBroadcast { n: 2, c: 3, hw: 1, per_sample: true, layout: Layout::Nchw };
    let err = gpu.mul_channel(&a, &b, &g).err().unwrap().to_string();
    assert_eq!(err, "shape error: mul_channel: the per-channel operand has 5 elements but 6 are needed");
}

/// 16-bit stored operands (bf16, fp16): add, mul, mul_backward and axpy over 37 values (whole
/// groups of 4 and a partial one), and the per-sample channel broadcasts in both layouts, come
/// back in the first operand's format (each gradient in its operand's) and equal the CPU's f32
/// results on the same rounded values rounded once: bit for bit pointwise, within an ulp of the
/// format for the gate's reduction (the devices sum in different orders). 162 channels-last rows
/// over the batch take two row ranges, so the f32 partial sums are rounded by the second pass.
#[test]
fn sixteen_bit_operands_round_once_as_the_cpu_emulation() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    for p in [Precision::Bf16, Precision::Fp16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let [a, b, dy] = [1, 2, 3].map(|seed| random_f32(37, seed, -3.0, 3.0));
        let [ga, gb, gdy] = [&a, &b, &dy].map(|v| stored.on_gpu(v));
        let [ca, cb, cdy] = [&a, &b, &dy].map(|v| stored.on_cpu(v));
        stored.check("add", &gpu.add(&ga, &gb).unwrap(), cpu.add(&ca, &cb).unwrap(), Agreement::Exact);
        stored.check("mul", &gpu.mul(&ga, &gb).unwrap(), cpu.mul(&ca, &cb).unwrap(), Agreement::Exact);
        let ((da, db), (want_da, want_db)) = (gpu.mul_backward(&ga, &gb, &gdy).unwrap(), cpu.mul_backward(&ca, &cb, &cdy).unwrap());
        stored.check("mul backward da", &da, want_da, Agreement::Exact);
        stored.check("mul backward db", &db, want_db, Agreement::Exact);
        // alpha = 0.5 scales exactly, so a fused multiply-add on the device rounds as the CPU.
        let (mut gy, mut cy) = (gpu.copy_buf(&ga).unwrap(), cpu.copy_buf(&ca).unwrap());
        gpu.axpy(0.5, &gb, &mut gy).unwrap();
        cpu.axpy(0.5, &cb, &mut cy).unwrap();
        stored.check("axpy", &gy, cy, Agreement::Exact);

        // Each layout with groups of 4 that share the operand (channels-first planes of 36 values,
        // channels-last rows of 8 channels: one access per buffer) and without.
        for (layout, (c, hw)) in [Layout::Nchw, Layout::Nhwc].into_iter().flat_map(|l| [(l, (8, 81)), (l, (6, 36))]) {
            let g = ChannelBroadcast { n: 2, c, hw, per_sample: true, layout };
            let [x, dy] = [4, 5].map(|seed| random_f32(g.x_len(), seed, -2.0, 2.0));
            let s = random_f32(g.operand_len(), 6, -2.0, 2.0);
            let [gx, gs, gdy] = [&x, &s, &dy].map(|v| stored.on_gpu(v));
            let [cx, cs, cdy] = [&x, &s, &dy].map(|v| stored.on_cpu(v));
            let what = format!("mul_channel {layout:?} C={c} HW={hw}");
            stored.check(&what, &gpu.mul_channel(&gx, &gs, &g).unwrap(), cpu.mul_channel(&cx, &cs, &g).unwrap(), Agreement::Exact);
            let add = format!("add_channel {layout:?} C={c} HW={hw}");
            stored.check(&add, &gpu.add_channel(&gx, &gs, &g).unwrap(), cpu.add_channel(&cx, &cs, &g).unwrap(), Agreement::Exact);
            let ((dx, ds), (want_dx, want_ds)) = (gpu.mul_channel_backward(&gx, &gs, &gdy, &g).unwrap(), cpu.mul_channel_backward(&cx, &cs, &cdy, &g).unwrap());
            stored.check(&format!("{what} backward dx"), &dx, want_dx, Agreement::Exact);
            stored.check(&format!("{what} backward ds"), &ds, want_ds, stored.one_ulp(1e-30));
            let across = ChannelBroadcast { per_sample: false, ..g };
            let db = gpu.add_channel_backward(&gdy, &across).unwrap();
            assert_eq!(gpu.stored_format(&db), StoredFormat::F32, "{p} {layout:?}: a bias-like operand's gradient is f32");
            assert_close(&format!("{p} add_channel backward {layout:?}"), &gpu.download(&db).unwrap(), &widen(&cpu.add_channel_backward(&cdy, &across).unwrap()), 1e-5, 1e-5);
        }
    }
}

/// The simulator's counters of the launches of `kernel` ("module::kernel") in `stats`.
fn launches<'a>(stats: &'a [LaunchStats], kernel: &str) -> Vec<&'a LaunchStats> {
    stats.iter().filter(|s| s.kernel == kernel).collect()
}

/// On the simulator, the in-place updates, the stored-format conversion and rounding take one
/// access per buffer per warp of 32 x 4 values (16 bytes per lane at f32, 8 at 16 bits) over
/// 1024 aligned values, and the channel reductions read 4 values per lane per access: channels
/// first, a 512-value channel is 4 warp loads per input, channels last, 32 channels x 64 rows
/// are 16 (one row range, whose block stores its 32 totals in one warp access).
#[test]
fn vectorised_launches_take_one_access_per_four_values_per_lane() {
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let (gpu, cpu) = (GpuBackend::new(driver.clone()), CpuBackend::new());
    let len = 1024;
    let warps = (len / (32 * 4)) as u64;
    let [x, y] = [1, 2].map(|seed| random_f32(len, seed, -2.0, 2.0));
    for p in [Precision::Fp32, Precision::Bf16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let (gx, mut gy) = (stored.on_gpu(&x), stored.on_gpu(&y));
        driver.take_launch_stats();
        gpu.axpy(0.5, &gx, &mut gy).unwrap();
        gpu.convert_stored(&gy, StoredFormat::F32).unwrap();
        let stats = driver.take_launch_stats();
        assert_eq!(launches(&stats, "elementwise::axpy")[0].global_accesses, 3 * warps, "{p}: axpy loads x and y, stores y");
        let convert = launches(&stats, "precision::convert_stored");
        assert_eq!(convert[0].global_accesses, 2 * warps, "{p}: convert_stored");
        assert_eq!(convert[0].global_load_bytes, (len * stored.format.bytes()) as u64, "{p}: convert_stored reads the stored values");

        let g = ChannelBroadcast { n: 2, c: 3, hw: 256, per_sample: false, layout: Layout::Nchw };
        let nhwc = ChannelBroadcast { n: 2, c: 32, hw: 32, per_sample: false, layout: Layout::Nhwc };
        let [dy, xs] = [3, 4].map(|seed| stored.on_gpu(&random_f32(g.x_len(), seed, -1.0, 1.0)));
        let [dy_last, x_last] = [5, 6].map(|seed| stored.on_gpu(&random_f32(nhwc.x_len(), seed, -1.0, 1.0)));
        let [s, s_last] = [&g, &nhwc].map(|g| gpu.upload(&vec![0.5f32; g.operand_len()]).unwrap());
        driver.take_launch_stats();
        gpu.add_channel_backward(&dy, &g).unwrap();
        gpu.mul_channel_backward(&xs, &s, &dy, &g).unwrap();
        gpu.add_channel_backward(&dy_last, &nhwc).unwrap();
        gpu.mul_channel_backward(&x_last, &s_last, &dy_last, &nhwc).unwrap();
        let stats = driver.take_launch_stats();
        // Channels first: per channel, 512 values in 4 warp loads per input and thread 0's store.
        assert_eq!(launches(&stats, "elementwise::channel_sum")[0].global_accesses, 3 * (4 + 1), "{p}: channel_sum");
        assert_eq!(launches(&stats, "elementwise::channel_dot")[0].global_accesses, 3 * (2 * 4 + 1), "{p}: channel_dot");
        // Channels last: 64 rows of 32 channels, 8 lanes x 4 channels x 4 rows per warp load.
        let sums = launches(&stats, "elementwise::channel_sum_nhwc");
        assert_eq!(sums.len(), 1, "{p}: one row range");
        assert_eq!(sums[0].global_accesses, 16 + 1, "{p}: channel_sum_nhwc");
        assert_eq!(launches(&stats, "elementwise::channel_dot_nhwc")[0].global_accesses, 2 * 16 + 1, "{p}: channel_dot_nhwc");
    }

    let mut f = gpu.upload(&x).unwrap();
    gpu.scale(1.5, &mut f).unwrap();
    gpu.fill(2.0, &mut f).unwrap();
    gpu.round_in_place(Precision::Bf16, &mut f).unwrap();
    let stats = driver.take_launch_stats();
    assert_eq!(launches(&stats, "elementwise::scale")[0].global_accesses, 2 * warps, "scale");
    assert_eq!(launches(&stats, "elementwise::fill")[0].global_accesses, warps, "fill stores only");
    assert_eq!(launches(&stats, "precision::round_to_format")[0].global_accesses, 2 * warps, "round_to_format");
}
