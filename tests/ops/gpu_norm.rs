//! GPU BatchNorm2d against the f64 CPU reference: training forward (output, saved statistics,
//! running statistics), eval forward and backward.

use ferronet::tolerance::assert_close;
use ferronet_test_support::stored::StoredPrecision;
use ferronet_test_support::gpu::{gpu, random_f32, random_nchw, widen};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::ops::{BatchNormGeom, NormOps};

/// (N, C, HW, offset): odd sizes, one image, one value per image, more values per channel than
/// a block has threads, channels cut into two or three chunks (the last one shorter), and means
/// far from zero whose variance a one-pass E[x^2] - E[x]^2 in f32 would lose. HW a multiple of 4
/// runs the per-channel reductions 4 values per load (300, 700, 3000, and 12296, whose chunks are
/// rounded up to a multiple of 4: 4100, 4100 and 4096 values). With HW = 1 (how channels-last
/// activations are normalised) the reductions run along channels: C = 24 and 7 (several rows per
/// warp), and 40 channels in two chunks over 15 ranges of images.
const CASES: [(usize, usize, usize, f32); 12] = [
    (2 * 9 * 9, 24, 1, 0.0),
    (2 * 9 * 9, 7, 1, 0.0),
    (1000, 40, 1, 300.0),
    (1, 3, 35, 0.0),
    (5, 3, 35, 0.0),
    (4, 2, 1, 0.0),
    (2, 4, 300, 0.0),
    (3, 2, 700, 0.0),
    (3, 2, 35, 1000.0),
    (1, 1, 12301, 0.0),
    (3, 2, 3000, 500.0),
    (1, 1, 12296, 300.0),
];

/// The fixed cases and random shapes with more than one value per channel.
fn cases() -> Vec<(usize, usize, usize, f32)> {
    let random = random_nchw(4, 31).into_iter().filter(|&(n, _, hw)| n * hw > 1).map(|(n, c, hw)| (n, c, hw, 0.0));
    CASES.into_iter().chain(random).collect()
}

const MOMENTUM: f64 = 0.1;
const EPS: f64 = 1e-5;

#[test]
fn training_forward_and_backward_match_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    for (seed, (n, c, hw, offset)) in cases().into_iter().enumerate() {
        let g = BatchNormGeom::new(n, c, hw, EPS).unwrap();
        let what = format!("N={n} C={c} HW={hw} offset={offset}");
        let seed = seed as u64 * 10;
        let x: Vec<f32> = random_f32(g.len(), seed, -2.0, 2.0).iter().map(|v| v + offset).collect();
        let gamma = random_f32(c, seed + 1, 0.5, 1.5);
        let beta = random_f32(c, seed + 2, -0.5, 0.5);
        let running_mean = random_f32(c, seed + 3, -0.2, 0.2);
        let running_var = random_f32(c, seed + 4, 0.5, 1.5);
        let dy = random_f32(g.len(), seed + 5, -1.0, 1.0);

        let up = |v: &[f32]| gpu.upload(v).unwrap();
        let (gx, ggamma, gbeta, gdy) = (up(&x), up(&gamma), up(&beta), up(&dy));
        let (mut grm, mut grv) = (up(&running_mean), up(&running_var));
        let (y, saved) =
            gpu.batch_norm2d_forward_train(&gx, &ggamma, &gbeta, &mut grm, &mut grv, MOMENTUM, &g).unwrap();
        let (dx, dgamma, dbeta) = gpu.batch_norm2d_backward(&gdy, &gx, &ggamma, &saved, &g).unwrap();

        let cup = |v: &[f32]| cpu.upload(&widen(v)).unwrap();
        let (cx, cgamma, cbeta, cdy) = (cup(&x), cup(&gamma), cup(&beta), cup(&dy));
        let (mut crm, mut crv) = (cup(&running_mean), cup(&running_var));
        let (want_y, want_saved) =
            cpu.batch_norm2d_forward_train(&cx, &cgamma, &cbeta, &mut crm, &mut crv, MOMENTUM, &g).unwrap();
        let (want_dx, want_dgamma, want_dbeta) =
            cpu.batch_norm2d_backward(&cdy, &cx, &cgamma, &want_saved, &g).unwrap();

        let down = |b| gpu.download(b).unwrap();
        assert_close(&format!("y {what}"), &down(&y), &want_y, 1e-4, 1e-4);
        assert_close(&format!("saved mean {what}"), &down(&saved.mean), &want_saved.mean, 1e-5, 1e-6);
        assert_close(&format!("saved invstd {what}"), &down(&saved.invstd), &want_saved.invstd, 1e-5, 1e-4);
        assert_close(&format!("running mean {what}"), &down(&grm), &crm, 1e-5, 1e-6);
        assert_close(&format!("running var {what}"), &down(&grv), &crv, 1e-5, 1e-4);
        assert_close(&format!("dx {what}"), &down(&dx), &want_dx, 1e-4, 1e-3);
        assert_close(&format!("dgamma {what}"), &down(&dgamma), &want_dgamma, 1e-4, 1e-4);
        assert_close(&format!("dbeta {what}"), &down(&dbeta), &want_dbeta, 1e-4, 1e-5);
    }
}

