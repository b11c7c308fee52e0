//! Conversions and byte permutes of code we did not write, run on the simulator: CUDA's
//! float-to-integer, integer-to-float, double-to-float, float-to-half/bfloat16 and
//! integer-to-double intrinsics in every rounding mode (compiled for compute_75 and
//! compute_80, whose bf16 conversions differ), and the special `prmt` modes.

use ferronet::device::driver::KernelArg;
use ferronet::sim::SimOptions;
use ferronet_test_support::sim::{one_block, sim_for_cc};
use std::cmp::Ordering;

const CONVERSIONS: &str = include_str!("sim_kernels/conversions.cu");

#[derive(Clone, Copy, Debug)]
enum Round {
    Nearest,
    Zero,
    Down,
    Up,
}
use Round::*;

/// Moves `nearest`, the round-to-nearest of an exact value it compares with as `vs_exact`, to
/// the neighbour mode `r` picks (`up`/`down`: the next value up or down).
fn directed<T: Copy + PartialOrd + Default>(nearest: T, vs_exact: Ordering, r: Round, up: fn(T) -> T, down: fn(T) -> T) -> T {
    let zero = T::default();
    match (r, vs_exact) {
        // Toward zero: a magnitude above the exact value's steps back.
        (Zero, Ordering::Greater) if nearest > zero => down(nearest),
        (Zero, Ordering::Less) if nearest < zero => up(nearest),
        (Down, Ordering::Greater) => down(nearest),
        (Up, Ordering::Less) => up(nearest),
        _ => nearest,
    }
}

/// `exact` (held exactly by an f64) rounded to f32 in mode `r`.
fn to_f32(exact: f64, r: Round) -> f32 {
    let n = exact as f32;
    directed(n, (n as f64).partial_cmp(&exact).expect("no NaN"), r, f32::next_up, f32::next_down)
}

/// The integer `exact` rounded to f64 in mode `r`.
fn to_f64(exact: i128, r: Round) -> f64 {
    let n = exact as f64;
    directed(n, (n as i128).cmp(&exact), r, f64::next_up, f64::next_down)
}

