//! kernels/precision.cu's rounding on the device against the CPU's `Precision::round`, bit for
//! bit (NaN only as NaN: PTX leaves its payload open), and every op at each reduced precision
//! against the CPU at the same precision (`gradcheck::precision`).

use ferronet::cpu::CpuBackend;
use ferronet::device::{Buffer, Device};
use ferronet::gradcheck::precision::{check_cpu_at, compare_device_at};
use ferronet::gradcheck::all_cases;
use ferronet::ops::{ElementwiseOps, PrecisionOps};
use ferronet::ops::gemm::tc::TcInput;
use ferronet::precision::{Precision, StoredFormat};
use ferronet_test_support::gpu::{gpu, random_f32};
use ferronet_test_support::stored::{Agreement, StoredPrecision};

const REDUCED: [Precision; 3] = [Precision::Tf32, Precision::Bf16, Precision::Fp16];

/// Values where rounding is delicate: ties of each format (bf16, fp16/tf32) in both directions
/// and signs, their neighbours, subnormals of f32 and fp16, fp16's overflow boundary, the
/// largest f32, infinities, NaN and signed zeros; then random values over many binades.
fn delicate_values() -> Vec<f32> {
    let mut v = vec![0.0, -0.0, f32::INFINITY, f32::NEG_INFINITY, f32::NAN, f32::MAX, -f32::MAX, f32::MIN_POSITIVE];
    for tie_bit in [13u32, 16] {
        for base in [1.0f32, 1.5, 3.0, -1.0, -1.25, 1e-3, 65504.0, 1e30] {
            let bits = base.to_bits();
            for delta in [-1i64, 0, 1] {
                let b = (bits as i64 + (1i64 << (tie_bit - 1)) + delta) as u32;
                v.push(f32::from_bits(b));
                v.push(f32::from_bits(b | (1 << tie_bit)));
            }
        }
    }
    // f32 subnormals (bf16 keeps their top bits), fp16 subnormals and its smallest step.
    v.extend([0x0000_0001u32, 0x0001_7fff, 0x0001_8000, 0x0002_8000, 0x0000_8000, 0x807f_ffff].map(f32::from_bits));
    v.extend([2f32.powi(-24), 2f32.powi(-25), 1.5 * 2f32.powi(-25), 3.0 * 2f32.powi(-26), 2f32.powi(-15) * 1.001, -6e-8]);
    // fp16's overflow: 65519 stays finite, 65520 (the tie above 65504) and beyond become inf.
    v.extend([65519.0, 65520.0, -65520.0, 65535.0, 70000.0, 1e9]);
    v.extend(random_f32(4000, 5, -1.0, 1.0).iter().enumerate().map(|(i, x)| x * 2f32.powi((i % 80) as i32 - 40)));
    v
}

#[test]
fn device_rounding_matches_the_cpu_bit_for_bit() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    let values = delicate_values();
    for p in REDUCED {
        let want: Vec<f32> = values.iter().map(|&x| p.round(x)).collect();
        let mut in_place = gpu.upload(&values).unwrap();
        gpu.round_in_place(p, &mut in_place).unwrap();
        let src = gpu.upload(&values).unwrap();
        let mut copy = gpu.zeros(values.len()).unwrap();
        gpu.round_into(p, &src, &mut copy).unwrap();
        let mut on_cpu = cpu.upload(&values).unwrap();
        cpu.round_in_place(p, &mut on_cpu).unwrap();
        for (what, got) in [("in place", gpu.download(&in_place).unwrap()), ("copy", gpu.download(&copy).unwrap()), ("cpu", on_cpu.to_vec())] {
            for ((&x, &g), &w) in values.iter().zip(&got).zip(&want) {
                let same = if w.is_nan() { g.is_nan() } else { g.to_bits() == w.to_bits() };
                assert!(same, "{p} {what}: {x:e} ({:#010x}) rounds to {g:e} ({:#010x}), want {w:e} ({:#010x})", x.to_bits(), g.to_bits(), w.to_bits());
            }
        }
    }
    assert_eq!(Precision::Fp16.round(65520.0), f32::INFINITY, "the values include fp16's overflow");
}

/// 16-bit storage: kernels/stored.cuh's rounding (bf16 on the bit pattern, fp16 by cvt) stores
/// exactly what the CPU's emulation rounds to, widening back is exact, and the buffers take 2
/// bytes per value.
#[test]
fn stored_16bit_buffers_hold_the_cpu_rounding_bit_for_bit() {
    let gpu = gpu();
    let values = delicate_values();
    let src = gpu.upload(&values).unwrap();
    for p in [Precision::Bf16, Precision::Fp16] {
        let format = p.stored_format().expect("bf16 and fp16 store 16-bit values");
        let narrow = gpu.convert_stored(&src, format).unwrap();
        assert_eq!((gpu.stored_format(&narrow), Buffer::bytes(&narrow)), (format, 2 * values.len()));
        let wide = gpu.convert_stored(&narrow, StoredFormat::F32).unwrap();
        assert_eq!(gpu.stored_format(&wide), StoredFormat::F32);
        for (what, got) in [("stored", gpu.download(&narrow).unwrap()), ("widened", gpu.download(&wide).unwrap())] {
            for (&x, &g) in values.iter().zip(&got) {
                let w = p.round(x);
                let same = if w.is_nan() { g.is_nan() } else { g.to_bits() == w.to_bits() };
                assert!(same, "{p} {what}: {x:e} ({:#010x}) gives {g:e} ({:#010x}), want {w:e}", x.to_bits(), g.to_bits());
            }
        }
    }
}

