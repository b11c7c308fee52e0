//! Asynchronous copies and barriers of code we did not write (compute_80 and compute_90):
//! cp.async in a double-buffered pipeline and with zero-fill, 8- and 16-byte copies, copies an
//! mbarrier tracks, an mbarrier phase waiting for transaction bytes, and elect.sync; and the
//! sanitizer catching a pipeline that reads a buffer before waiting for its copies, which
//! without the sanitizer reads stale memory, as hardware may.

use ferronet::device::driver::KernelArg;
use ferronet::gpu::GpuBuf;
use ferronet::sim::SimOptions;
use ferronet_test_support::assert_mentions;
use ferronet_test_support::sim::{data, one_block, sim_for_cc};

const ASYNC_COPIES: &str = include_str!("sim_kernels/async_copies.cu");
const SM90: &str = include_str!("sim_kernels/sm90.cu");
const SM80: (i32, i32) = (8, 0);
/// `pipelined_tiles`'s bug argument: none, no wait before reading, no barrier before refilling.
const NO_BUG: i32 = 0;
const NO_WAIT: i32 = 1;
const NO_BARRIER_BEFORE_REFILL: i32 = 2;

/// What `pipelined_tiles` computes: out[t] = sum over tiles k of x[64k + 63 - t] * (k + 1),
/// with x zero-padded to whole tiles, summed in tile order (NVRTC contracts each step to an fma).
fn pipelined_reference(x: &[f32], tiles: usize) -> Vec<f32> {
    (0..64).map(|t| (0..tiles).fold(0.0f32, |acc, k| x.get(64 * k + 63 - t).copied().unwrap_or(0.0).mul_add((k + 1) as f32, acc))).collect()
}

#[test]
fn a_double_buffered_cp_async_pipeline_with_zero_fill() {
    let (_, gpu) = sim_for_cc(SimOptions::default(), "async_copies", ASYNC_COPIES, SM80);
    let x = data(200, 7);
    let dx = gpu.upload_slice(&x).unwrap();
    let out = gpu.alloc::<f32>(64).unwrap();
    let args = [dx.arg(), KernelArg::I32(200), KernelArg::I32(4), out.arg(), KernelArg::I32(NO_BUG)];
    gpu.launch("async_copies", "pipelined_tiles", one_block(64), &args).unwrap();
    assert_eq!(gpu.download_slice(&out).unwrap(), pipelined_reference(&x, 4));
}

#[test]
fn reading_a_cp_async_destination_before_its_wait_is_caught() {
    let x = data(200, 7);
    let args = |dx: &GpuBuf<f32>, out: &GpuBuf<f32>| [dx.arg(), KernelArg::I32(200), KernelArg::I32(4), out.arg(), KernelArg::I32(NO_WAIT)];
    let (_, gpu) = sim_for_cc(SimOptions::default(), "async_copies", ASYNC_COPIES, SM80);
    let (dx, out) = (gpu.upload_slice(&x).unwrap(), gpu.alloc::<f32>(64).unwrap());
    let err = gpu.launch("async_copies", "pipelined_tiles", one_block(64), &args(&dx, &out)).unwrap_err();
    assert_mentions(
        &err,
        &[
            "kernel fault in async_copies::pipelined_tiles: cp.async not waited for",
            "ld.shared.f32",
            "touches memory that a cp.async of thread",
            "cp.async.ca.shared.global",
            "has not written yet",
            "cp.async.wait_group",
        ],
    );
    // Without the sanitizer the kernel runs, reading buffers its copies have not reached.
    let (_, gpu) = sim_for_cc(SimOptions { sanitize: false, ..SimOptions::default() }, "async_copies", ASYNC_COPIES, SM80);
    let (dx, out) = (gpu.upload_slice(&x).unwrap(), gpu.alloc::<f32>(64).unwrap());
    gpu.launch("async_copies", "pipelined_tiles", one_block(64), &args(&dx, &out)).unwrap();
    assert_eq!(gpu.download_slice(&out).unwrap(), vec![0.0; 64], "every read saw the zeroed buffers");
}

#[test]
fn refilling_a_buffer_other_threads_may_still_read_is_caught() {
    let (_, gpu) = sim_for_cc(SimOptions::default(), "async_copies", ASYNC_COPIES, SM80);
    let (dx, out) = (gpu.upload_slice(&data(200, 7)).unwrap(), gpu.alloc::<f32>(64).unwrap());
    let args = [dx.arg(), KernelArg::I32(200), KernelArg::I32(4), out.arg(), KernelArg::I32(NO_BARRIER_BEFORE_REFILL)];
    let err = gpu.launch("async_copies", "pipelined_tiles", one_block(64), &args).unwrap_err();
    // Whichever thread the simulator ran first, the copy and the read of the same word meet.
    assert_mentions(&err, &["kernel fault in async_copies::pipelined_tiles", "cp.async.ca.shared.global", "ld.shared.f32"]);
}

