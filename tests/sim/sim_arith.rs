//! Tricky PTX arithmetic pinned through the whole simulator (parse, decode, execute): each test
//! runs a hand-written PTX body per thread on inputs a[i], b[i] and checks out[i].

use ferronet::device::Device;
use ferronet::device::driver::LaunchConfig;
use ferronet::gpu::GpuBackend;
use ferronet::sim::{SimDriver, SimOptions};
use std::sync::Arc;

/// Wraps `body` in a kernel where thread i has %r1 = i, %r2/%f2 = a[i], %r4/%f4 = b[i], and
/// stores %r3 to out[i].
fn run(body: &str, a: &[u32], b: &[u32]) -> Vec<u32> {
    let ptx = format!(
        ".version 8.8\n.target sm_75\n.address_size 64\n\
         .visible .entry t(.param .u64 t_a, .param .u64 t_b, .param .u64 t_out)\n{{\n\
         .reg .pred %p<8>;\n.reg .b16 %rs<8>;\n.reg .b32 %r<16>;\n.reg .f32 %f<16>;\n.reg .b64 %rd<16>;\n\
         ld.param.u64 %rd1, [t_a];\nld.param.u64 %rd2, [t_b];\nld.param.u64 %rd3, [t_out];\n\
         cvta.to.global.u64 %rd1, %rd1;\ncvta.to.global.u64 %rd2, %rd2;\ncvta.to.global.u64 %rd3, %rd3;\n\
         mov.u32 %r1, %tid.x;\nmul.wide.u32 %rd4, %r1, 4;\n\
         add.s64 %rd5, %rd1, %rd4;\nadd.s64 %rd6, %rd2, %rd4;\nadd.s64 %rd7, %rd3, %rd4;\n\
         ld.global.b32 %r2, [%rd5];\nld.global.b32 %r4, [%rd6];\nmov.b32 %f2, %r2;\nmov.b32 %f4, %r4;\n\
         {body}\nst.global.b32 [%rd7], %r3;\nret;\n}}\n"
    );
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    driver.load_ptx("t", &ptx).unwrap_or_else(|e| panic!("{e}"));
    let gpu = GpuBackend::new(driver);
    let (da, db) = (gpu.upload_idx(a).unwrap(), gpu.upload_idx(b).unwrap());
    let out = gpu.alloc::<u32>(a.len()).unwrap();
    gpu.launch("t", "t", LaunchConfig::linear(a.len(), a.len() as u32), &[da.arg(), db.arg(), out.arg()]).unwrap_or_else(|e| panic!("{e}"));
    gpu.download_idx(&out).unwrap()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}
fn ints(v: &[i32]) -> Vec<u32> {
    v.iter().map(|&x| x as u32).collect()
}
fn floats(v: &[u32]) -> Vec<f32> {
    v.iter().map(|&x| f32::from_bits(x)).collect()
}

#[test]
fn cvt_float_to_int_rounding_modes() {
    let a = bits(&[2.5, 3.5, -2.5, -0.5, 1.5, 2.4999, -1.2]);
    let zero = vec![0; a.len()];
    assert_eq!(run("cvt.rni.s32.f32 %r3, %f2;", &a, &zero), ints(&[2, 4, -2, 0, 2, 2, -1]));
    assert_eq!(run("cvt.rzi.s32.f32 %r3, %f2;", &a, &zero), ints(&[2, 3, -2, 0, 1, 2, -1]));
    assert_eq!(run("cvt.rmi.s32.f32 %r3, %f2;", &a, &zero), ints(&[2, 3, -3, -1, 1, 2, -2]));
    assert_eq!(run("cvt.rpi.s32.f32 %r3, %f2;", &a, &zero), ints(&[3, 4, -2, 0, 2, 3, -1]));
    // Out-of-range and NaN inputs saturate / become 0.
    let a = bits(&[5e9, -3e9, f32::NAN]);
    assert_eq!(run("cvt.rzi.s32.f32 %r3, %f2;", &a, &[0; 3]), ints(&[i32::MAX, i32::MIN, 0]));
    assert_eq!(run("cvt.rzi.u32.f32 %r3, %f2;", &a, &[0; 3]), vec![u32::MAX, 0, 0]);
}