/// Gradient accumulation in 16 bits: y += x with either side stored in 16 bits computes in f32
/// and rounds the sum once, as the CPU does on its f32 containers.
#[test]
fn axpy_reads_and_writes_stored_formats() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    let x = random_f32(1000, 11, -4.0, 4.0);
    let y = random_f32(1000, 12, -4.0, 4.0);
    for p in [Precision::Bf16, Precision::Fp16] {
        let stored = StoredPrecision::new(&gpu, &cpu, p);
        let mut sum = stored.on_cpu(&y);
        cpu.axpy(0.5, &stored.on_cpu(&x), &mut sum).unwrap();
        let x16 = stored.on_gpu(&x);
        let mut y16 = stored.on_gpu(&y);
        gpu.axpy(0.5, &x16, &mut y16).unwrap();
        stored.check("16-bit y", &y16, cpu.copy_buf(&sum).unwrap(), Agreement::Exact);
        // An f32 accumulator reading a 16-bit contribution keeps the f32 sum.
        let mut acc = gpu.upload(&stored.rounded(&y)).unwrap();
        gpu.axpy(0.5, &x16, &mut acc).unwrap();
        assert_eq!(gpu.download(&acc).unwrap(), sum.to_vec(), "{p}: f32 y");
    }
}

/// Whether training hands op `op` (a gradcheck case in `config`) its activations in 16-bit
/// buffers at bf16/fp16: every op whose kernels read stored formats, which the loss, flatten and
/// the channels-first depthwise convolutions don't.
fn reads_16_bit(op: &str, config: &str) -> bool {
    match op {
        "softmax_cross_entropy" | "flatten" => false,
        "depthwise_conv2d" => config.ends_with(" nhwc"),
        _ => true,
    }
}

/// Every op within the derived tolerance of the CPU's emulation; at bf16/fp16 the ops that read
/// stored formats get their activations and dy in 16-bit buffers, converted on the device
/// (`precision::convert_stored`) as training stores them, the others f32 buffers.
#[test]
fn every_op_on_the_device_matches_the_cpu_at_each_reduced_precision() {
    let gpu = gpu();
    let cpu = CpuBackend::new();
    let cases = all_cases();
    for p in REDUCED {
        let reports: Vec<_> = cases
            .iter()
            .map(|case| compare_device_at(&gpu, &cpu, case, p).unwrap_or_else(|e| panic!("{p} {} ({}): {e}", case.op, case.config)))
            .collect();
        // On an sm_80+ device (the simulator is one) every convolution's and linear layer's GEMMs
        // ran on the tensor-core tiles of the run's format and none on the fp32 ones; nothing
        // else touched the tensor cores.
        let sm80 = gpu.driver().compute_capability() >= (8, 0);
        let format = TcInput::for_precision(p).map_or("fp32", TcInput::name);
        for r in &reports {
            let ran = |prefix: &str| r.kernels.iter().any(|k| k.starts_with(prefix));
            let tc = r.kernels.iter().filter(|k| k.starts_with("conv_tc::") || k.starts_with("gemm_tc::")).collect::<Vec<_>>();
            let gemm_op = sm80 && (r.op == "conv2d" || r.op == "linear");
            assert_eq!(!tc.is_empty(), gemm_op, "{p} {} ({}): tensor-core tiles? {:?}", r.op, r.config, r.kernels);
            assert!(tc.iter().all(|k| k.contains(&format!("_tc_{format}"))), "{p} {} ({}): another format's tiles: {tc:?}", r.op, r.config);
            if gemm_op {
                assert!(!ran("conv::conv_") && !ran("gemm::sgemm"), "{p} {} ({}): an fp32 GEMM ran: {:?}", r.op, r.config, r.kernels);
            }
            let sixteen_bit = p.stores_activations() && reads_16_bit(&r.op, &r.config);
            assert_eq!(ran("precision::convert_stored"), sixteen_bit, "{p} {} ({}): 16-bit inputs? {:?}", r.op, r.config, r.kernels);
        }
        let failures: Vec<String> = reports
            .into_iter()
            .filter(|r| !r.passed)
            .map(|r| format!("{p} {} ({}): max abs {:.3e} max rel {:.3e}", r.op, r.config, r.max_abs_err, r.max_rel_err))
            .collect();
        assert!(failures.is_empty(), "outside the derived tolerance:\n{}", failures.join("\n"));
    }
}

#[test]
fn the_cpu_emulation_is_the_exact_result_rounded_once() {
    let cpu = CpuBackend::new();
    for p in REDUCED {
        for case in all_cases() {
            let r = check_cpu_at(&cpu, &case, p).unwrap();
            assert!(r.passed, "{p} {} ({}): max abs {:.3e} max rel {:.3e}", r.op, r.config, r.max_abs_err, r.max_rel_err);
        }
    }
}
