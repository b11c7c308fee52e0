//! The tensor-core implicit-GEMM convolution (kernels/conv_tc.cu, channels-last) on the
//! sanitizing simulator against its CPU reference of the same arithmetic (inputs rounded as the
//! GPU sees them, f64 sums, the f32 accumulation's error bound): padding, stride 2, 1x1, 7x7,
//! dilation and groups, channel counts that are not multiples of the tile, batches of several
//! images, bf16 and f16, both block tiles, with no bank conflict in any shared access; f16 on
//! Turing (compute capability 7.5, its own module, the next stage's global reads in flight during
//! the current stage's math in every convolution GEMM of it) and bf16 refused there. The
//! reference itself is checked against the NCHW CPU convolution on the same rounded values.

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::gpu::GpuBackend;
use ferronet::ops::conv::tc::{conv_tc_forward, reference, ConvTcTile, TcConv};
use ferronet::ops::gemm::tc::{to_bits, TcInput};
use ferronet::ops::{ConvGeom, ConvOps};
use ferronet::sim::{SimDriver, SimOptions};
use ferronet::tolerance::within;
use ferronet_test_support::gpu::random_f32;
use std::sync::Arc;

/// (N, C_in, (H, W), C_out, kernel, stride, padding, dilation, groups)
type Config = (usize, usize, (usize, usize), usize, (usize, usize), (usize, usize), (usize, usize), (usize, usize), usize);

fn geom(c: Config) -> ConvGeom {
    ConvGeom::new(c.0, c.1, c.2, c.3, c.4, c.5, c.6, c.7, c.8).unwrap()
}

/// Runs `conv` on `tile` on the simulator with the sanitizer from random operands in [-1, 1)
/// and checks every output against the reference within its bound; returns the launch's bank
/// conflicts.
fn check(conv: TcConv, tile: ConvTcTile, seed: u64) -> u64 {
    check_on(SimOptions::default().compute_capability, conv, tile, seed)
}

/// `check` on a simulated device of compute capability `cc`.
fn check_on(cc: (i32, i32), conv: TcConv, tile: ConvTcTile, seed: u64) -> u64 {
    let g = conv.geom;
    let driver = Arc::new(SimDriver::new(SimOptions { compute_capability: cc, ..SimOptions::default() }));
    let gpu = GpuBackend::new(driver.clone());
    let x = random_f32(g.x_len(), seed, -1.0, 1.0);
    let w = random_f32(g.weight_len(), seed + 1, -1.0, 1.0);
    let gx = gpu.upload_slice(&to_bits(conv.input, &x).unwrap()).unwrap();
    let gw = gpu.upload_slice(&to_bits(conv.input, &w).unwrap()).unwrap();
    // Every output must be written: start from NaNs.
    let mut y = gpu.upload_slice(&vec![f32::NAN; g.y_len()]).unwrap();
    conv_tc_forward(&gpu, conv, Some(tile), &gx, &gw, &mut y).unwrap();
    let got = gpu.download_slice(&y).unwrap();
    let (want, bound) = reference(conv, &x, &w);
    for (i, ((&v, &r), &e)) in got.iter().zip(&want).zip(&bound).enumerate() {
        assert!(within(v as f64, r, e, 0.0), "{g:?} {tile:?}: y[pixel {}][{}] = {v}, reference {r} (bound {e:e})", i / g.c_out, i % g.c_out);
    }
    let stats = driver.take_launch_stats();
    assert_eq!(stats.len(), 1);
    assert_eq!(stats[0].flops, 0, "no fp32 FLOPs on the CUDA cores");
    // Every block runs every mma of its padded tile.
    let (m, n, k) = conv.gemm_dims();
    let padded = 2 * m.div_ceil(128) * 128 * n.div_ceil(tile.channels()) * tile.channels() * k.div_ceil(32) * 32 * g.groups;
    assert_eq!(stats[0].tensor_flops_16bit, padded as u64, "{g:?} {tile:?}");
    stats[0].bank_conflicts
}

