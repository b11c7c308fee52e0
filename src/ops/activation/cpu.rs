//! Pointwise activations on the CPU.

use super::{check_channel_bias, Activation, ActivationOps};
use crate::cpu::par::{map, zip_map};
use crate::cpu::{CpuBackend, CpuBuf};
use crate::element::Element;
use crate::error::Result;
use crate::ops::check::expect_len;
use rayon::prelude::*;

/// 1 / (1 + e^-x) without overflow: for x < 0 it is evaluated as e^x / (1 + e^x).
#[inline]
fn sigmoid<E: Element>(x: E) -> E {
    if x >= E::zero() {
        E::one() / (E::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (E::one() + e)
    }
}

// The *_grad functions are f'(x) with the kink conventions documented in `ops::activation`.

fn relu<E: Element>(x: E) -> E {
    x.max(E::zero())
}

fn relu_grad<E: Element>(x: E) -> E {
    if x > E::zero() {
        E::one()
    } else {
        E::zero()
    }
}

fn relu6<E: Element>(x: E) -> E {
    x.max(E::zero()).min(E::from_f64(6.0))
}

fn relu6_grad<E: Element>(x: E) -> E {
    if x > E::zero() && x < E::from_f64(6.0) {
        E::one()
    } else {
        E::zero()
    }
}

fn sigmoid_grad<E: Element>(x: E) -> E {
    let s = sigmoid(x);
    s * (E::one() - s)
}

fn silu<E: Element>(x: E) -> E {
    x * sigmoid(x)
}

fn silu_grad<E: Element>(x: E) -> E {
    let s = sigmoid(x);
    s * (E::one() + x * (E::one() - s))
}

fn hardswish<E: Element>(x: E) -> E {
    x * relu6(x + E::from_f64(3.0)) / E::from_f64(6.0)
}

fn hardswish_grad<E: Element>(x: E) -> E {
    let three: E = E::from_f64(3.0);
    if x < -three {
        E::zero()
    } else if x > three {
        E::one()
    } else {
        (x + x + three) / E::from_f64(6.0)
    }
}

/// f(x) for one value, for fused kernels that apply the activation inside their own loop.
pub(crate) fn activate<E: Element>(kind: Activation, x: E) -> E {
    match kind {
        Activation::Relu => relu(x),
        Activation::Relu6 => relu6(x),
        Activation::Sigmoid => sigmoid(x),
        Activation::Silu => silu(x),
        Activation::Hardswish => hardswish(x),
    }
}

/// f'(x) for one value, as `activate`.
pub(crate) fn derivative<E: Element>(kind: Activation, x: E) -> E {
    match kind {
        Activation::Relu => relu_grad(x),
        Activation::Relu6 => relu6_grad(x),
        Activation::Sigmoid => sigmoid_grad(x),
        Activation::Silu => silu_grad(x),
        Activation::Hardswish => hardswish_grad(x),
    }
}

// Each kind is dispatched once, outside the loop, so every loop body is a single straight-line
// function the compiler can vectorise.
impl<E: Element> ActivationOps<E> for CpuBackend {
    fn activation_forward(&self, kind: Activation, x: &CpuBuf<E>) -> Result<CpuBuf<E>> {
        let y = match kind {
            Activation::Relu => map(x, relu),
            Activation::Relu6 => map(x, relu6),
            Activation::Sigmoid => map(x, sigmoid),
            Activation::Silu => map(x, silu),
            Activation::Hardswish => map(x, hardswish),
        };
        Ok(self.wrap(y))
    }

    fn activation_backward(
        &self,
        kind: Activation,
        x: &CpuBuf<E>,
        dy: &CpuBuf<E>,
    ) -> Result<CpuBuf<E>> {
        expect_len(kind.name(), "dy", dy.len(), x.len())?;
        // dx = dy * f'(x), instantiated separately for each derivative.
        fn chain<E: Element>(x: &[E], dy: &[E], derivative: impl Fn(E) -> E + Sync) -> Vec<E> {
            zip_map(x, dy, |x, dy| dy * derivative(x))
        }
        let dx = match kind {
            Activation::Relu => chain(x, dy, relu_grad),
            Activation::Relu6 => chain(x, dy, relu6_grad),
            Activation::Sigmoid => chain(x, dy, sigmoid_grad),
            Activation::Silu => chain(x, dy, silu_grad),
            Activation::Hardswish => chain(x, dy, hardswish_grad),
        };
        Ok(self.wrap(dx))
    }

    fn channel_bias_activation(&self, kind: Activation, y: &mut CpuBuf<E>, bias: &CpuBuf<E>, channels: usize, plane: usize) -> Result<()> {
        check_channel_bias(kind, y.len(), bias.len(), channels, plane)?;
        fn apply<E: Element>(y: &mut [E], bias: &[E], plane: usize, f: impl Fn(E) -> E + Sync) {
            y.par_chunks_mut(plane).enumerate().for_each(|(p, row)| {
                let b = bias[p % bias.len()];
                for v in row {
                    *v = f(*v + b);
                }
            });
        }
        match kind {
            Activation::Relu => apply(y, bias, plane, relu),
            Activation::Relu6 => apply(y, bias, plane, relu6),
            Activation::Sigmoid => apply(y, bias, plane, sigmoid),
            Activation::Silu => apply(y, bias, plane, silu),
            Activation::Hardswish => apply(y, bias, plane, hardswish),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::testutil::{
        assert_close, buf, dot, error_text, finite_diff, narrow, random, widen,
    };

    fn forward_f64(cpu: &CpuBackend, kind: Activation, x: &[f64]) -> Vec<f64> {
        cpu.activation_forward(kind, &buf(cpu, x)).unwrap().to_vec()
    }

    #[test]
    fn backward_matches_finite_differences_away_from_kinks() {
        let cpu = CpuBackend::new();
        // Spread over [-8, 8) so relu6 and hardswish see every piece, then push points off the kinks.
        let kinks = [-3.0, 0.0, 3.0, 6.0];
        let x: Vec<f64> = random(64, 11)
            .iter()
            .map(|v| v * 4.0)
            .map(|v| {
                if kinks.iter().any(|k| (v - k).abs() < 1e-3) {
                    v + 0.01
                } else {
                    v
                }
            })
            .collect();
        let w = random(x.len(), 12);
        for kind in Activation::ALL {
            let dx = cpu
                .activation_backward(kind, &buf(&cpu, &x), &buf(&cpu, &w))
                .unwrap();
            let numeric = finite_diff(&x, 1e-6, |x| dot(&forward_f64(&cpu, kind, x), &w));
            assert_close(kind.name(), &dx, &numeric, 1e-6);
        }
    }

    #[test]
    fn values_and_kink_derivatives_follow_the_documented_conventions() {
        let cpu = CpuBackend::new();
        let x = [-4.0, -3.0, -1.5, 0.0, 1.5, 3.0, 6.0, 7.0];
        let ones = [1.0; 8];
        let cases: [(Activation, [f64; 8], [f64; 8]); 3] = [
            (
                Activation::Relu,
                [0.0, 0.0, 0.0, 0.0, 1.5, 3.0, 6.0, 7.0],
                [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0],
            ),
            (
                Activation::Relu6,
                [0.0, 0.0, 0.0, 0.0, 1.5, 3.0, 6.0, 6.0],
                [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0],
            ),
            (
                Activation::Hardswish,
                [0.0, 0.0, -0.375, 0.0, 1.125, 3.0, 6.0, 7.0],
                [0.0, -0.5, 0.0, 0.5, 1.0, 1.5, 1.0, 1.0],
            ),
        ];
        for (kind, y, dy) in cases {
            assert_eq!(forward_f64(&cpu, kind, &x), y, "{} forward", kind.name());
            let got = cpu
                .activation_backward(kind, &buf(&cpu, &x), &buf(&cpu, &ones))
                .unwrap();
            assert_eq!(got.to_vec(), dy, "{} derivative", kind.name());
        }
    }

    #[test]
    fn sigmoid_and_silu_are_finite_and_saturate_for_large_inputs() {
        let cpu = CpuBackend::new();
        let x = [-1000.0f32, -90.0, 90.0, 1000.0];
        let s = cpu
            .activation_forward(Activation::Sigmoid, &cpu.wrap(x.to_vec()))
            .unwrap();
        assert_eq!(s.to_vec(), vec![0.0, s[1], 1.0, 1.0]);
        assert!(s[1] >= 0.0 && s[1] < 1e-38);
        let silu = cpu
            .activation_forward(Activation::Silu, &cpu.wrap(x.to_vec()))
            .unwrap();
        assert!(silu.iter().all(|v| v.is_finite()));
        assert_eq!((silu[0], silu[3]), (0.0, 1000.0));
        let ds = cpu
            .activation_backward(
                Activation::Silu,
                &cpu.wrap(x.to_vec()),
                &cpu.wrap(vec![1.0; 4]),
            )
            .unwrap();
        assert_eq!(ds.to_vec(), vec![0.0, ds[1], 1.0, 1.0]);
    }

    #[test]
    fn f32_agrees_with_f64() {
        let cpu = CpuBackend::new();
        let x = random(100, 5);
        let x32 = narrow(&x.iter().map(|v| v * 4.0).collect::<Vec<_>>());
        let x64 = widen(&x32);
        for kind in Activation::ALL {
            let y32 = cpu
                .activation_forward(kind, &cpu.wrap(x32.clone()))
                .unwrap();
            let d32 = cpu
                .activation_backward(kind, &cpu.wrap(x32.clone()), &cpu.wrap(vec![1.0f32; 100]))
                .unwrap();
            assert_close(
                kind.name(),
                &widen(&y32),
                &forward_f64(&cpu, kind, &x64),
                1e-6,
            );
            let d64 = cpu
                .activation_backward(kind, &buf(&cpu, &x64), &buf(&cpu, &[1.0; 100]))
                .unwrap();
            assert_close(kind.name(), &widen(&d32), &d64, 1e-6);
        }
    }

    #[test]
    fn mismatched_gradient_length_is_an_error() {
        let cpu = CpuBackend::new();
        let err = error_text(cpu.activation_backward(
            Activation::Relu,
            &buf(&cpu, &[1.0; 4]),
            &buf(&cpu, &[1.0; 3]),
        ));
        assert_eq!(err, "shape error: relu: dy has 3 elements but 4 are needed");
    }
}
