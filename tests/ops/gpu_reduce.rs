//! GPU sum, mean and sum of squares against the f64 CPU reference, on lengths that take the
//! one-block path and the two-pass path.

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, upload_pair};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::ops::ReduceOps;

#[test]
fn reductions_match_the_cpu_reference() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    // 2048 values fill exactly one first-pass block; 5000 needs three partials.
    for (len, seed) in [(1, 1), (33, 2), (2048, 3), (5000, 4)] {
        let x = random_f32(len, seed, -2.0, 3.0);
        let (gx, cx) = upload_pair(&gpu, &cpu, &x);
        let tol = 1e-6 * len as f64;
        let got = gpu.download(&gpu.sum(&gx).unwrap()).unwrap();
        assert_close(&format!("sum of {len}"), &got, &cpu.sum(&cx).unwrap(), tol, 1e-5);
        let got = gpu.download(&gpu.mean(&gx).unwrap()).unwrap();
        assert_close(&format!("mean of {len}"), &got, &cpu.mean(&cx).unwrap(), 1e-6, 1e-5);
        let got = gpu.download(&gpu.sum_squares(&gx).unwrap()).unwrap();
        assert_close(&format!("sum_squares of {len}"), &got, &cpu.sum_squares(&cx).unwrap(), tol, 1e-5);
    }
}

#[test]
fn empty_input_sums_to_zero_and_has_no_mean() {
    let gpu = gpu();
    let empty = gpu.upload(&[]).unwrap();
    assert_eq!(gpu.download(&gpu.sum(&empty).unwrap()).unwrap(), vec![0.0]);
    assert_eq!(gpu.mean(&empty).err().unwrap().to_string(), "shape error: mean of an empty buffer is undefined");
}
