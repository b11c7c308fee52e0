//! GPU activations against the f64 CPU reference, forward and backward, including the kinks
//! whose derivative conventions follow PyTorch.

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, upload_pair};
use ferronet_test_support::stored::{Agreement, StoredPrecision};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::gpu::GpuBackend;
use ferronet::ops::{Activation, ActivationOps};
use ferronet::precision::Precision;
use ferronet::sim::{SimDriver, SimOptions};
use std::sync::Arc;

/// Random values over every activation's interesting range plus the exact kink points.
fn inputs(len: usize, seed: u64) -> Vec<f32> {
    let mut x = random_f32(len, seed, -9.0, 9.0);
    x.extend([0.0, 6.0, -3.0, 3.0, -0.0, 20.0, -20.0, 90.0, -90.0]);
    x
}

#[test]
fn forward_and_backward_match_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    for (len, seed) in [(1, 1), (35, 2), (301, 3)] {
        let x = inputs(len, seed);
        let dy = random_f32(x.len(), seed + 100, -1.0, 1.0);
        let ((gx, cx), (gdy, cdy)) = (upload_pair(&gpu, &cpu, &x), upload_pair(&gpu, &cpu, &dy));
        for kind in Activation::ALL {
            let y = gpu.download(&gpu.activation_forward(kind, &gx).unwrap()).unwrap();
            let want = cpu.activation_forward(kind, &cx).unwrap();
            assert_close(&format!("{} forward, len {}", kind.name(), x.len()), &y, &want, 1e-6, 1e-5);

            let dx = gpu.download(&gpu.activation_backward(kind, &gx, &gdy).unwrap()).unwrap();
            let want = cpu.activation_backward(kind, &cx, &cdy).unwrap();
            assert_close(&format!("{} backward, len {}", kind.name(), x.len()), &dx, &want, 1e-6, 1e-5);
        }
    }
}

#[test]
fn backward_rejects_a_gradient_of_another_length_as_the_cpu_does() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    let ((gx, cx), (gdy, cdy)) = (upload_pair(&gpu, &cpu, &[1.0; 4]), upload_pair(&gpu, &cpu, &[1.0; 3]));
    let err = gpu.activation_backward(Activation::Relu, &gx, &gdy).err().expect("a length mismatch is an error");
    let cpu_err = cpu.activation_backward(Activation::Relu, &cx, &cdy).err().expect("a length mismatch is an error");
    assert_eq!(err.to_string(), cpu_err.to_string());
    assert_eq!(err.to_string(), "shape error: relu: dy has 3 elements but 4 are needed");
}

/// The epilogue of a convolution with its batch norm folded in: y = f(y + bias[channel]) in place,
/// one value per thread, and 4 in one access where they share a channel (a plane of 12) or are a
/// pixel's consecutive channels (channels last, a plane of 1, 8 channels).
#[test]
fn channel_bias_activation_matches_the_cpu_reference() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    for (n, channels, plane, seed) in [(1, 1, 1, 1), (2, 3, 7, 2), (3, 5, 33, 3), (2, 3, 12, 4), (6, 8, 1, 5)] {
        let y = random_f32(n * channels * plane, seed, -9.0, 9.0);
        let bias = random_f32(channels, seed + 50, -2.0, 2.0);
        let ((gy, cy), (gb, cb)) = (upload_pair(&gpu, &cpu, &y), upload_pair(&gpu, &cpu, &bias));
        for kind in Activation::ALL {
            let (mut gy, mut cy) = (gpu.copy_buf(&gy).unwrap(), cpu.copy_buf(&cy).unwrap());
            gpu.channel_bias_activation(kind, &mut gy, &gb, channels, plane).unwrap();
            cpu.channel_bias_activation(kind, &mut cy, &cb, channels, plane).unwrap();
            let want: Vec<f64> = y.iter().enumerate().map(|(i, &v)| {
                let x = v as f64 + bias[(i / plane) % channels] as f64;
                cpu.activation_forward(kind, &cpu.upload(&[x]).unwrap()).unwrap()[0]
            }).collect();
            assert_close(&format!("{} bias epilogue on the CPU", kind.name()), &cy, &want, 1e-12, 1e-12);
            let got = gpu.download(&gy).unwrap();
            assert_close(&format!("{} bias epilogue, {n}x{channels}x{plane}", kind.name()), &got, &want, 1e-6, 1e-5);
        }
    }
    let (mut gy, gb) = (gpu.upload(&[0.0f32; 6]).unwrap(), gpu.upload(&[0.0f32; 4]).unwrap());
    let err = gpu.channel_bias_activation(Activation::Relu, &mut gy, &gb, 4, 1).err().expect("6 values are not whole samples of 4 channels");
    assert!(err.to_string().contains("not whole samples of 4 channels"), "{err}");
}

