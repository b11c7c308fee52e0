//! Full reductions on the CPU, accumulated in f64 in a fixed order (see `cpu::par::sum_f64`).

use super::ReduceOps;
use crate::cpu::par::sum_f64;
use crate::cpu::{CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::{Error, Result};

impl<E: Element> ReduceOps<E> for CpuBackend {
    fn sum(&self, x: &CpuBuf<E>) -> Result<CpuBuf<E>> {
        Ok(self.wrap(vec![E::from_f64(sum_f64(x, Element::to_f64))]))
    }

    fn mean(&self, x: &CpuBuf<E>) -> Result<CpuBuf<E>> {
        if x.is_empty() {
            return Err(Error::shape("mean of an empty buffer is undefined"));
        }
        Ok(self.wrap(vec![E::from_f64(
            sum_f64(x, Element::to_f64) / x.len() as f64,
        )]))
    }

    fn sum_squares(&self, x: &CpuBuf<E>) -> Result<CpuBuf<E>> {
        Ok(self.wrap(vec![E::from_f64(sum_f64(x, |v| v.to_f64() * v.to_f64()))]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::par::CHUNK;
    use crate::cpu::testutil::{buf, error_text};

    #[test]
    fn values_by_hand() {
        let cpu = CpuBackend::new();
        let x = buf(&cpu, &[1.0, -2.0, 3.5, 0.5]);
        assert_eq!(cpu.sum(&x).unwrap()[0], 3.0);
        assert_eq!(cpu.mean(&x).unwrap()[0], 0.75);
        assert_eq!(cpu.sum_squares(&x).unwrap()[0], 1.0 + 4.0 + 12.25 + 0.25);
        assert_eq!(cpu.sum(&buf(&cpu, &[])).unwrap()[0], 0.0);
    }

    #[test]
    fn f32_input_is_accumulated_in_f64() {
        let cpu = CpuBackend::new();
        // 1 + 2^-23 repeated: once a running f32 sum passes 2 it loses the 2^-23 of every term.
        let len = 4 * CHUNK + 3;
        let x = cpu.wrap(vec![1.0f32 + f32::EPSILON; len]);
        let exact = len as f64 * (1.0 + f64::from(f32::EPSILON));
        assert_eq!(cpu.sum(&x).unwrap()[0], exact as f32);
        assert_ne!(
            exact as f32, len as f32,
            "the test must be sensitive to the small part"
        );
        assert_eq!(cpu.mean(&x).unwrap()[0], 1.0 + f32::EPSILON);
        let big = cpu.wrap(vec![3.0f32; len]);
        assert_eq!(cpu.sum_squares(&big).unwrap()[0], (9 * len) as f32);
    }

    #[test]
    fn mean_of_nothing_is_an_error() {
        let cpu = CpuBackend::new();
        assert_eq!(
            error_text(cpu.mean(&buf(&cpu, &[]))),
            "shape error: mean of an empty buffer is undefined"
        );
    }
}
