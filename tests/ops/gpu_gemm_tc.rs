//! The tensor-core GEMM (kernels/gemm_tc.cu) on the sanitizing simulator against its CPU
//! reference of the same arithmetic (inputs rounded as the GPU sees them, f64 sums, the f32
//! accumulation's error bound): bf16, f16 and tf32, shapes whose M, N and K are not multiples of
//! the tile, with no bank conflict in any shared access; f16 on Turing (compute capability 7.5:
//! its compute_75 module, two m16n8k8 per m16n8k16 and copies without cp.async, the next stage's
//! global reads in flight during the current stage's math), and Turing refused bf16 and tf32.

use ferronet::device::modules::{ptx, PtxSource};
use ferronet::gpu::GpuBackend;
use ferronet::ops::gemm::tc::{gemm_tc_half, gemm_tc_tf32, reference, to_bits, TcGemm, TcInput, TcTile};
use ferronet::sim::{SimDriver, SimOptions};
use ferronet::tolerance::within;
use ferronet_test_support::gpu::random_f32;
use std::sync::Arc;

/// Runs `shape` on `tile` on the simulator with the sanitizer from random operands in [-1, 1) and
/// checks every element of C against the reference within its bound; returns the launch's bank
/// conflicts.
fn check(shape: TcGemm, tile: TcTile, seed: u64) -> u64 {
    check_on(SimOptions::default().compute_capability, shape, tile, seed)
}

/// `check` on a simulated device of compute capability `cc`.
fn check_on(cc: (i32, i32), shape: TcGemm, tile: TcTile, seed: u64) -> u64 {
    let TcGemm { m, n, k, input } = shape;
    let driver = Arc::new(SimDriver::new(SimOptions { compute_capability: cc, ..SimOptions::default() }));
    let gpu = GpuBackend::new(driver.clone());
    let a = random_f32(m * k, seed, -1.0, 1.0);
    let b = random_f32(k * n, seed + 1, -1.0, 1.0);
    let mut c = gpu.alloc::<f32>(m * n).unwrap();
    match input {
        TcInput::Tf32 => gemm_tc_tf32(&gpu, shape, Some(tile), &gpu.upload_slice(&a).unwrap(), &gpu.upload_slice(&b).unwrap(), &mut c).unwrap(),
        _ => {
            let (ga, gb) = (gpu.upload_slice(&to_bits(input, &a).unwrap()).unwrap(), gpu.upload_slice(&to_bits(input, &b).unwrap()).unwrap());
            gemm_tc_half(&gpu, shape, Some(tile), &ga, &gb, &mut c).unwrap()
        }
    }
    let got = gpu.download_slice(&c).unwrap();
    let (want, bound) = reference(shape, &a, &b);
    for (i, ((&g, &w), &e)) in got.iter().zip(&want).zip(&bound).enumerate() {
        assert!(within(g as f64, w, e, 0.0), "{shape:?}: C[{}][{}] = {g}, reference {w} (bound {e:e})", i / n, i % n);
    }
    let stats = driver.take_launch_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].flops, 0, "no fp32 FLOPs on the CUDA cores");
    let tensor = if input == TcInput::Tf32 { stats[0].tensor_flops_tf32 } else { stats[0].tensor_flops_16bit };
    // Every block runs every mma of its padded tile.
    let padded = 2 * m.div_ceil(tile.rows()) * tile.rows() * n.div_ceil(128) * 128 * k.div_ceil(if input == TcInput::Tf32 { 16 } else { 32 }) * if input == TcInput::Tf32 { 16 } else { 32 };
    assert_eq!(tensor, padded as u64, "{shape:?}");
    stats[0].bank_conflicts
}

#[test]
fn bf16_and_f16_products_match_the_reference_with_ragged_edges() {
    for input in [TcInput::Bf16, TcInput::F16] {
        for tile in [TcTile::Rows128, TcTile::Rows64] {
            assert_eq!(check(TcGemm { input, m: 50, n: 72, k: 40 }, tile, 11), 0, "{input:?} {tile:?}");
            // Several blocks each way and four stages of K: the pipeline's buffers wrap.
            assert_eq!(check(TcGemm { input, m: 130, n: 136, k: 104 }, tile, 12), 0, "{input:?} {tile:?}");
        }
    }
}

#[test]
fn tf32_products_match_the_reference_with_ragged_edges() {
    for tile in [TcTile::Rows128, TcTile::Rows64] {
        assert_eq!(check(TcGemm { input: TcInput::Tf32, m: 50, n: 68, k: 36 }, tile, 13), 0, "{tile:?}");
        assert_eq!(check(TcGemm { input: TcInput::Tf32, m: 130, n: 132, k: 52 }, tile, 14), 0, "{tile:?}");
    }
}

