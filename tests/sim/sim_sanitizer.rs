//! The sanitizer on deliberately broken kernels compiled with NVRTC: each fault is reported
//! with the right diagnosis, and each broken kernel's correct twin runs clean.

use ferronet_test_support::assert_mentions;
use ferronet_test_support::sim::{data, sim, sim_with};

use ferronet::device::Device;
use ferronet::device::driver::{KernelArg, LaunchConfig};
use ferronet::sim::SimOptions;

const BROKEN: &str = include_str!("sim_kernels/broken.cu");
const SGEMM: &str = include_str!("sim_kernels/sgemm.cu");

fn sgemm_launch(kernel: &str) -> ferronet::Result<Vec<f32>> {
    let (_, gpu) = sim("sgemm", SGEMM);
    let (m, n, k) = (32, 32, 32);
    let da = gpu.upload(&data(m * k, 1))?;
    let db = gpu.upload(&data(k * n, 2))?;
    let dc = gpu.alloc::<f32>(m * n)?;
    let cfg = LaunchConfig { grid: (2, 2, 1), block: (16, 16, 1), shared_mem_bytes: 0 };
    let args = [da.arg(), db.arg(), dc.arg(), KernelArg::I32(m as i32), KernelArg::I32(n as i32), KernelArg::I32(k as i32)];
    gpu.launch("sgemm", kernel, cfg, &args)?;
    gpu.download(&dc)
}

#[test]
fn missing_syncthreads_in_a_tiled_kernel_is_a_race() {
    let err = sgemm_launch("sgemm_missing_sync").unwrap_err();
    assert_mentions(&err, &["data race", "sgemm_missing_sync", "PTX line", "ld.shared.f32", "written by thread", "__syncthreads()", "_ZZ"]);
    sgemm_launch("sgemm_tiled").expect("the synchronised twin is race-free");
}

#[test]
fn missing_syncthreads_goes_unreported_with_the_sanitizer_off() {
    let (driver, gpu) = sim("sgemm", SGEMM);
    driver.set_sanitize(false).unwrap();
    let d = gpu.upload(&data(16 * 16, 3)).unwrap();
    let c = gpu.alloc::<f32>(16 * 16).unwrap();
    let cfg = LaunchConfig { grid: (1, 1, 1), block: (16, 16, 1), shared_mem_bytes: 0 };
    let args = [d.arg(), d.arg(), c.arg(), KernelArg::I32(16), KernelArg::I32(16), KernelArg::I32(16)];
    gpu.launch("sgemm", "sgemm_missing_sync", cfg, &args).expect("no race checks without the sanitizer");
}

#[test]
fn off_by_one_guard_reads_past_the_allocation() {
    let (_, gpu) = sim("broken", BROKEN);
    let n = 100;
    let x = gpu.upload(&data(n, 4)).unwrap();
    let y = gpu.alloc::<f32>(n).unwrap();
    let args = [x.arg(), y.arg(), KernelArg::F32(2.0), KernelArg::I32(n as i32)];
    let err = gpu.launch("broken", "scale_off_by_one", LaunchConfig::linear(n, 128), &args).unwrap_err();
    let base = format!("{:#x}", x.ptr());
    let addr = format!("{:#x}", x.ptr() + 400);
    assert_mentions(&err, &["out-of-bounds global access", "scale_off_by_one", "thread (100,0,0)", "ld.global", &addr, "just past the end", "400 bytes at", &base]);
    gpu.launch("broken", "scale_ok", LaunchConfig::linear(n, 128), &args).unwrap();
    assert_eq!(gpu.download(&y).unwrap()[99], 2.0 * data(n, 4)[99]);
}

#[test]
fn reading_a_buffer_nothing_wrote_is_an_uninitialised_read() {
    let (_, gpu) = sim("broken", BROKEN);
    let n = 64;
    let x = gpu.alloc::<f32>(n).unwrap();
    let y = gpu.alloc::<f32>(n).unwrap();
    let args = [x.arg(), y.arg(), KernelArg::F32(1.0), KernelArg::I32(n as i32)];
    let err = gpu.launch("broken", "scale_ok", LaunchConfig::linear(n, 64), &args).unwrap_err();
    assert_mentions(&err, &["uninitialised read", "scale_ok", "offset 0 of allocation", "thread (0,0,0)"]);
    // Zeroed (memset) memory counts as written.
    let x = gpu.alloc_zeroed::<f32>(n).unwrap();
    let args = [x.arg(), y.arg(), KernelArg::F32(1.0), KernelArg::I32(n as i32)];
    gpu.launch("broken", "scale_ok", LaunchConfig::linear(n, 64), &args).unwrap();
    // A copy of a partly written buffer carries its uninitialised part along.
    let partial = gpu.alloc::<f32>(n).unwrap();
    gpu.driver().copy_htod(partial.ptr(), bytemuck::cast_slice(&[1.0f32; 8])).unwrap();
    let copy = gpu.copy_buf(&partial).unwrap();
    let args = [copy.arg(), y.arg(), KernelArg::F32(1.0), KernelArg::I32(n as i32)];
    let err = gpu.launch("broken", "scale_ok", LaunchConfig::linear(n, 64), &args).unwrap_err();
    assert_mentions(&err, &["uninitialised read", "offset 32 of allocation", "thread (8,0,0)"]);
}

