//! CUDA idioms of code we did not write, run on the simulator (NVRTC for compute_75 and
//! compute_80): predefined constants, scoped inline-asm registers, spin-waits between warps,
//! warp reductions and matches, named barriers, mbarriers, atomics of every width and op; and
//! the sanitizer naming a missing barrier as a race (both threads and lines) in either order.

use ferronet::device::driver::KernelArg;
use ferronet::gpu::GpuBackend;
use ferronet::sim::{SimDriver, SimOptions};
use ferronet_test_support::assert_mentions;
use ferronet_test_support::sim::{one_block as block, sim_for_cc};
use std::sync::Arc;

const IDIOMS: &str = include_str!("sim_kernels/idioms.cu");
const IDIOMS_SM80: &str = include_str!("sim_kernels/idioms80.cu");

/// (major, minor) of `compute_XY`.
fn capability(arch: &str) -> (i32, i32) {
    let digits = arch.trim_start_matches("compute_").as_bytes();
    ((digits[0] - b'0') as i32, (digits[1] - b'0') as i32)
}

fn sim_for(name: &str, src: &str, arch: &'static str) -> GpuBackend {
    sim_for_cc(SimOptions::default(), name, src, capability(arch)).1
}

#[test]
fn warp_sz_and_block_scoped_asm_registers() {
    for arch in ["compute_75", "compute_80"] {
        let gpu = sim_for("idioms", IDIOMS, arch);
        let out = gpu.alloc::<u32>(3 * 32).unwrap();
        gpu.launch("idioms", "warp_size_and_scoped_regs", block(32), &[out.arg()]).unwrap();
        let got = gpu.download_slice(&out).unwrap();
        let want: Vec<u32> = (0..32).flat_map(|t| [32, (t > 15) as u32, t + 100]).collect();
        assert_eq!(got, want, "{arch}");
    }
    // NVRTC folds warpSize; older front ends leave the predefined constant in the PTX.
    let ptx = ".version 8.8\n.target sm_75\n.address_size 64\n.visible .entry k(.param .u64 out)\n{\n\t.reg .b32 %r<2>;\n\t\
               .reg .b64 %rd<3>;\n\tld.param.u64 %rd1, [out];\n\tcvta.to.global.u64 %rd2, %rd1;\n\tmov.u32 %r1, WARP_SZ;\n\t\
               st.global.u32 [%rd2], %r1;\n\tret;\n}\n";
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    driver.load_ptx("warp_sz", ptx).unwrap();
    let gpu = GpuBackend::new(driver);
    let out = gpu.alloc::<u32>(1).unwrap();
    gpu.launch("warp_sz", "k", block(1), &[out.arg()]).unwrap();
    assert_eq!(gpu.download_slice(&out).unwrap(), vec![32]);
}

#[test]
fn a_warp_spinning_on_another_warps_flag_finishes() {
    let gpu = sim_for("idioms", IDIOMS, "compute_75");
    for mode in [0, 1] {
        let out = gpu.alloc::<f32>(32).unwrap();
        gpu.launch("idioms", "spin_wait", block(64), &[out.arg(), KernelArg::I32(mode)]).unwrap_or_else(|e| panic!("mode {mode}: {e}"));
        let want: Vec<f32> = (0..32).map(|l| 2.0 * l as f32 + 1.0).collect();
        assert_eq!(gpu.download_slice(&out).unwrap(), want, "mode {mode}");
    }
}

#[test]
fn lanes_of_one_store_do_not_race_but_two_warps_do() {
    let gpu = sim_for("idioms", IDIOMS, "compute_75");
    let out = gpu.alloc::<u32>(1).unwrap();
    gpu.launch("idioms", "one_word_store", block(32), &[out.arg()]).expect("one instruction's lanes do not race");
    let got = gpu.download_slice(&out).unwrap()[0];
    assert!(got < 32, "the word holds one lane's value, got {got}");
    let err = gpu.launch("idioms", "one_word_store", block(64), &[out.arg()]).unwrap_err();
    assert_mentions(&err, &["kernel fault in idioms::one_word_store", "data race (missing barrier)", "thread (32,0,0)", "st.shared.u32", "write of a word also written by thread (31,0,0)"]);
}