#[test]
fn copies_of_16_8_and_4_bytes_with_partial_or_ignored_sources() {
    let (_, gpu) = sim_for_cc(SimOptions::default(), "async_copies", ASYNC_COPIES, SM80);
    let x4 = data(128, 3);
    let x8: Vec<f64> = (0..32).map(|i| i as f64 * 1.25 - 7.0).collect();
    let x1 = data(32, 4);
    let (d4, d8, d1) = (gpu.upload_slice(&x4).unwrap(), gpu.upload_slice(&x8).unwrap(), gpu.upload_slice(&x1).unwrap());
    let (o4, o8, o1) = (gpu.alloc::<f32>(128).unwrap(), gpu.alloc::<f64>(32).unwrap(), gpu.alloc::<f32>(32).unwrap());
    gpu.launch("async_copies", "wide_copies", one_block(32), &[d4.arg(), d8.arg(), d1.arg(), o4.arg(), o8.arg(), o1.arg()]).unwrap();
    let (got4, got8, got1) = (gpu.download_slice(&o4).unwrap(), gpu.download_slice(&o8).unwrap(), gpu.download_slice(&o1).unwrap());
    for t in 0..32 {
        let j = 31 - t;
        // Odd threads copied 8 of their 16 bytes: the rest is zero-filled.
        let want = if j % 2 == 1 { [x4[4 * j], x4[4 * j + 1], 0.0, 0.0] } else { [x4[4 * j], x4[4 * j + 1], x4[4 * j + 2], x4[4 * j + 3]] };
        assert_eq!(&got4[4 * t..4 * t + 4], &want, "float4 of thread {t}");
        assert_eq!(got8[t], x8[j], "double of thread {t}");
        assert_eq!(got1[t], if j & 2 == 0 { x1[j] } else { 0.0 }, "float (ignore-src where j & 2) of thread {t}");
    }
}

#[test]
fn copies_tracked_by_an_mbarrier_land_when_its_phase_completes() {
    let (_, gpu) = sim_for_cc(SimOptions::default(), "async_copies", ASYNC_COPIES, SM80);
    let x = data(128, 11);
    let dx = gpu.upload_slice(&x).unwrap();
    for noinc in [0, 1] {
        let out = gpu.alloc::<f32>(128).unwrap();
        gpu.launch("async_copies", "mbarrier_tracked_copies", one_block(128), &[dx.arg(), out.arg(), KernelArg::I32(noinc)])
            .unwrap_or_else(|e| panic!("noinc {noinc}: {e}"));
        let want: Vec<f32> = x.iter().rev().copied().collect();
        assert_eq!(gpu.download_slice(&out).unwrap(), want, "noinc {noinc}");
    }
}

#[test]
fn an_mbarrier_phase_waits_for_its_transaction_bytes() {
    let (_, gpu) = sim_for_cc(SimOptions::default(), "sm90", SM90, (9, 0));
    let (out, early) = (gpu.alloc::<f32>(64).unwrap(), gpu.alloc::<u32>(64).unwrap());
    gpu.launch("sm90", "transaction_barrier", one_block(64), &[out.arg(), early.arg()]).unwrap();
    let want: Vec<f32> = (0..64).map(|t| 2.0 * (63 - t) as f32).collect();
    assert_eq!(gpu.download_slice(&out).unwrap(), want);
    assert_eq!(gpu.download_slice(&early).unwrap(), vec![0; 64], "no thread saw the phase complete before its own bytes arrived");
}

#[test]
fn elect_sync_picks_the_lowest_member_lane() {
    let (_, gpu) = sim_for_cc(SimOptions::default(), "sm90", SM90, (9, 0));
    let out = gpu.alloc::<u32>(256).unwrap();
    gpu.launch("sm90", "elect_leaders", one_block(64), &[out.arg()]).unwrap();
    let got = gpu.download_slice(&out).unwrap();
    for t in 0..64usize {
        let lane = t % 32;
        let odd = if t % 2 == 1 { [1, (lane == 1) as u32] } else { [99, 99] };
        assert_eq!(&got[4 * t..4 * t + 4], &[0, (lane == 0) as u32, odd[0], odd[1]], "thread {t}");
    }
}

const LIBCUDACXX_ASYNC: &str = include_str!("sim_kernels/libcudacxx_async.cu");

#[test]
fn libcudacxx_barriers_pipelines_and_group_copies() {
    let (_, gpu) = sim_for_cc(SimOptions::default(), "libcudacxx_async", LIBCUDACXX_ASYNC, SM80);
    let x = data(4 * 256, 13);
    let dx = gpu.upload_slice(&x).unwrap();
    let reversed: Vec<f32> = x[..256].iter().rev().copied().collect();
    for kernel in ["barrier_copy", "group_copy"] {
        let out = gpu.alloc::<f32>(256).unwrap();
        gpu.launch("libcudacxx_async", kernel, one_block(256), &[dx.arg(), out.arg()]).unwrap_or_else(|e| panic!("{kernel}: {e}"));
        assert_eq!(gpu.download_slice(&out).unwrap(), reversed, "{kernel}");
    }
    let out = gpu.alloc::<f32>(256).unwrap();
    gpu.launch("libcudacxx_async", "pipeline_sum", one_block(256), &[dx.arg(), KernelArg::I32(4), out.arg()]).unwrap();
    let want: Vec<f32> = (0..256).map(|t| (0..4).fold(0.0f32, |acc, k| acc + x[256 * k + 255 - t])).collect();
    assert_eq!(gpu.download_slice(&out).unwrap(), want);
}
