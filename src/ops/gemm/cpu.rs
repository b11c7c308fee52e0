//! CPU GEMM: each batch entry is one call of `Element::cpu_gemm` (split over rayon's threads; the
//! entries of a batch run in parallel too), after the whole spec has been checked against the
//! buffers so that no call can go out of bounds.

use super::{GemmOps, GemmSpec};
use crate::cpu::{CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::{Error, Result};
use rayon::prelude::*;

impl<E: Element> GemmOps<E> for CpuBackend {
    fn gemm(&self, spec: &GemmSpec<E>, a: &CpuBuf<E>, b: &CpuBuf<E>, c: &mut CpuBuf<E>) -> Result<()> {
        gemm_slices(spec, a, b, c)
    }
}

/// Rejects a spec that reads or writes outside its operands, or whose output matrices overlap
/// (their result would depend on the order the batch is processed in).
pub(crate) fn check_gemm_spec<E: Element>(spec: &GemmSpec<E>, a_len: usize, b_len: usize, c_len: usize) -> Result<()> {
    let (need_a, need_b, need_c) = spec.required_lens();
    for (operand, need, have) in [("A", need_a, a_len), ("B", need_b, b_len), ("C", need_c, c_len)] {
        if need > have {
            return Err(Error::shape(format!(
                "gemm operand {operand} holds {have} elements but the spec (m={}, n={}, k={}, batch={}, \
                 offsets {}/{}/{}, strides {}/{}/{}) needs {need}",
                spec.m,
                spec.n,
                spec.k,
                spec.batch,
                spec.offset_a,
                spec.offset_b,
                spec.offset_c,
                spec.stride_a,
                spec.stride_b,
                spec.stride_c
            )));
        }
    }
    if spec.batch > 1 && spec.m * spec.n > 0 && spec.stride_c < spec.m * spec.n {
        return Err(Error::shape(format!(
            "gemm output stride {} is smaller than one {}x{} output matrix, so batch entries would overlap",
            spec.stride_c, spec.m, spec.n
        )));
    }
    Ok(())
}

/// The batched GEMM of `spec` on plain slices; the convolution and linear layers call it on their
/// workspaces.
pub(crate) fn gemm_slices<E: Element>(spec: &GemmSpec<E>, a: &[E], b: &[E], c: &mut [E]) -> Result<()> {
    check_gemm_spec(spec, a.len(), b.len(), c.len())?;
    let (m, n, k) = (spec.m, spec.n, spec.k);
    if m == 0 || n == 0 {
        return Ok(());
    }
    // Row-major storage; a transposed operand is the same memory read with swapped strides.
    let a_strides = if spec.trans_a { (1, m as isize) } else { (k as isize, 1) };
    let b_strides = if spec.trans_b { (1, k as isize) } else { (n as isize, 1) };
    let entry = |batch: usize, c: &mut [E]| {
        let a_start = spec.offset_a + batch * spec.stride_a;
        let b_start = spec.offset_b + batch * spec.stride_b;
        E::cpu_gemm(
            m,
            k,
            n,
            spec.alpha,
            &a[a_start..a_start + m * k],
            a_strides,
            &b[b_start..b_start + k * n],
            b_strides,
            spec.beta,
            &mut c[..m * n],
            (n as isize, 1),
        );
    };
    let c = &mut c[spec.offset_c..];
    if spec.batch == 1 {
        entry(0, c);
    } else {
        // The outputs do not overlap (checked above), so the entries run in parallel, each still
        // split over the threads inside; every entry's result is the same whoever computes it.
        c.par_chunks_mut(spec.stride_c).take(spec.batch).enumerate().for_each(|(batch, c)| entry(batch, c));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testutil::{assert_close, narrow, random, widen};
    use crate::device::Device;

    /// C[b] = alpha * op(A[b]) * op(B[b]) + beta * C[b] by the definition.
    fn naive_gemm(spec: &GemmSpec<f64>, a: &[f64], b: &[f64], c: &mut [f64]) {
        let (m, n, k) = (spec.m, spec.n, spec.k);
        for batch in 0..spec.batch {
            let a0 = spec.offset_a + batch * spec.stride_a;
            let b0 = spec.offset_b + batch * spec.stride_b;
            let c0 = spec.offset_c + batch * spec.stride_c;
            for i in 0..m {
                for j in 0..n {
                    let mut acc = 0.0;
                    for l in 0..k {
                        let av = if spec.trans_a { a[a0 + l * m + i] } else { a[a0 + i * k + l] };
                        let bv = if spec.trans_b { b[b0 + j * k + l] } else { b[b0 + l * n + j] };
                        acc += av * bv;
                    }
                    let old = if spec.beta == 0.0 { 0.0 } else { spec.beta * c[c0 + i * n + j] };
                    c[c0 + i * n + j] = spec.alpha * acc + old;
                }
            }
        }
    }

    /// A batch-2 spec with gaps between matrices and non-zero offsets.
    fn strided_spec<E: Element>(trans_a: bool, trans_b: bool, beta: f64) -> GemmSpec<E> {
        let (m, n, k) = (5, 7, 3);
        GemmSpec {
            alpha: E::from_f64(1.5),
            beta: E::from_f64(beta),
            batch: 2,
            stride_a: m * k + 4,
            stride_b: k * n + 1,
            stride_c: m * n + 3,
            offset_a: 2,
            offset_b: 5,
            offset_c: 1,
            ..GemmSpec::new(trans_a, trans_b, m, n, k)
        }
    }

    #[test]
    fn matches_naive_for_all_transposes_batches_offsets_and_beta() {
        let cpu = CpuBackend::new();
        for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
            for beta in [0.0, 1.0, 0.5] {
                let spec = strided_spec(trans_a, trans_b, beta);
                let (la, lb, lc) = spec.required_lens();
                let a = random(la, 1);
                let b = random(lb, 2);
                // With beta == 0 C must not be read: NaN there would leak into the result.
                let c0: Vec<f64> = if beta == 0.0 { vec![f64::NAN; lc + 2] } else { random(lc + 2, 3) };
                let mut want = c0.clone();
                naive_gemm(&spec, &a, &b, &mut want);
                if beta == 0.0 {
                    // Elements outside the matrices keep their (NaN) value; compare only the rest.
                    want.iter_mut().filter(|v| v.is_nan()).for_each(|v| *v = 0.0);
                }
                let mut c = cpu.wrap(c0);
                cpu.gemm(&spec, &cpu.wrap(a), &cpu.wrap(b), &mut c).unwrap();
                let mut got = c.to_vec();
                if beta == 0.0 {
                    got.iter_mut().filter(|v| v.is_nan()).for_each(|v| *v = 0.0);
                }
                assert_close(&format!("gemm trans=({trans_a},{trans_b}) beta={beta}"), &got, &want, 1e-12);
            }
        }
    }

    #[test]
    fn f32_agrees_with_f64() {
        let cpu = CpuBackend::new();
        let spec = strided_spec::<f64>(true, false, 1.0);
        let (la, lb, lc) = spec.required_lens();
        let (a, b, c0) = (random(la, 4), random(lb, 5), random(lc, 6));
        let mut c64 = cpu.wrap(c0.clone());
        cpu.gemm(&spec, &cpu.wrap(a.clone()), &cpu.wrap(b.clone()), &mut c64).unwrap();
        let spec32 = strided_spec::<f32>(true, false, 1.0);
        let mut c32 = cpu.wrap(narrow(&c0));
        cpu.gemm(&spec32, &cpu.wrap(narrow(&a)), &cpu.wrap(narrow(&b)), &mut c32).unwrap();
        assert_close("gemm f32 vs f64", &widen(&c32), &c64, 1e-5);
    }

    #[test]
    fn rejects_specs_that_leave_the_buffers_or_overlap() {
        let cpu = CpuBackend::new();
        let spec = strided_spec::<f64>(false, false, 0.0);
        let (la, lb, lc) = spec.required_lens();
        let a = cpu.wrap(vec![0.0f64; la]);
        let b = cpu.wrap(vec![0.0f64; lb]);
        let mut short_c: CpuBuf<f64> = cpu.zeros(lc - 1).unwrap();
        let err = cpu.gemm(&spec, &a, &b, &mut short_c).unwrap_err().to_string();
        assert!(err.contains("operand C") && err.contains(&format!("needs {lc}")), "{err}");
        let short_a = cpu.wrap(vec![0.0f64; la - 1]);
        let mut c: CpuBuf<f64> = cpu.zeros(lc).unwrap();
        assert!(cpu.gemm(&spec, &short_a, &b, &mut c).is_err());
        let overlapping = GemmSpec { stride_c: spec.m * spec.n - 1, ..spec };
        let err = cpu.gemm(&overlapping, &a, &b, &mut c).unwrap_err().to_string();
        assert!(err.contains("overlap"), "{err}");
    }
}