#[test]
fn a_missing_first_barrier_in_a_block_reduce_is_a_race_not_an_uninitialised_read() {
    let gpu = sim_for("idioms", IDIOMS, "compute_75");
    let x: Vec<f32> = (0..64).map(|i| i as f32 * 0.5).collect();
    let dx = gpu.upload_slice(&x).unwrap();
    let out = gpu.alloc::<f32>(1).unwrap();
    gpu.launch("idioms", "block_sum", block(64), &[dx.arg(), out.arg(), KernelArg::I32(1)]).unwrap();
    assert_eq!(gpu.download_slice(&out).unwrap(), vec![x.iter().sum::<f32>()]);
    // Warp 0 reads scratch[1] before warp 1 writes it: the write is reported against the read.
    let err = gpu.launch("idioms", "block_sum", block(64), &[dx.arg(), out.arg(), KernelArg::I32(0)]).unwrap_err();
    assert!(matches!(err, ferronet::Error::KernelFault { .. }), "{err:?}");
    assert_mentions(
        &err,
        &[
            "kernel fault in idioms::block_sum: data race (missing barrier) at PTX line",
            "st.shared.f32",
            "block (0,0,0) thread (32,0,0)",
            "write of a word read by thread (1,0,0) at PTX line",
            "ld.shared.f32",
            "in the same barrier interval, at shared offset 4 (_ZZ9block_sumE7scratch)",
            "__syncthreads()",
        ],
    );
    assert!(!err.to_string().contains("uninitialised"), "{err}");
}

#[test]
fn never_written_shared_memory_is_still_an_uninitialised_read() {
    let gpu = sim_for("idioms", IDIOMS, "compute_75");
    let out = gpu.alloc::<f32>(64).unwrap();
    let err = gpu.launch("idioms", "read_unwritten_shared", block(64), &[out.arg()]).unwrap_err();
    assert_mentions(&err, &["kernel fault in idioms::read_unwritten_shared: uninitialised read", "thread (0,0,0)", "shared load at offset 0"]);
}

#[test]
fn warp_votes_matches_and_tile_shuffles() {
    let gpu = sim_for("idioms", IDIOMS, "compute_75");
    let x: Vec<u32> = (0..32u32).map(|i| (i * 7 + 3) % 11).collect();
    let dx = gpu.upload_slice(&x).unwrap();
    let out = gpu.alloc::<u32>(6 * 32).unwrap();
    gpu.launch("idioms", "warp_votes", block(32), &[dx.arg(), out.arg()]).unwrap();
    let got = gpu.download_slice(&out).unwrap();
    let ballot = (0..32).filter(|&l| x[l] & 1 == 1).fold(0u32, |m, l| m | 1 << l);
    // An 8-lane shuffle-down sum: lanes past the tile's end keep their own value.
    let mut tile = x.clone();
    for d in [4, 2, 1] {
        tile = (0..32).map(|l| tile[l] + if l % 8 + d < 8 { tile[l + d] } else { tile[l] }).collect();
    }
    for t in 0..32 {
        let same = (0..32).filter(|&l| x[l] % 4 == x[t] % 4).fold(0u32, |m, l| m | 1 << l);
        let want = [ballot, x.iter().all(|&v| v < 100) as u32, x.contains(&7) as u32, same, u32::MAX, tile[t]];
        assert_eq!(&got[6 * t..6 * t + 6], &want, "thread {t}");
    }
}

#[test]
fn named_barriers_with_thread_counts_and_arrive() {
    let gpu = sim_for("idioms", IDIOMS, "compute_75");
    let out = gpu.alloc::<f32>(160).unwrap();
    gpu.launch("idioms", "named_barriers", block(128), &[out.arg()]).unwrap();
    let got = gpu.download_slice(&out).unwrap();
    for t in 0..128usize {
        let want = if t < 64 { (63 - t) as f32 } else { 10.0 * (191 - t) as f32 };
        assert_eq!(got[t], want, "thread {t}");
    }
    for t in 0..32usize {
        assert_eq!(got[128 + t], 0.5 * (63 - t) as f32, "handoff {t}");
    }
}