#[test]
fn eval_forward_matches_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    for (seed, (n, c, hw, offset)) in cases().into_iter().enumerate() {
        let g = BatchNormGeom::new(n, c, hw, EPS).unwrap();
        let seed = seed as u64 * 10 + 7;
        let x: Vec<f32> = random_f32(g.len(), seed, -2.0, 2.0).iter().map(|v| v + offset).collect();
        let params: Vec<Vec<f32>> = [(0.5, 1.5), (-0.5, 0.5), (offset as f64 - 0.2, offset as f64 + 0.2), (0.5, 1.5)]
            .iter()
            .enumerate()
            .map(|(i, &(lo, hi))| random_f32(c, seed + 1 + i as u64, lo, hi))
            .collect();
        let gp: Vec<_> = params.iter().map(|p| gpu.upload(p).unwrap()).collect();
        let cp: Vec<_> = params.iter().map(|p| cpu.upload(&widen(p)).unwrap()).collect();
        let y = gpu.batch_norm2d_forward_eval(&gpu.upload(&x).unwrap(), &gp[0], &gp[1], &gp[2], &gp[3], &g).unwrap();
        let want = cpu
            .batch_norm2d_forward_eval(&cpu.upload(&widen(&x)).unwrap(), &cp[0], &cp[1], &cp[2], &cp[3], &g)
            .unwrap();
        assert_close(&format!("eval N={n} C={c} HW={hw}"), &gpu.download(&y).unwrap(), &want, 1e-4, 1e-4);
    }
}

#[test]
fn training_with_one_value_per_channel_is_an_error() {
    let gpu = gpu();
    let g = BatchNormGeom::new(1, 2, 1, EPS).unwrap();
    let x = gpu.upload(&[1.0f32, 2.0]).unwrap();
    let ones = gpu.upload(&[1.0f32; 2]).unwrap();
    let (mut rm, mut rv) = (gpu.upload(&[0.0f32; 2]).unwrap(), gpu.upload(&[1.0f32; 2]).unwrap());
    let err = gpu.batch_norm2d_forward_train(&x, &ones, &ones, &mut rm, &mut rv, MOMENTUM, &g).err();
    assert!(err
        .expect("N*H*W = 1 is an error")
        .to_string()
        .starts_with("shape error: batch_norm2d (training) needs more than one value per channel"));
}