#[test]
fn cvt_saturation() {
    let a = ints(&[300, -5, 17, 255]);
    assert_eq!(run("cvt.sat.u8.s32 %rs1, %r2;\ncvt.u32.u8 %r3, %rs1;", &a, &[0; 4]), vec![255, 0, 17, 255]);
    assert_eq!(run("cvt.sat.s8.s32 %rs1, %r2;\ncvt.s32.s8 %r3, %rs1;", &a, &[0; 4]), ints(&[127, -5, 17, 127]));
    let f = bits(&[300.7, -3.2, 7.5]);
    assert_eq!(run("cvt.rni.sat.u8.f32 %rs1, %f2;\ncvt.u32.u16 %r3, %rs1;", &f, &[0; 3]), vec![255, 0, 8]);
    let f = bits(&[-0.5, 0.25, 1.5, f32::NAN]);
    let got = run("cvt.sat.f32.f32 %f3, %f2;\nmov.b32 %r3, %f3;", &f, &[0; 4]);
    assert_eq!(floats(&got), vec![0.0, 0.25, 1.0, 0.0]);
}

#[test]
fn int_to_float_rounding_modes() {
    // 2^24 + 1 lies between two f32 values.
    let a = vec![(1 << 24) + 1, (-(1i32 << 24) - 1) as u32];
    let got = |m: &str| floats(&run(&format!("cvt.{m}.f32.s32 %f3, %r2;\nmov.b32 %r3, %f3;"), &a, &[0; 2]));
    assert_eq!(got("rn"), vec![16777216.0, -16777216.0]);
    assert_eq!(got("rz"), vec![16777216.0, -16777216.0]);
    assert_eq!(got("rm"), vec![16777216.0, -16777218.0]);
    assert_eq!(got("rp"), vec![16777218.0, -16777216.0]);
}

#[test]
fn ftz_flushes_subnormal_inputs_and_results() {
    let sub = f32::from_bits(0x0001_16c2);
    assert!(sub.is_subnormal());
    let a = bits(&[sub, 1e-20, -sub]);
    let b = bits(&[0.0, 1e-20, -0.0]);
    let plain = floats(&run("add.f32 %f3, %f2, %f4;\nmov.b32 %r3, %f3;", &a, &b));
    assert_eq!(plain[0], sub);
    let ftz = run("add.ftz.f32 %f3, %f2, %f4;\nmov.b32 %r3, %f3;", &a, &b);
    assert_eq!(ftz[0], 0);
    assert_eq!(ftz[2], 0x8000_0000, "the flush keeps the sign: -0 + -0 = -0");
    let mul = floats(&run("mul.f32 %f3, %f2, %f4;\nmov.b32 %r3, %f3;", &a, &b));
    assert!(mul[1].is_subnormal());
    assert_eq!(run("mul.ftz.f32 %f3, %f2, %f4;\nmov.b32 %r3, %f3;", &a, &b)[1], 0);
}

#[test]
fn signed_division_and_remainder_truncate_toward_zero() {
    let a = ints(&[-7, 7, -7, 7, i32::MIN, 5]);
    let b = ints(&[2, -2, -2, 2, -1, 0]);
    assert_eq!(run("div.s32 %r3, %r2, %r4;", &a, &b), ints(&[-3, -3, 3, 3, i32::MIN, -1]));
    assert_eq!(run("rem.s32 %r3, %r2, %r4;", &a, &b), ints(&[-1, 1, -1, 1, 0, 5]));
    assert_eq!(run("div.u32 %r3, %r2, %r4;", &ints(&[7, -1]), &ints(&[2, 16])), vec![3, 0x0fff_ffff]);
}

#[test]
fn shuffle_clamps_at_segment_edges() {
    let a: Vec<u32> = (0..32).map(|l| l * 10).collect();
    let zero = vec![0; 32];
    // width 8: c = ((32 - 8) << 8) | 0x1f for down/bfly/idx, (32 - 8) << 8 for up.
    let body = |mode: &str, b: u32, c: u32| {
        format!("shfl.sync.{mode}.b32 %r5|%p1, %r2, {b}, {c}, -1;\nselp.b32 %r6, 1000, 0, %p1;\nadd.s32 %r3, %r5, %r6;")
    };
    let down = run(&body("down", 3, 0x181f), &a, &zero);
    let up = run(&body("up", 3, 0x1800), &a, &zero);
    let idx = run(&body("idx", 9, 0x181f), &a, &zero);
    let bfly = run(&body("bfly", 4, 0x1f), &a, &zero);
    for l in 0..32u32 {
        let seg = l & !7;
        let want_down = if l % 8 + 3 <= 7 { (l + 3) * 10 + 1000 } else { l * 10 };
        let want_up = if l % 8 >= 3 { (l - 3) * 10 + 1000 } else { l * 10 };
        assert_eq!(down[l as usize], want_down, "down lane {l}");
        assert_eq!(up[l as usize], want_up, "up lane {l}");
        assert_eq!(idx[l as usize], (seg + 1) * 10 + 1000, "idx lane {l}");
        assert_eq!(bfly[l as usize], (l ^ 4) * 10 + 1000, "bfly lane {l}");
    }
}

