//! GPU softmax and fused softmax cross-entropy against the f64 CPU reference.

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, widen};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::ops::LossOps;
use ferronet::rng::Rng;

/// (N, K) pairs: one sample, one class, odd sizes, and rows wider than one block.
const SHAPES: [(usize, usize); 5] = [(1, 10), (5, 3), (4, 1), (3, 37), (2, 1000)];

fn labels(n: usize, classes: usize, seed: u64) -> Vec<u32> {
    let mut rng = Rng::new(seed);
    (0..n).map(|_| rng.below(classes as u64) as u32).collect()
}

#[test]
fn cross_entropy_matches_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    for (seed, &(n, k)) in SHAPES.iter().enumerate() {
        let seed = seed as u64;
        // Large logits: without max subtraction exp() would overflow f32.
        let logits = random_f32(n * k, seed, -60.0, 120.0);
        let y = labels(n, k, seed + 50);
        for smoothing in [0.0, 0.1] {
            let what = format!("N={n} K={k} smoothing={smoothing}");
            let (loss, dlogits) = gpu
                .softmax_cross_entropy(&gpu.upload(&logits).unwrap(), &gpu.upload_idx(&y).unwrap(), n, k, smoothing)
                .unwrap();
            let (want_loss, want_d) = cpu
                .softmax_cross_entropy(
                    &cpu.upload(&widen(&logits)).unwrap(),
                    &Device::<f64>::upload_idx(&cpu, &y).unwrap(),
                    n,
                    k,
                    smoothing,
                )
                .unwrap();
            assert_close(&format!("loss {what}"), &gpu.download(&loss).unwrap(), &want_loss, 1e-4, 1e-5);
            assert_close(&format!("dlogits {what}"), &gpu.download(&dlogits).unwrap(), &want_d, 1e-6, 1e-4);
        }
    }
}

#[test]
fn softmax_matches_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    for (seed, &(n, k)) in SHAPES.iter().enumerate() {
        let logits = random_f32(n * k, seed as u64 + 9, -60.0, 120.0);
        let got = gpu.download(&gpu.softmax(&gpu.upload(&logits).unwrap(), n, k).unwrap()).unwrap();
        let want = cpu.softmax(&cpu.upload(&widen(&logits)).unwrap(), n, k).unwrap();
        assert_close(&format!("softmax N={n} K={k}"), &got, &want, 1e-7, 1e-4);
    }
}

#[test]
fn a_label_out_of_range_is_an_error_naming_it() {
    let gpu = gpu();
    let logits = gpu.upload(&[0.0f32; 6]).unwrap();
    let labels = gpu.upload_idx(&[1, 3]).unwrap();
    let err = gpu.softmax_cross_entropy(&logits, &labels, 2, 3, 0.0).err().expect("label 3 of 3 classes is an error");
    assert_eq!(
        err.to_string(),
        "shape error: softmax_cross_entropy: label 3 of sample 1 is out of range for 3 classes (labels must be below 3)"
    );
}