/// The fused batch norm -> (residual add) -> activation on the GPU against the unfused ops on the
/// f64 CPU: output, running statistics, and the gradients of x, the residual, gamma and beta.
#[test]
fn fused_batch_norm_activation_matches_the_unfused_cpu_reference() {
    use ferronet::ops::{Activation, ActivationOps, ElementwiseOps};
    let gpu = gpu();
    let cpu = CpuBackend::new();
    // One chunk per channel, a channel cut into chunks with a mean far from zero, one cut into
    // chunks reduced 4 values per load (HW = 12296; centred: at a mean of 300 the f32 mean's
    // rounding alone moves dbeta past the tolerance, whichever the kernel), and channels innermost
    // (HW = 1) in one and in several ranges of images.
    let shapes = [(2, 3, 35, 0.0f32), (1, 1, 12301, 300.0), (1, 1, 12296, 0.0), (2 * 9 * 9, 7, 1, 0.0), (600, 36, 1, 100.0)];
    for (seed, (n, c, hw, offset)) in shapes.into_iter().enumerate() {
        let g = BatchNormGeom::new(n, c, hw, EPS).unwrap();
        for activation in Activation::ALL {
            for residual in [false, true] {
                let what = format!("N={n} C={c} HW={hw} {} residual={residual}", activation.name());
                let seed = seed as u64 * 100;
                let x: Vec<f32> = random_f32(g.len(), seed, -2.0, 2.0).iter().map(|v| v + offset).collect();
                let r = random_f32(g.len(), seed + 1, -2.0, 2.0);
                // Scaled so relu6's and hardswish's upper kinks are crossed too.
                let gamma = random_f32(c, seed + 2, 1.5, 3.0);
                let beta = random_f32(c, seed + 3, -0.5, 0.5);
                let (running_mean, running_var) = (random_f32(c, seed + 4, -0.2, 0.2), random_f32(c, seed + 5, 0.5, 1.5));
                let dy = random_f32(g.len(), seed + 6, -1.0, 1.0);

                let up = |v: &[f32]| gpu.upload(v).unwrap();
                let (gx, gr, ggamma, gbeta, gdy) = (up(&x), up(&r), up(&gamma), up(&beta), up(&dy));
                let (mut grm, mut grv) = (up(&running_mean), up(&running_var));
                let gres = residual.then_some(&gr);
                let (y, saved) = gpu
                    .batch_norm_act_forward_train(&gx, gres, &ggamma, &gbeta, &mut grm, &mut grv, MOMENTUM, activation, &g)
                    .unwrap();
                let grads = gpu.batch_norm_act_backward(&gdy, &gx, gres, &ggamma, &gbeta, &saved, activation, &g).unwrap();

                let cup = |v: &[f32]| cpu.upload(&widen(v)).unwrap();
                let (cx, cr, cgamma, cbeta, cdy) = (cup(&x), cup(&r), cup(&gamma), cup(&beta), cup(&dy));
                let (mut crm, mut crv) = (cup(&running_mean), cup(&running_var));
                let (normalized, want_saved) =
                    cpu.batch_norm2d_forward_train(&cx, &cgamma, &cbeta, &mut crm, &mut crv, MOMENTUM, &g).unwrap();
                let pre = if residual { cpu.add(&normalized, &cr).unwrap() } else { normalized };
                let want_y = cpu.activation_forward(activation, &pre).unwrap();
                let dpre = cpu.activation_backward(activation, &pre, &cdy).unwrap();
                let (want_dx, want_dgamma, want_dbeta) = cpu.batch_norm2d_backward(&dpre, &cx, &cgamma, &want_saved, &g).unwrap();

                let down = |b| gpu.download(b).unwrap();
                assert_close(&format!("y {what}"), &down(&y), &want_y, 1e-4, 1e-4);
                assert_close(&format!("running mean {what}"), &down(&grm), &crm, 1e-5, 1e-5);
                assert_close(&format!("running var {what}"), &down(&grv), &crv, 1e-5, 1e-4);
                assert_close(&format!("dx {what}"), &down(&grads.dx), &want_dx, 1e-4, 1e-3);
                assert_close(&format!("dgamma {what}"), &down(&grads.dgamma), &want_dgamma, 1e-4, 1e-3);
                assert_close(&format!("dbeta {what}"), &down(&grads.dbeta), &want_dbeta, 1e-4, 1e-4);
                match grads.dresidual {
                    Some(dr) => assert_close(&format!("dresidual {what}"), &down(&dr), &dpre, 1e-4, 1e-5),
                    None => assert!(!residual, "{what}: no residual gradient"),
                }
            }
        }
    }
}