#[test]
fn atomics_of_every_width_and_operation() {
    let gpu = sim_for("idioms", IDIOMS, "compute_75");
    let gi = gpu.upload_slice(&[0i32, 1000, -1000, -1, 0, 0, 0, 0, 0, 0]).unwrap();
    let gu = gpu.upload_slice(&[0u32, 0, 0, 5, 0, 5000, 0, 0, 0]).unwrap();
    let gull = gpu.upload_slice(&[0u64, 5 << 40, u64::MAX, 0]).unwrap();
    let gf = gpu.upload_slice(&[0f32]).unwrap();
    let gd = gpu.upload_slice(&[0f64]).unwrap();
    let gll = gpu.upload_slice(&[0i64, -1_000_000_000]).unwrap();
    let args = [gi.arg(), gu.arg(), gull.arg(), gf.arg(), gd.arg(), gll.arg()];
    gpu.launch("idioms", "atomics", block(64), &args).unwrap();
    let sum: i32 = (0..64).sum();
    // inc/dec wrap at their limit: 64 steps around a cycle of 17 (limit 16) or 9 (limit 8).
    assert_eq!(gpu.download_slice(&gi).unwrap(), vec![sum, -13, 13, i32::MIN, 0x7fff_ffff, 0, sum, 63, -1, 7]);
    assert_eq!(gpu.download_slice(&gu).unwrap(), vec![sum as u32, 64 % 17, 17 - 64 % 17, 99, 7, 1000, 1063, 64 % 9, 42]);
    assert_eq!(gpu.download_slice(&gull).unwrap(), vec![(sum as u64) << 33, 9 << 40, 5000, 5063]);
    assert_eq!(gpu.download_slice(&gf).unwrap(), vec![0.25 * sum as f32]);
    assert_eq!(gpu.download_slice(&gd).unwrap(), vec![0.125 * sum as f64]);
    assert_eq!(gpu.download_slice(&gll).unwrap(), vec![-63_000, 0]);
}

#[test]
fn warp_reductions_on_sm80() {
    let gpu = sim_for("idioms80", IDIOMS_SM80, "compute_80");
    let x: Vec<u32> = (0..32u32).map(|i| (i * 13 + 5) % 64).collect();
    let dx = gpu.upload_slice(&x).unwrap();
    let out = gpu.alloc::<u32>(7 * 32).unwrap();
    gpu.launch("idioms80", "warp_reductions", block(32), &[dx.arg(), out.arg()]).unwrap();
    let got = gpu.download_slice(&out).unwrap();
    let half = |t: usize| -> u32 { x[t & 16..(t & 16) + 16].iter().sum() };
    for t in 0..32 {
        let want = [
            x.iter().sum::<u32>(),
            *x.iter().min().unwrap(),
            x.iter().map(|&v| v as i32 - 40).max().unwrap() as u32,
            x.iter().fold(u32::MAX, |a, &v| a & (v | 0xf0)),
            x.iter().fold(0, |a, &v| a | v),
            x.iter().fold(0, |a, &v| a ^ v),
            half(t),
        ];
        assert_eq!(&got[7 * t..7 * t + 7], &want, "thread {t}");
    }
}

#[test]
fn mbarrier_hands_data_between_warps_over_two_phases() {
    let gpu = sim_for("idioms80", IDIOMS_SM80, "compute_80");
    let out = gpu.alloc::<f32>(64).unwrap();
    let pending = gpu.alloc::<u32>(64).unwrap();
    gpu.launch("idioms80", "mbarrier_handoff", block(64), &[out.arg(), pending.arg()]).unwrap();
    let got = gpu.download_slice(&out).unwrap();
    for phase in 0..2 {
        for lane in 0..32 {
            assert_eq!(got[32 * phase + lane], 3.0 * (31 - lane) as f32 + phase as f32, "phase {phase} lane {lane}");
        }
    }
    // Each arrival's state records the arrivals still pending when it came (warp 0 first).
    let want: Vec<u32> = (0..64).map(|t| 64 - t).collect();
    assert_eq!(gpu.download_slice(&pending).unwrap(), want);
}