#[test]
fn approximate_transcendentals_are_within_tolerance() {
    let xs: Vec<f32> = (0..32).map(|i| -12.0 + 0.77 * i as f32).collect();
    let ex2 = floats(&run("ex2.approx.ftz.f32 %f3, %f2;\nmov.b32 %r3, %f3;", &bits(&xs), &[0; 32]));
    let rcp = floats(&run("rcp.approx.ftz.f32 %f3, %f2;\nmov.b32 %r3, %f3;", &bits(&xs), &[0; 32]));
    let rsqrt_in: Vec<f32> = xs.iter().map(|x| x.abs() + 0.1).collect();
    let rsqrt = floats(&run("rsqrt.approx.f32 %f3, %f2;\nmov.b32 %r3, %f3;", &bits(&rsqrt_in), &[0; 32]));
    for i in 0..32 {
        let x = xs[i] as f64;
        let rel = |got: f32, want: f64| ((got as f64 - want) / want).abs();
        assert!(rel(ex2[i], x.exp2()) < 2e-7, "ex2({x}) = {}", ex2[i]);
        assert!(rel(rcp[i], 1.0 / x) < 2e-7, "rcp({x}) = {}", rcp[i]);
        let r = rsqrt_in[i] as f64;
        assert!(rel(rsqrt[i], 1.0 / r.sqrt()) < 2e-7, "rsqrt({r}) = {}", rsqrt[i]);
    }
}

#[test]
fn setp_ordered_and_unordered_comparisons_with_nan() {
    // bit k of the result is comparison k.
    let body = "setp.lt.f32 %p1, %f2, %f4;\nsetp.ltu.f32 %p2, %f2, %f4;\nsetp.ne.f32 %p3, %f2, %f4;\n\
                setp.neu.f32 %p4, %f2, %f4;\nsetp.equ.f32 %p5, %f2, %f4;\nsetp.nan.f32 %p6, %f2, %f4;\n\
                selp.u32 %r5, 1, 0, %p1;\nselp.u32 %r6, 2, 0, %p2;\nor.b32 %r3, %r5, %r6;\n\
                selp.u32 %r5, 4, 0, %p3;\nor.b32 %r3, %r3, %r5;\nselp.u32 %r5, 8, 0, %p4;\nor.b32 %r3, %r3, %r5;\n\
                selp.u32 %r5, 16, 0, %p5;\nor.b32 %r3, %r3, %r5;\nselp.u32 %r5, 32, 0, %p6;\nor.b32 %r3, %r3, %r5;";
    let a = bits(&[f32::NAN, 1.0, 2.0, 1.0]);
    let b = bits(&[1.0, 2.0, 1.0, 1.0]);
    // NaN: only the unordered ones (ltu, neu, equ, nan) hold.
    assert_eq!(run(body, &a, &b), vec![2 | 8 | 16 | 32, 1 | 2 | 4 | 8, 4 | 8, 16]);
}