/// With one value per image and channel the statistics and backward reductions and the
/// pointwise passes after them are the along-channel `_rows` kernels, the per-channel ones
/// otherwise (the reductions 4 values per load, `_vec4`, where HW is a multiple of 4); only
/// bn_finalize_stats is shared.
#[test]
fn channels_innermost_batch_norm_reduces_along_channels() {
    use ferronet::ops::Activation;
    let gpu = gpu();
    for (n, c, hw) in [(2 * 9 * 9, 24, 1), (2, 24, 81), (2, 24, 64)] {
        let g = BatchNormGeom::new(n, c, hw, EPS).unwrap();
        let rows = if hw == 1 { "_rows" } else { "" };
        let reduce = if hw == 1 { "_rows" } else if hw.is_multiple_of(4) { "_vec4" } else { "" };
        let x = gpu.upload(&random_f32(g.len(), 7, -2.0, 2.0)).unwrap();
        let dy = gpu.upload(&random_f32(g.len(), 8, -1.0, 1.0)).unwrap();
        let (gamma, beta) = (gpu.upload(&vec![1.0f32; c]).unwrap(), gpu.zeros(c).unwrap());
        let (mut rm, mut rv) = (gpu.zeros(c).unwrap(), gpu.upload(&vec![1.0f32; c]).unwrap());
        gpu.take_kernel_log();
        let (_, saved) = gpu.batch_norm2d_forward_train(&x, &gamma, &beta, &mut rm, &mut rv, MOMENTUM, &g).unwrap();
        assert_eq!(gpu.take_kernel_log(), [format!("norm::bn_partial_stats{reduce}"), "norm::bn_finalize_stats".into(), format!("norm::bn_apply{rows}")]);
        gpu.batch_norm2d_backward(&dy, &x, &gamma, &saved, &g).unwrap();
        let log = gpu.take_kernel_log();
        assert_eq!(log[0], format!("norm::bn_partial_grads{reduce}"), "{log:?}");
        assert_eq!(log.last().unwrap(), &format!("norm::bn_backward_apply{rows}"), "{log:?}");
        let (_, saved) = gpu.batch_norm_act_forward_train(&x, None, &gamma, &beta, &mut rm, &mut rv, MOMENTUM, Activation::Relu, &g).unwrap();
        gpu.take_kernel_log();
        gpu.batch_norm_act_backward(&dy, &x, None, &gamma, &beta, &saved, Activation::Relu, &g).unwrap();
        let log = gpu.take_kernel_log();
        assert_eq!(log[0], format!("norm::bn_act_partial_grads{reduce}"), "{log:?}");
        assert_eq!(log.last().unwrap(), &format!("norm::bn_act_backward_apply{rows}"), "{log:?}");
    }
}