#[test]
fn half_precision_math_and_bit_tricks_on_sm80() {
    use half::{bf16, f16};
    let gpu = sim_for("idioms80", IDIOMS_SM80, "compute_80");
    let h = gpu.alloc_zeroed::<u16>(129).unwrap();
    let b = gpu.alloc::<u16>(64).unwrap();
    let packed = gpu.alloc::<u32>(32).unwrap();
    let ints = gpu.alloc_zeroed::<i32>(97).unwrap();
    gpu.launch("idioms80", "half_math", block(32), &[h.arg(), b.arg(), packed.arg(), ints.arg()]).unwrap();
    let (h, b) = (gpu.download_slice(&h).unwrap(), gpu.download_slice(&b).unwrap());
    let (packed, ints) = (gpu.download_slice(&packed).unwrap(), gpu.download_slice(&ints).unwrap());
    let hf = |i: usize| f16::from_bits(h[i]).to_f32();
    let bf = |i: usize| bf16::from_bits(b[i]).to_f32();
    for t in 0..32usize {
        let (x, y) = (0.5 * t as f32, 0.25 * (t % 8) as f32);
        assert_eq!([hf(t), hf(32 + t), hf(64 + t), hf(96 + t)], [x * y + x + y, x.max(y), x * y, -(y * x)], "f16 thread {t}");
        assert_eq!([bf(t), bf(32 + t)], [1.5 * t as f32, (t as f32).max(20.0)], "bf16 thread {t}");
        let (lo, hi) = (bf16::from_bits(packed[t] as u16).to_f32(), bf16::from_bits((packed[t] >> 16) as u16).to_f32());
        assert_eq!((lo, hi), (t as f32 + 0.5, t as f32 + 1.5), "bf16x2 thread {t}");
        // dp4a: bytes (t, t, t, t) . (3, 1, -2, 2) + 5t.
        assert_eq!(ints[t], 9 * t as i32, "dp4a thread {t}");
        let second_set_bit_from_t = (t as u32..32).filter(|p| 0xf0f0_f0f0u32 >> p & 1 == 1).nth(1).map_or(-1, |p| p as i32);
        assert_eq!(ints[32 + t], second_set_bit_from_t, "fns thread {t}");
        let (a, bb, c) = (t as i32, 0x0f, 0x33);
        assert_eq!(ints[64 + t], (a & bb) | (a & c) | (bb & c), "lop3 majority thread {t}");
    }
    assert_eq!(hf(128), 48.0, "f16 atomicAdd of 0+1+2+3 eight times");
    assert_eq!(ints[96], 7 << 16, "16-bit atomicCAS on the upper half-word");
}

#[test]
fn syncthreads_count_and_or() {
    let gpu = sim_for("idioms", IDIOMS, "compute_75");
    let x: Vec<i32> = (0..64).map(|i| (i * 5) % 23 - 2).collect();
    let dx = gpu.upload_slice(&x).unwrap();
    let out = gpu.alloc::<i32>(3).unwrap();
    gpu.launch("idioms", "barrier_reductions", block(64), &[dx.arg(), out.arg()]).unwrap();
    let want = [x.iter().filter(|&&v| v > 10).count() as i32, x.iter().all(|&v| v >= 0) as i32, x.contains(&13) as i32];
    assert_eq!(gpu.download_slice(&out).unwrap(), want);
}

#[test]
fn spinning_on_never_written_shared_memory_is_reported_not_run_forever() {
    let gpu = sim_for("idioms", IDIOMS, "compute_75");
    let out = gpu.alloc::<i32>(32).unwrap();
    let err = gpu.launch("idioms", "spin_on_unwritten_shared", block(32), &[out.arg()]).unwrap_err();
    assert_mentions(&err, &["kernel fault in idioms::spin_on_unwritten_shared: uninitialised read", "ld.volatile.shared", "thread (0,0,0)"]);
}