/// 16-bit stored x and dy (bf16, fp16): y and dx come back in x's format and equal the CPU's f32
/// results on the same rounded values, rounded once; relu and relu6 bit for bit, the
/// transcendental ones within an ulp of the format (the two devices' expf may differ by an f32
/// ulp). 46 values: whole groups of 4 and a partial one; the epilogue rounds y + bias once, over
/// planes of 22 (one value per thread), 4 (4 per thread, one bias) and 1 of 4 channels (4 per
/// thread, 4 biases).
#[test]
fn sixteen_bit_values_round_once_as_the_cpu_emulation() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    let x = inputs(37, 7);
    let dy = random_f32(x.len(), 8, -1.0, 1.0);
    let bias = random_f32(11, 9, -2.0, 2.0);
    for p in [Precision::Bf16, Precision::Fp16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let (cx, cdy) = (stored.on_cpu(&x), stored.on_cpu(&dy));
        let (gx, gdy) = (stored.on_gpu(&x), stored.on_gpu(&dy));
        for kind in Activation::ALL {
            let agreement = if matches!(kind, Activation::Relu | Activation::Relu6) { Agreement::Exact } else { stored.one_ulp(1e-30) };
            stored.check(&format!("{} forward", kind.name()), &gpu.activation_forward(kind, &gx).unwrap(), cpu.activation_forward(kind, &cx).unwrap(), agreement);
            let dx = gpu.activation_backward(kind, &gx, &gdy).unwrap();
            stored.check(&format!("{} backward", kind.name()), &dx, cpu.activation_backward(kind, &cx, &cdy).unwrap(), agreement);
        }
        // 44 values: 2 channels x 22, 11 x 4, or 11 pixels of 4 channels.
        let x = &x[..44];
        let (gx, cx) = (stored.on_gpu(x), stored.on_cpu(x));
        for (channels, plane) in [(2, 22), (11, 4), (4, 1)] {
            let bias = &bias[..channels];
            let (mut gy, mut cy) = (gpu.copy_buf(&gx).unwrap(), cpu.copy_buf(&cx).unwrap());
            gpu.channel_bias_activation(Activation::Relu, &mut gy, &gpu.upload(bias).unwrap(), channels, plane).unwrap();
            cpu.channel_bias_activation(Activation::Relu, &mut cy, &cpu.upload(bias).unwrap(), channels, plane).unwrap();
            stored.check(&format!("relu bias epilogue, {channels} channels x {plane}"), &gy, cy, Agreement::Exact);
        }
    }
}

/// On the simulator, the epilogue over whole groups of 4 takes one access per warp of 32 x 4
/// values for each of the load and store of y and the bias (one value per lane where a plane of
/// 64 shares it, 4 consecutive channels last): 16 bytes per lane at f32, 8 at 16 bits.
#[test]
fn bias_epilogue_takes_one_access_per_four_values_per_lane() {
    let driver = Arc::new(SimDriver::new(SimOptions::default()));
    let (gpu, cpu) = (GpuBackend::new(driver.clone()), CpuBackend::new());
    let y = random_f32(512, 10, -3.0, 3.0);
    for p in [Precision::Fp32, Precision::Bf16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        // [2, 4, 64] channels first; 16 pixels of 32 channels last.
        for (channels, plane) in [(4, 64), (32, 1)] {
            let bias = random_f32(channels, 11, -1.0, 1.0);
            let (mut gy, mut cy) = (stored.on_gpu(&y), stored.on_cpu(&y));
            driver.take_launch_stats();
            gpu.channel_bias_activation(Activation::Relu6, &mut gy, &gpu.upload(&bias).unwrap(), channels, plane).unwrap();
            let stats = driver.take_launch_stats();
            let epilogue = stats.iter().find(|s| s.kernel == "activation::bias_activation").expect("the epilogue ran");
            assert_eq!(epilogue.global_accesses, 3 * (y.len() / (32 * 4)) as u64, "{p}, {channels} channels x {plane}");
            cpu.channel_bias_activation(Activation::Relu6, &mut cy, &cpu.upload(&bias).unwrap(), channels, plane).unwrap();
            stored.check(&format!("relu6 bias epilogue, {channels} channels x {plane}"), &gy, cy, Agreement::Exact);
        }
    }
}