/// bf16 and fp16 activations: the kernels read x, the residual and dy in 16 bits and store y, dx
/// and dresidual in 16 bits, computing in f32 and rounding at the store only. So on the same
/// rounded inputs a 16-bit run stores the f32 run's outputs rounded, bit for bit, with the same
/// statistics and parameter gradients, and it is within the f64 CPU reference's tolerance plus
/// one rounding of the format. Channels first with the last group of 4 values cut short
/// (HW = 35) and whole (HW = 12); channels innermost with 4 channels per thread (C = 24) and one
/// (C = 7).
#[test]
fn sixteen_bit_activations_are_rounded_at_the_store_only() {
    use ferronet::gpu::GpuBuf;
    use ferronet::ops::{Activation, BatchNormSaved, PrecisionOps};
    use ferronet::precision::Precision;
    let gpu = gpu();
    let cpu = CpuBackend::new();
    for (seed, (n, c, hw)) in [(2, 3, 35), (3, 2, 12), (2 * 9 * 9, 24, 1), (50, 7, 1)].into_iter().enumerate() {
        let g = BatchNormGeom::new(n, c, hw, EPS).unwrap();
        let seed = seed as u64 * 10 + 500;
        let (gamma, beta) = (random_f32(c, seed + 2, 1.5, 3.0), random_f32(c, seed + 3, -0.5, 0.5));
        let (running_mean, running_var) = (random_f32(c, seed + 4, -0.2, 0.2), random_f32(c, seed + 5, 0.5, 1.5));
        let up = |v: &[f32]| gpu.upload(v).unwrap();
        let (ggamma, gbeta) = (up(&gamma), up(&beta));
        for p in [Precision::Bf16, Precision::Fp16] {
            let sixteen = StoredPrecision::new(&gpu, &cpu, p);
            let what = format!("{p} N={n} C={c} HW={hw}");
            let rounded = |s| sixteen.rounded(&random_f32(g.len(), seed + s, -2.0, 2.0));
            let (x, r, dy) = (rounded(0), rounded(1), rounded(6));
            let down = |b: &GpuBuf<f32>| gpu.download(b).unwrap();
            // An f32 run's output as the 16-bit run must store it.
            let as_stored = |b: &GpuBuf<f32>| sixteen.rounded(&down(b));
            let stored = |b: &GpuBuf<f32>, name: &str| sixteen.download(&format!("{name} {what}"), b);

            let (mut rm, mut rv) = (up(&running_mean), up(&running_var));
            let (y32, saved32) = gpu.batch_norm2d_forward_train(&up(&x), &ggamma, &gbeta, &mut rm, &mut rv, MOMENTUM, &g).unwrap();
            let (dx32, dgamma32, dbeta32) = gpu.batch_norm2d_backward(&up(&dy), &up(&x), &ggamma, &saved32, &g).unwrap();
            let (mut rm16, mut rv16) = (up(&running_mean), up(&running_var));
            let (x16, dy16, r16) = (sixteen.on_gpu(&x), sixteen.on_gpu(&dy), sixteen.on_gpu(&r));
            let (y, saved) = gpu.batch_norm2d_forward_train(&x16, &ggamma, &gbeta, &mut rm16, &mut rv16, MOMENTUM, &g).unwrap();
            let (dx, dgamma, dbeta) = gpu.batch_norm2d_backward(&dy16, &x16, &ggamma, &saved, &g).unwrap();
            assert_eq!(stored(&y, "y"), as_stored(&y32), "y {what}");
            assert_eq!(stored(&dx, "dx"), as_stored(&dx32), "dx {what}");
            for (name, got, want) in [
                ("saved mean", &saved.mean, &saved32.mean),
                ("saved invstd", &saved.invstd, &saved32.invstd),
                ("running mean", &rm16, &rm),
                ("running var", &rv16, &rv),
                ("dgamma", &dgamma, &dgamma32),
                ("dbeta", &dbeta, &dbeta32),
            ] {
                assert_eq!(gpu.stored_format(got), ferronet::precision::StoredFormat::F32, "{name} {what}");
                assert_eq!(down(got), down(want), "{name} {what}");
            }
            let eval = |x: &GpuBuf<f32>| gpu.batch_norm2d_forward_eval(x, &ggamma, &gbeta, &rm, &rv, &g).unwrap();
            assert_eq!(stored(&eval(&x16), "eval y"), as_stored(&eval(&up(&x))), "eval y {what}");

            // Against the f64 reference: the tolerances above plus one rounding of the format.
            let cup = |v: &[f32]| cpu.upload(&widen(v)).unwrap();
            let (mut crm, mut crv) = (cup(&running_mean), cup(&running_var));
            let (want_y, want_saved) =
                cpu.batch_norm2d_forward_train(&cup(&x), &cup(&gamma), &cup(&beta), &mut crm, &mut crv, MOMENTUM, &g).unwrap();
            let (want_dx, _, _) = cpu.batch_norm2d_backward(&cup(&dy), &cup(&x), &cup(&gamma), &want_saved, &g).unwrap();
            let u = p.unit_roundoff();
            assert_close(&format!("y against the CPU {what}"), &down(&y), &want_y, 1e-4, 1e-4 + u);
            assert_close(&format!("dx against the CPU {what}"), &down(&dx), &want_dx, 1e-4, 1e-3 + u);

            for (activation, residual) in [(Activation::Relu, true), (Activation::Hardswish, false)] {
                let what = format!("{what} {} residual={residual}", activation.name());
                let (r32, r16) = (up(&r), &r16);
                let (res32, res16) = (residual.then_some(&r32), residual.then_some(r16));
                let train = |x: &GpuBuf<f32>, res: Option<&GpuBuf<f32>>, rm: &mut GpuBuf<f32>, rv: &mut GpuBuf<f32>| {
                    gpu.batch_norm_act_forward_train(x, res, &ggamma, &gbeta, rm, rv, MOMENTUM, activation, &g).unwrap()
                };
                let (mut rm, mut rv) = (up(&running_mean), up(&running_var));
                let (y32, saved32) = train(&up(&x), res32, &mut rm, &mut rv);
                let (y, saved) = train(&x16, res16, &mut rm, &mut rv);
                let back = |dy: &GpuBuf<f32>, x: &GpuBuf<f32>, res: Option<&GpuBuf<f32>>, saved: &BatchNormSaved<GpuBuf<f32>>| {
                    gpu.batch_norm_act_backward(dy, x, res, &ggamma, &gbeta, saved, activation, &g).unwrap()
                };
                let want = back(&up(&dy), &up(&x), res32, &saved32);
                let grads = back(&dy16, &x16, res16, &saved);
                assert_eq!(stored(&y, "y"), as_stored(&y32), "y {what}");
                assert_eq!(stored(&grads.dx, "dx"), as_stored(&want.dx), "dx {what}");
                assert_eq!(down(&grads.dgamma), down(&want.dgamma), "dgamma {what}");
                assert_eq!(down(&grads.dbeta), down(&want.dbeta), "dbeta {what}");
                match (&grads.dresidual, &want.dresidual) {
                    (Some(dr), Some(want_dr)) => assert_eq!(stored(dr, "dresidual"), as_stored(want_dr), "dresidual {what}"),
                    (got, _) => assert!(!residual && got.is_none(), "{what}: a residual gradient exactly with a residual"),
                }
            }
        }
    }
}

