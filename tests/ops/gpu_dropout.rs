//! GPU dropout: the mask must equal the CPU's bit for bit (same counter-based hash), and the
//! backward applies it.

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, upload_pair, widen};
use ferronet_test_support::stored::{Agreement, StoredPrecision};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::ops::dropout::{dropout_uniform, mask_seed, step_seed_words};
use ferronet::ops::{DropoutOps, PrecisionOps};
use ferronet::precision::{Precision, StoredFormat};

/// Dropout as node 3 of a step seeded `step_seed`, on `device`.
fn forward<D: DropoutOps<f32>>(device: &D, x: &D::Buf, p: f64, step_seed: u64) -> ferronet::Result<(D::Buf, D::Buf)> {
    device.dropout_forward(x, p, &device.upload_idx(&step_seed_words(step_seed))?, 3)
}

#[test]
fn masks_are_bit_identical_to_the_cpu() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    for (len, p, seed) in [(1, 0.5, 3u64), (777, 0.1, 42), (2048, 0.5, 7), (1000, 0.0, 9), (333, 0.9, u64::MAX)] {
        let x = random_f32(len, seed ^ 1, -2.0, 2.0);
        let (y, mask) = forward(&gpu, &gpu.upload(&x).unwrap(), p, seed).unwrap();
        let (y, mask) = (gpu.download(&y).unwrap(), gpu.download(&mask).unwrap());
        let (cpu_y, cpu_mask) = forward(&cpu, &cpu.upload(&x).unwrap(), p, seed).unwrap();
        assert_eq!(mask, cpu_mask.to_vec(), "mask for len {len} p {p} seed {seed}");
        assert_eq!(y, cpu_y.to_vec(), "y for len {len} p {p} seed {seed}");
        let keep = (1.0 / (1.0 - p)) as f32;
        for (i, &m) in mask.iter().enumerate() {
            let kept = f64::from(dropout_uniform(mask_seed(seed, 3), i as u64)) >= p;
            assert_eq!(m, if kept { keep } else { 0.0 }, "mask[{i}] for p {p} seed {seed}");
        }
    }
}

#[test]
fn backward_applies_the_mask() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    let x = random_f32(301, 5, -2.0, 2.0);
    let dy = random_f32(301, 6, -1.0, 1.0);
    let (_, mask) = forward(&gpu, &gpu.upload(&x).unwrap(), 0.3, 11).unwrap();
    let dx = gpu.download(&gpu.dropout_backward(&gpu.upload(&dy).unwrap(), &mask).unwrap()).unwrap();
    let cpu_mask = cpu.upload(&widen(&gpu.download(&mask).unwrap())).unwrap();
    let want = cpu.dropout_backward(&cpu.upload(&widen(&dy)).unwrap(), &cpu_mask).unwrap();
    assert_close("dropout backward", &dx, &want, 0.0, 1e-6);
}

#[test]
fn probability_outside_zero_to_one_is_an_error() {
    let gpu = gpu();
    let x = gpu.upload(&[1.0f32; 4]).unwrap();
    for p in [1.0, -0.1, f64::NAN] {
        let err = forward(&gpu, &x, p, 1).err().expect("an invalid probability is an error").to_string();
        assert!(err.starts_with("invalid configuration: dropout probability must be in [0, 1)"), "{err}");
    }
}

#[test]
fn a_mask_of_another_length_is_the_same_error_as_on_the_cpu() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    let ((gdy, cdy), (gmask, cmask)) = (upload_pair(&gpu, &cpu, &[1.0; 2]), upload_pair(&gpu, &cpu, &[2.0, 0.0, 2.0]));
    let err = gpu.dropout_backward(&gdy, &gmask).err().expect("a length mismatch is an error");
    assert_eq!(
        err.to_string(),
        cpu.dropout_backward(&cdy, &cmask).err().expect("a length mismatch is an error").to_string()
    );
}

/// A 16-bit stored x (bf16, fp16): y comes back in x's format as the CPU's x * mask on the
/// rounded x, rounded once, over whole groups of 4 values and a partial one; the mask stays f32,
/// identical to the f32 run's; the backward's dx takes dy's format.
#[test]
fn sixteen_bit_values_keep_their_format_and_the_f32_mask() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    let (x, dy) = (random_f32(39, 4, -2.0, 2.0), random_f32(39, 5, -1.0, 1.0));
    let (_, f32_mask) = forward(&gpu, &gpu.upload(&x).unwrap(), 0.4, 13).unwrap();
    for p in [Precision::Bf16, Precision::Fp16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let (y, mask) = forward(&gpu, &stored.on_gpu(&x), 0.4, 13).unwrap();
        assert_eq!(gpu.stored_format(&mask), StoredFormat::F32, "{p} mask");
        assert_eq!(gpu.download(&mask).unwrap(), gpu.download(&f32_mask).unwrap(), "{p} mask");
        stored.check("y", &y, forward(&cpu, &stored.on_cpu(&x), 0.4, 13).unwrap().0, Agreement::Exact);
        let dx = gpu.dropout_backward(&stored.on_gpu(&dy), &mask).unwrap();
        let want = cpu.dropout_backward(&stored.on_cpu(&dy), &cpu.upload(&gpu.download(&mask).unwrap()).unwrap()).unwrap();
        stored.check("dx", &dx, want, Agreement::Exact);
    }
}