#[test]
fn bit_manipulation_and_wide_multiplies() {
    let a = ints(&[0x0000_f0f0, -1, 0x1234_5678]);
    let b = ints(&[4, 8, 12]);
    assert_eq!(run("bfe.s32 %r3, %r2, %r4, 8;", &a, &b), ints(&[0x0f, -1, 0x45]));
    assert_eq!(run("bfe.u32 %r3, %r2, %r4, 8;", &a, &b), vec![0x0f, 0xff, 0x45]);
    assert_eq!(run("brev.b32 %r3, %r2;", &a, &b), vec![0x0f0f_0000, u32::MAX, 0x1e6a_2c48]);
    assert_eq!(run("clz.b32 %r3, %r2;", &a, &b), vec![16, 0, 3]);
    assert_eq!(run("bfind.u32 %r3, %r2;", &a, &b), vec![15, 31, 28]);
    // The shift that brings that bit to bit 31; a signed -1 (no bit differing from the sign) and 0
    // have none.
    assert_eq!(run("bfind.shiftamt.u32 %r3, %r2;", &a, &b), vec![16, 0, 3]);
    assert_eq!(run("bfind.shiftamt.s32 %r3, %r2;", &ints(&[-1, 0, 1, -2]), &[0; 4]), vec![u32::MAX, u32::MAX, 31, 31]);
    assert_eq!(run("mul.hi.s32 %r3, %r2, %r4;", &ints(&[-3, i32::MAX]), &ints(&[1 << 30, 4])), ints(&[-1, 1]));
    let wide = "mul.wide.s32 %rd8, %r2, %r4;\nshr.u64 %rd9, %rd8, 32;\ncvt.u32.u64 %r3, %rd9;";
    assert_eq!(run(wide, &ints(&[-3, i32::MAX]), &ints(&[1 << 30, 4])), ints(&[-1, 1]));
    assert_eq!(run("prmt.b32 %r3, %r2, %r4, 0x3210;", &a, &b), a);
    assert_eq!(run("prmt.b32 %r3, %r2, %r4, 0x0123;", &ints(&[0x1122_3344]), &[0]), vec![0x4433_2211]);
}

#[test]
fn directed_rounding_fma_as_in_inlined_expf() {
    // fma.rm rounds toward -inf: (1 + eps)(1 - eps) = 1 - eps^2 just below 1.
    let e = f32::EPSILON;
    let a = bits(&[1.0 + e, -(1.0 + e)]);
    let b = bits(&[1.0 - e, 1.0 - e]);
    let got = floats(&run("fma.rm.f32 %f3, %f2, %f4, 0f00000000;\nmov.b32 %r3, %f3;", &a, &b));
    assert_eq!(got, vec![1.0f32.next_down(), -1.0]);
    let got = floats(&run("fma.rp.f32 %f3, %f2, %f4, 0f00000000;\nmov.b32 %r3, %f3;", &a, &b));
    assert_eq!(got, vec![1.0, -(1.0f32.next_down())]);
}

#[test]
fn saturating_adds_24_bit_multiplies_funnel_shifts_copysign_and_testp() {
    let a = ints(&[i32::MAX, i32::MIN, 5]);
    let b = ints(&[1, -1, 7]);
    assert_eq!(run("add.sat.s32 %r3, %r2, %r4;", &a, &b), ints(&[i32::MAX, i32::MIN, 12]));
    assert_eq!(run("sub.sat.s32 %r3, %r2, %r4;", &a, &b), ints(&[i32::MAX - 1, i32::MIN + 1, -2]));
    // Only the low 24 bits take part: 0x1000003 * 2 uses 3 * 2.
    assert_eq!(run("mul24.lo.u32 %r3, %r2, %r4;", &ints(&[0x100_0003, 0x7f_ffff]), &ints(&[2, 0x100])), vec![6, 0x7fff_ff00]);
    assert_eq!(run("mul24.hi.u32 %r3, %r2, %r4;", &ints(&[0xff_ffff]), &ints(&[0xff_ffff])), vec![0xffff_fe00]);
    let rot = "shf.l.wrap.b32 %r3, %r2, %r2, %r4;";
    assert_eq!(run(rot, &[0x8000_0001, 0x1234_5678], &[1, 36]), vec![0x0000_0003, 0x2345_6781]);
    // Clamped shift counts stop at 32: the whole high word comes down.
    assert_eq!(run("shf.r.clamp.b32 %r3, %r2, %r4, 40;", &[0xdead_beef], &[0x1234_5678]), vec![0x1234_5678]);
    let signs = floats(&run("copysign.f32 %f3, %f2, %f4;\nmov.b32 %r3, %f3;", &bits(&[-1.0, 2.0]), &bits(&[3.0, -4.0])));
    assert_eq!(signs, vec![-3.0, 4.0]);
    let body = "testp.finite.f32 %p1, %f2;\ntestp.notanumber.f32 %p2, %f2;\nselp.u32 %r5, 1, 0, %p1;\n\
                selp.u32 %r6, 2, 0, %p2;\nor.b32 %r3, %r5, %r6;";
    assert_eq!(run(body, &bits(&[1.0, f32::INFINITY, f32::NAN]), &[0; 3]), vec![1, 0, 2]);
}