/// On the simulator, the per-channel reductions over planes of 1024 values (2 images, 2 channels:
/// one block of 256 threads per channel, 2048 values) load 4 values per lane per access, f32 (16
/// bytes) and bf16 (8): 2048 / 128 = 16 warp loads per block and activation, besides one load per
/// warp of each per-channel value (the chunk's first x, the saved mean and invstd, gamma, beta) and
/// one store of each of the block's 2 partials.
#[test]
fn per_channel_reductions_load_four_values_per_lane() {
    use ferronet::gpu::GpuBackend;
    use ferronet::ops::Activation;
    use ferronet::precision::Precision;
    use ferronet::sim::{SimDriver, SimOptions};
    use std::sync::Arc;
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let (gpu, cpu) = (GpuBackend::new(driver.clone()), CpuBackend::new());
    let (n, c, hw) = (2, 2, 1024);
    let g = BatchNormGeom::new(n, c, hw, EPS).unwrap();
    let (warps, loads) = (256 / 32, (n * hw / 128) as u64);
    // Per block: the per-channel values each warp loads, loads of activations, 2 stores.
    let per_block = |values: u64, activations: u64| values * warps + activations * loads + 2;
    let up = |v: &[f32]| gpu.upload(v).unwrap();
    let (gamma, beta) = (up(&vec![1.0f32; c]), up(&vec![0.0f32; c]));
    for p in [Precision::Fp32, Precision::Bf16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let x = stored.on_gpu(&random_f32(g.len(), 9, -2.0, 2.0));
        let dy = stored.on_gpu(&random_f32(g.len(), 10, -1.0, 1.0));
        let (mut rm, mut rv) = (up(&vec![0.0f32; c]), up(&vec![1.0f32; c]));
        driver.take_launch_stats();
        let (_, saved) = gpu.batch_norm2d_forward_train(&x, &gamma, &beta, &mut rm, &mut rv, MOMENTUM, &g).unwrap();
        gpu.batch_norm2d_backward(&dy, &x, &gamma, &saved, &g).unwrap();
        gpu.batch_norm_act_backward(&dy, &x, None, &gamma, &beta, &saved, Activation::Relu, &g).unwrap();
        let accesses: Vec<_> = driver
            .take_launch_stats()
            .into_iter()
            .filter(|s| s.kernel.contains("_partial_"))
            .map(|s| (s.kernel, s.global_accesses))
            .collect();
        let c = c as u64;
        let want = [
            ("norm::bn_partial_stats_vec4".to_string(), c * per_block(1, 1)),
            ("norm::bn_partial_grads_vec4".to_string(), c * per_block(2, 2)),
            ("norm::bn_act_partial_grads_vec4".to_string(), c * per_block(4, 2)),
        ];
        assert_eq!(accesses, want, "{p}: one access per 4 values per lane");
    }
}