#[test]
fn convolutions_match_the_reference_on_both_tiles() {
    let configs: [Config; 5] = [
        // 3x3 padding 1 over 2 images (200 pixels: two pixel tiles), 24 output channels, K = 144
        // (five stages: the pipeline's buffers wrap).
        (2, 16, (10, 10), 24, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // 3x3 stride 2 padding 1, 8 channels (K = 72 is not a multiple of the stage).
        (3, 8, (7, 6), 16, (3, 3), (2, 2), (1, 1), (1, 1), 1),
        // The 1x1 stride-2 downsample.
        (2, 24, (7, 8), 40, (1, 1), (2, 2), (0, 0), (1, 1), 1),
        // The 7x7 stride-2 padding-3 stem on 8 (zero-padded) channels.
        (1, 8, (9, 11), 16, (7, 7), (2, 2), (3, 3), (1, 1), 1),
        // Dilation 2 and 2 groups of 3 output channels (odd: scalar stores).
        (2, 16, (6, 7), 6, (3, 3), (1, 1), (2, 2), (2, 2), 2),
    ];
    for (i, c) in configs.into_iter().enumerate() {
        let conv = TcConv { input: TcInput::Bf16, geom: geom(c) };
        for tile in [ConvTcTile::Pixels128Channels64, ConvTcTile::Pixels128Channels128] {
            assert_eq!(check(conv, tile, 100 + i as u64), 0, "{c:?} {tile:?}");
        }
    }
}

#[test]
fn f16_convolutions_match_the_reference() {
    // More output channels than one 64-channel tile.
    let conv = TcConv { input: TcInput::F16, geom: geom((2, 16, (5, 6), 72, (3, 3), (1, 1), (1, 1), (1, 1), 1)) };
    assert_eq!(check(conv, ConvTcTile::Pixels128Channels64, 200), 0);
    assert_eq!(check(conv, ConvTcTile::Pixels128Channels128, 201), 0);
    // More output channels than one 128-channel tile.
    let conv = TcConv { input: TcInput::F16, geom: geom((1, 8, (4, 5), 136, (3, 3), (1, 1), (1, 1), (1, 1), 1)) };
    assert_eq!(check(conv, ConvTcTile::Pixels128Channels128, 202), 0);
}

#[test]
fn turing_runs_f16_convolutions_on_its_own_module() {
    // Five stages of K (the buffers wrap) on both tiles, and a strided, grouped one.
    let conv = TcConv { input: TcInput::F16, geom: geom((2, 16, (10, 10), 24, (3, 3), (1, 1), (1, 1), (1, 1), 1)) };
    assert_eq!(check_on((7, 5), conv, ConvTcTile::Pixels128Channels64, 210), 0);
    assert_eq!(check_on((7, 5), conv, ConvTcTile::Pixels128Channels128, 211), 0);
    let conv = TcConv { input: TcInput::F16, geom: geom((2, 16, (6, 7), 6, (3, 3), (2, 2), (1, 1), (1, 1), 2)) };
    assert_eq!(check_on((7, 5), conv, ConvTcTile::Pixels128Channels64, 212), 0);
}

#[test]
fn turing_convolutions_read_the_next_stage_during_the_math() {
    crate::gpu_gemm_tc::assert_turing_k_loops_read_ahead("conv_tc");
}

#[test]
fn the_reference_is_the_nchw_convolution_in_channels_last_layouts() {
    let g = geom((2, 16, (6, 5), 6, (3, 2), (2, 1), (1, 1), (1, 2), 2));
    let conv = TcConv { input: TcInput::Bf16, geom: g };
    let x = random_f32(g.x_len(), 300, -1.0, 1.0);
    let w = random_f32(g.weight_len(), 301, -1.0, 1.0);
    let (got, _) = reference(conv, &x, &w);
    // The same rounded values in NCHW and [C_out, C_in/groups, KH, KW], convolved on the CPU.
    let cg = g.c_in_per_group();
    let round = |v: f32| conv.input.round(v) as f64;
    let mut x_nchw = vec![0.0; g.x_len()];
    for (i, &v) in x.iter().enumerate() {
        let (pixel, c) = (i / g.c_in, i % g.c_in);
        let (n, hw) = (pixel / (g.h * g.w), pixel % (g.h * g.w));
        x_nchw[(n * g.c_in + c) * g.h * g.w + hw] = round(v);
    }
    let mut w_oihw = vec![0.0; g.weight_len()];
    for (i, &v) in w.iter().enumerate() {
        let (tap, c) = (i / cg, i % cg);
        let (co, kk) = (tap / (g.kh * g.kw), tap % (g.kh * g.kw));
        w_oihw[(co * cg + c) * g.kh * g.kw + kk] = round(v);
    }
    let cpu = CpuBackend::new();
    let y = cpu.conv2d_forward(&cpu.upload(&x_nchw).unwrap(), &cpu.upload(&w_oihw).unwrap(), None, &g).unwrap();
    let y_nchw: Vec<f64> = cpu.download(&y).unwrap();
    for (i, &v) in got.iter().enumerate() {
        let (pixel, co) = (i / g.c_out, i % g.c_out);
        let (n, hw) = (pixel / (g.oh * g.ow), pixel % (g.oh * g.ow));
        let want = y_nchw[(n * g.c_out + co) * g.oh * g.ow + hw];
        assert!((v - want).abs() <= 1e-12, "y[pixel {pixel}][{co}] = {v}, the NCHW convolution gives {want}");
    }
}

#[test]
fn unsupported_inputs_are_refused_in_one_line() {
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let gpu = GpuBackend::new(driver);
    // The 3-channel CIFAR stem: the caller pads its channels to 8.
    let g = geom((1, 3, (4, 4), 8, (3, 3), (1, 1), (1, 1), (1, 1), 1));
    let (x, w) = (gpu.upload_slice(&vec![0u16; g.x_len()]).unwrap(), gpu.upload_slice(&vec![0u16; g.weight_len()]).unwrap());
    let mut y = gpu.alloc::<f32>(g.y_len()).unwrap();
    let err = conv_tc_forward(&gpu, TcConv { input: TcInput::Bf16, geom: g }, None, &x, &w, &mut y).unwrap_err().to_string();
    assert!(err.contains("input channels per group (3) must be a multiple of 8"), "{err}");
    let pre_ampere = GpuBackend::new(Arc::new(SimDriver::new(SimOptions { compute_capability: (7, 5), ..SimOptions::default() })));
    let g = geom((1, 8, (4, 4), 8, (3, 3), (1, 1), (1, 1), (1, 1), 1));
    let (x, w) = (pre_ampere.upload_slice(&vec![0u16; g.x_len()]).unwrap(), pre_ampere.upload_slice(&vec![0u16; g.weight_len()]).unwrap());
    let mut y = pre_ampere.alloc::<f32>(g.y_len()).unwrap();
    let err = conv_tc_forward(&pre_ampere, TcConv { input: TcInput::Bf16, geom: g }, None, &x, &w, &mut y).unwrap_err().to_string();
    assert!(err.contains("convolution at bf16 needs a GPU of compute capability 8.0 or newer") && err.contains("this one is 7.5"), "{err}");
}
