//! The GPU fully connected layer against the f64 CPU reference, forward and backward, on odd sizes
//! that exercise the SGEMM's edge tiles.

use ferronet::tolerance::assert_close;
use ferronet_test_support::gpu::{gpu, random_f32, upload_pair};

use ferronet::cpu::CpuBackend;
use ferronet::device::Device;
use ferronet::ops::{LinearGeom, LinearOps};

#[test]
fn forward_and_backward_match_the_reference() {
    let (gpu, cpu) = (gpu(), CpuBackend::new());
    for (i, &(n, inf, outf)) in [(1, 1, 1), (3, 17, 5), (4, 64, 10), (7, 33, 70)].iter().enumerate() {
        let g = LinearGeom::new(n, inf, outf).unwrap();
        let seed = 10 * i as u64;
        let (x, w, b, dy) = (
            random_f32(n * inf, seed, -1.0, 1.0),
            random_f32(outf * inf, seed + 1, -1.0, 1.0),
            random_f32(outf, seed + 2, -1.0, 1.0),
            random_f32(n * outf, seed + 3, -1.0, 1.0),
        );
        let ((gx, cx), (gw, cw)) = (upload_pair(&gpu, &cpu, &x), upload_pair(&gpu, &cpu, &w));
        let ((gb, cb), (gdy, cdy)) = (upload_pair(&gpu, &cpu, &b), upload_pair(&gpu, &cpu, &dy));
        for bias in [true, false] {
            let y = gpu.linear_forward(&gx, &gw, bias.then_some(&gb), &g).unwrap();
            let want = cpu.linear_forward(&cx, &cw, bias.then_some(&cb), &g).unwrap();
            assert_close(&format!("forward (bias {bias}) {g:?}"), &gpu.download(&y).unwrap(), &want, 1e-4, 1e-4);
        }
        let dx = gpu.linear_backward_data(&gdy, &gw, &g).unwrap();
        assert_close(&format!("backward data {g:?}"), &gpu.download(&dx).unwrap(), &cpu.linear_backward_data(&cdy, &cw, &g).unwrap(), 1e-4, 1e-4);
        let dw = gpu.linear_backward_weight(&gx, &gdy, &g).unwrap();
        assert_close(&format!("backward weight {g:?}"), &gpu.download(&dw).unwrap(), &cpu.linear_backward_weight(&cx, &cdy, &g).unwrap(), 1e-4, 1e-4);
        let db = gpu.linear_backward_bias(&gdy, &g).unwrap();
        assert_close(&format!("backward bias {g:?}"), &gpu.download(&db).unwrap(), &cpu.linear_backward_bias(&cdy, &g).unwrap(), 1e-4, 1e-4);
    }
}

#[test]
fn a_weight_of_the_wrong_size_is_a_clear_error() {
    let gpu = gpu();
    let g = LinearGeom::new(2, 3, 4).unwrap();
    let err = gpu.linear_forward(&gpu.zeros(6).unwrap(), &gpu.zeros(11).unwrap(), None, &g).err().expect("W is 4x3").to_string();
    assert_eq!(err, "shape error: linear: weight has 11 elements but 12 are needed");
}