#[test]
fn conversions_round_and_saturate_like_the_isa() {
    let x = [2.5f32, -2.5, 0.7, -1e10, 3.0e9, f32::NAN, 1.5, -0.4];
    let xd = [1.0 + 2f64.powi(-30), -(1.0 + 2f64.powi(-30)), 1e300, -1e300, 0.1, 1e-50, 2.5, -7.5];
    let xi = [16_777_217i32, -16_777_217, 33_554_435, 7, i32::MAX, i32::MIN, 0, -5];
    // Values between two halves or bfloat16s, past their largest finite values and below their
    // smallest subnormal.
    let hx = [1.0 + 2f32.powi(-11), -(1.0 + 2f32.powi(-12)), 70000.0, -70000.0, 1e-8, -1e-8, 65519.0, 0.0];
    // Of each hx: the f16 bits rounded [rn, rz, rd, ru], then the bf16 bits in the same order.
    let half_bits: [[u16; 8]; 8] = [
        [0x3C00, 0x3C00, 0x3C00, 0x3C01, 0x3F80, 0x3F80, 0x3F80, 0x3F81],
        [0xBC00, 0xBC00, 0xBC01, 0xBC00, 0xBF80, 0xBF80, 0xBF81, 0xBF80],
        [0x7C00, 0x7BFF, 0x7BFF, 0x7C00, 0x4789, 0x4788, 0x4788, 0x4789],
        [0xFC00, 0xFBFF, 0xFC00, 0xFBFF, 0xC789, 0xC788, 0xC789, 0xC788],
        [0x0000, 0x0000, 0x0000, 0x0001, 0x322C, 0x322B, 0x322B, 0x322C],
        [0x8000, 0x8000, 0x8001, 0x8000, 0xB22C, 0xB22B, 0xB22C, 0xB22B],
        [0x7BFF, 0x7BFF, 0x7BFF, 0x7C00, 0x4780, 0x477F, 0x477F, 0x4780],
        [0, 0, 0, 0, 0, 0, 0, 0],
    ];
    for cc in [(7, 5), (8, 0)] {
        let (_, gpu) = sim_for_cc(SimOptions::default(), "conversions", CONVERSIONS, cc);
        let (dx, dxd, dxi, dhx) = (gpu.upload_slice(&x).unwrap(), gpu.upload_slice(&xd).unwrap(), gpu.upload_slice(&xi).unwrap(), gpu.upload_slice(&hx).unwrap());
        let ints = gpu.alloc::<i32>(80).unwrap();
        let floats = gpu.alloc::<f32>(88).unwrap();
        let halves = gpu.alloc::<u16>(64).unwrap();
        let doubles = gpu.alloc::<f64>(24).unwrap();
        let args = [dx.arg(), dxd.arg(), dxi.arg(), dhx.arg(), ints.arg(), floats.arg(), halves.arg(), doubles.arg()];
        gpu.launch("conversions", "conversions", one_block(8), &args).unwrap_or_else(|e| panic!("{cc:?}: {e}"));
        let (ints, floats) = (gpu.download_slice(&ints).unwrap(), gpu.download_slice(&floats).unwrap());
        let (halves, doubles) = (gpu.download_slice(&halves).unwrap(), gpu.download_slice(&doubles).unwrap());
        for t in 0..8 {
            let (v, d, i) = (x[t], xd[t], xi[t]);
            // Rust's float-to-integer `as` saturates and maps NaN to 0, as cvt does.
            let want_ints = [
                v.round_ties_even() as i32,
                v.trunc() as i32,
                v.floor() as i32,
                v.ceil() as i32,
                v.round_ties_even() as u32 as i32,
                (v.floor() as i64 >> 8) as i32,
                d.round_ties_even() as i32,
                d.ceil() as i32,
                d.trunc() as u32 as i32,
                (v.ceil() as u64 >> 8) as i32,
            ];
            assert_eq!(&ints[10 * t..10 * t + 10], &want_ints, "{cc:?} float-to-integer of thread {t} ({v}, {d})");
            let i64 = i as f64;
            let want_floats = [
                to_f32(i64, Nearest),
                to_f32(i64, Zero),
                to_f32(i64, Down),
                to_f32(i64, Up),
                to_f32(d, Nearest),
                to_f32(d, Zero),
                to_f32(d, Down),
                to_f32(d, Up),
                if v.is_nan() { 0.0 } else { v.clamp(0.0, 1.0) },
                to_f32(i as u32 as f64, Down),
                to_f32(i as f64 * 3.0, Up),
            ];
            let bits = |fs: &[f32]| fs.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&floats[11 * t..11 * t + 11]), bits(&want_floats), "{cc:?} to-float of thread {t} ({i}, {d}, {v})");
            assert_eq!(&halves[8 * t..8 * t + 8], &half_bits[t], "{cc:?} half and bfloat16 of thread {t} ({})", hx[t]);
            let want_doubles = [i as f64, to_f64(((i as i128) << 30) + 1, Zero), to_f64((u64::MAX - i as u32 as u64) as i128, Up)];
            assert_eq!(&doubles[3 * t..3 * t + 3], &want_doubles, "{cc:?} to-double of thread {t} ({i})");
        }
    }
}

#[test]
fn byte_permute_modes_on_the_device() {
    let (_, gpu) = sim_for_cc(SimOptions::default(), "conversions", CONVERSIONS, (7, 5));
    let (a, b) = (0x8091_22B3u32, 0xC455_E6FFu32);
    let out = gpu.alloc::<u32>(16).unwrap();
    gpu.launch("conversions", "permutes", one_block(4), &[KernelArg::U32(a), KernelArg::U32(b), out.arg()]).unwrap();
    let got = gpu.download_slice(&out).unwrap();
    let backward = [0xE655_C4B3, 0x55C4_B322, 0xC4B3_2291, 0xB322_9180];
    for s in 0..4usize {
        let funnel = ((((b as u64) << 32) | a as u64) >> (8 * s)) as u32;
        let byte = (a >> (8 * s)) & 0xff;
        let half = (a >> (16 * (s & 1))) & 0xffff;
        assert_eq!(&got[4 * s..4 * s + 4], &[funnel, backward[s], byte * 0x0101_0101, half * 0x0001_0001], "selector {s}");
    }
}