#[test]
fn misaligned_float4_load_is_reported() {
    let (_, gpu) = sim("broken", BROKEN);
    let x = gpu.upload(&data(68, 5)).unwrap();
    let y = gpu.alloc::<f32>(64).unwrap();
    let err = gpu.launch("broken", "copy4", LaunchConfig::linear(16, 16), &[x.arg(), y.arg(), KernelArg::I32(1), KernelArg::I32(16)]).unwrap_err();
    assert_mentions(&err, &["misaligned access", "copy4", "ld.global", "v4", "16-byte", "not 16-byte aligned"]);
    gpu.launch("broken", "copy4", LaunchConfig::linear(16, 16), &[x.arg(), y.arg(), KernelArg::I32(4), KernelArg::I32(16)]).unwrap();
    assert_eq!(gpu.download(&y).unwrap(), data(68, 5)[4..68].to_vec());
}

#[test]
fn barrier_inside_a_divergent_branch_is_reported() {
    let (_, gpu) = sim("broken", BROKEN);
    let x = gpu.upload(&data(64, 6)).unwrap();
    let y = gpu.alloc::<f32>(64).unwrap();
    let err = gpu.launch("broken", "divergent_barrier", LaunchConfig::linear(64, 64), &[x.arg(), y.arg(), KernelArg::I32(40)]).unwrap_err();
    assert_mentions(&err, &["barrier error", "divergent_barrier", "barrier divergence", "bar.sync", "same __syncthreads()"]);
    // With no thread (or every thread) taking the branch the barriers match up.
    for split in [0, 64] {
        gpu.launch("broken", "divergent_barrier", LaunchConfig::linear(64, 64), &[x.arg(), y.arg(), KernelArg::I32(split)]).unwrap();
        let got = gpu.download(&y).unwrap();
        assert_eq!(got[0], data(64, 6)[63]);
    }
}

#[test]
fn full_mask_shuffles_on_both_sides_of_a_branch_are_reported() {
    let (_, gpu) = sim("broken", BROKEN);
    let x = gpu.upload(&data(32, 7)).unwrap();
    let y = gpu.alloc::<f32>(32).unwrap();
    let err = gpu.launch("broken", "shuffle_in_branch", LaunchConfig::linear(32, 32), &[x.arg(), y.arg(), KernelArg::I32(16)]).unwrap_err();
    assert_mentions(&err, &["warp-synchronous error", "shfl.sync", "0x0000ffff", "member mask 0xffffffff"]);
    gpu.launch("broken", "shuffle_in_branch", LaunchConfig::linear(32, 32), &[x.arg(), y.arg(), KernelArg::I32(32)]).unwrap();
}

#[test]
fn shuffles_wait_for_lanes_on_their_way_and_not_for_exited_ones() {
    let (_, gpu) = sim("broken", BROKEN);
    let x = data(32, 9);
    let dx = gpu.upload(&x).unwrap();
    let y = gpu.zeros(32).unwrap();
    gpu.launch("broken", "shuffle_after_exit", LaunchConfig::linear(32, 32), &[dx.arg(), y.arg(), KernelArg::I32(16)]).unwrap();
    let got = gpu.download(&y).unwrap();
    for t in 0..16 {
        assert_eq!(got[t], x[t] + x[t ^ 1], "lane {t}");
    }
    // With 15 live lanes, lane 14 reads lane 15, which has exited.
    let err = gpu.launch("broken", "shuffle_after_exit", LaunchConfig::linear(32, 32), &[dx.arg(), y.arg(), KernelArg::I32(15)]).unwrap_err();
    assert_mentions(&err, &["warp-synchronous error", "reads lane 15", "not executing it"]);
}

#[test]
fn unknown_instructions_are_named_with_kernel_and_line() {
    let ptx = ".version 8.8\n.target sm_75\n.address_size 64\n.visible .entry odd()\n{\n\t.reg .b32 %r<3>;\n\tsad.u32 %r1, %r2, %r2, %r2;\n\tret;\n}\n";
    let driver = ferronet::sim::SimDriver::new(SimOptions::default());
    driver.load_ptx("odd", ptx).unwrap();
    let gpu = ferronet::gpu::GpuBackend::new(std::sync::Arc::new(driver));
    let err = gpu.launch("odd", "odd", LaunchConfig::linear(1, 1), &[]).unwrap_err();
    assert_mentions(&err, &["kernel odd", "PTX line 7", "does not support `sad.u32`"]);
}

#[test]
fn out_of_bounds_is_caught_even_with_the_sanitizer_off() {
    let (_, gpu) = sim_with(SimOptions { sanitize: false, ..SimOptions::default() }, "broken", BROKEN);
    let x = gpu.upload(&data(10, 8)).unwrap();
    let y = gpu.alloc::<f32>(10).unwrap();
    let args = [x.arg(), y.arg(), KernelArg::F32(2.0), KernelArg::I32(10)];
    let err = gpu.launch("broken", "scale_off_by_one", LaunchConfig::linear(10, 32), &args).unwrap_err();
    assert_mentions(&err, &["out-of-bounds global access"]);
}
