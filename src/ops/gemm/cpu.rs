//! CPU GEMM: each batch entry is one call into matrixmultiply (itself multithreaded), after the
//! whole spec has been checked against the buffers so that no call can go out of bounds.

use super::{GemmOps, GemmSpec};
use crate::cpu::{CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::{Error, Result};

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
    for batch in 0..spec.batch {
        let a_start = spec.offset_a + batch * spec.stride_a;
        let b_start = spec.offset_b + batch * spec.stride_b;
        let c_start = spec.offset_c + batch * spec.stride_c;
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
            &mut c[c_start..c_start + m * n],
            (n as isize, 1),
        );
    }
    Ok(())
}