#[test]
fn turing_runs_f16_products_on_its_own_module() {
    for tile in [TcTile::Rows128, TcTile::Rows64] {
        assert_eq!(check_on((7, 5), TcGemm { input: TcInput::F16, m: 50, n: 72, k: 40 }, tile, 15), 0, "{tile:?}");
        assert_eq!(check_on((7, 5), TcGemm { input: TcInput::F16, m: 130, n: 136, k: 104 }, tile, 16), 0, "{tile:?}");
    }
    let ptx = ptx("gemm_tc", (7, 5), PtxSource::EmbeddedFirst).unwrap();
    assert!(ptx.contains(".target sm_75") && ptx.contains("m16n8k8") && !ptx.contains("cp.async") && !ptx.contains("bf16"), "Turing's module");
}

/// Asserts of every kernel of `module`'s compute_75 PTX (Turing: no cp.async) that its K loop
/// overlaps the next stage's copies with the current stage's math: in the innermost loop holding
/// an mma.sync (from a label to the last branch back to it), every global load comes before the
/// first mma.sync and every shared store after the last one, followed by a barrier.
pub(crate) fn assert_turing_k_loops_read_ahead(module: &str) {
    let ptx = ptx(module, (7, 5), PtxSource::EmbeddedFirst).unwrap();
    let entries: Vec<&str> = ptx.split(".entry ").skip(1).collect();
    assert!(!entries.is_empty(), "{module}: no kernel in its compute_75 PTX");
    for entry in entries {
        let kernel = entry.split('(').next().unwrap_or_default();
        let lines: Vec<&str> = entry.lines().map(str::trim).collect();
        let loops = lines.iter().enumerate().filter_map(|(start, line)| {
            let label = line.strip_suffix(':').filter(|l| l.starts_with('$'))?;
            let back = lines.iter().rposition(|l| l.contains("bra") && l.split_whitespace().last() == Some(format!("{label};").as_str()))?;
            (back > start).then(|| &lines[start..=back])
        });
        let k_loop = loops.filter(|body| body.iter().any(|l| l.starts_with("mma.sync"))).min_by_key(|body| body.len());
        let k_loop = k_loop.unwrap_or_else(|| panic!("{module}::{kernel}: no loop holds an mma.sync"));
        let at = |prefix: &str| k_loop.iter().enumerate().filter(|(_, l)| l.starts_with(prefix)).map(|(i, _)| i).collect::<Vec<_>>();
        let mmas = at("mma.sync");
        let (first_mma, last_mma) = (mmas[0], mmas[mmas.len() - 1]);
        let (loads, stores, barriers) = (at("ld.global"), at("st.shared"), at("bar.sync"));
        assert!(!loads.is_empty() && loads.iter().all(|&i| i < first_mma), "{module}::{kernel}: the next stage's global loads {loads:?} must precede the first mma.sync ({first_mma})");
        assert!(!stores.is_empty() && stores.iter().all(|&i| i > last_mma), "{module}::{kernel}: its shared stores {stores:?} must follow the last mma.sync ({last_mma})");
        assert!(barriers.last() > stores.last(), "{module}::{kernel}: a barrier {barriers:?} must follow the shared stores {stores:?}");
    }
}

#[test]
fn turing_gemms_read_the_next_stage_during_the_math() {
    assert_turing_k_loops_read_ahead("gemm_tc");
}

#[test]
fn turing_refuses_bf16_and_tf32() {
    let driver = Arc::new(SimDriver::new(SimOptions { compute_capability: (7, 5), ..SimOptions::default() }));
    let gpu = GpuBackend::new(driver.clone());
    let shape = TcGemm { input: TcInput::Bf16, m: 16, n: 8, k: 16 };
    let (a, b) = (gpu.upload_slice(&[0u16; 256]).unwrap(), gpu.upload_slice(&[0u16; 128]).unwrap());
    let mut c = gpu.alloc::<f32>(128).unwrap();
    let err = gemm_tc_half(&gpu, shape, None, &a, &b, &mut c).unwrap_err().to_string();
    assert!(err.contains("tensor-core GEMM at bf16 needs a GPU of compute capability 8.0 or newer") && err.contains("this one is 7.5"), "{err}");
    let shape = TcGemm { input: TcInput::Tf32, m: 16, n: 8, k: 8 };
    let err = gemm_tc_tf32(&gpu, shape, None, &gpu.upload_slice(&[0f32; 128]).unwrap(), &gpu.upload_slice(&[0f32; 64]).unwrap(), &mut c).unwrap_err().to_string();
    assert!(err.contains("at tf32 needs a GPU of compute capability 8.0 or newer"), "{err}");
    // Turing's module has no bf16 or tf32 kernel to run.
    let kernels = driver.validate_module("gemm_tc").unwrap();
    assert!(kernels.iter().all(|k| k.contains("f16") && !k.contains("bf16")), "{kernels:?}");
}
