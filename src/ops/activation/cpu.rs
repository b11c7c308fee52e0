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
pub(crate) fn sigmoid<E: Element>(x: E) -> E {
    if x >= E::zero() {
        E::one() / (E::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (E::one() + e)
    }
}

// The *_grad functions are f'(x) with the kink conventions documented in `ops::activation`.

pub(crate) fn relu<E: Element>(x: E) -> E {
    x.max(E::zero())
}

pub(crate) fn relu_grad<E: Element>(x: E) -> E {
    if x > E::zero() {
        E::one()
    } else {
        E::zero()
    }
}

pub(crate) fn relu6<E: Element>(x: E) -> E {
    x.max(E::zero()).min(E::from_f64(6.0))
}

pub(crate) fn relu6_grad<E: Element>(x: E) -> E {
    if x > E::zero() && x < E::from_f64(6.0) {
        E::one()
    } else {
        E::zero()
    }
}

pub(crate) fn sigmoid_grad<E: Element>(x: E) -> E {
    let s = sigmoid(x);
    s * (E::one() - s)
}

pub(crate) fn silu<E: Element>(x: E) -> E {
    x * sigmoid(x)
}

pub(crate) fn silu_grad<E: Element>(x: E) -> E {
    let s = sigmoid(x);
    s * (E::one() + x * (E::one() - s))
}

pub(crate) fn hardswish<E: Element>(x: E) -> E {
    x * relu6(x + E::from_f64(3.0)) / E::from_f64(6.0)
}

pub(crate) fn hardswish_grad<E: Element>(x: E) -> E {
    let three: E = E::from_f64(3.0);
    if x < -three {
        E::zero()
    } else if x > three {
        E::one()
    } else {
        (x + x + three) / E::from_f64(6.0)
    }
}

/// `$body` with `$f` bound to `$kind`'s function (`forward`: f(x)) or derivative (`derivative`:
/// f'(x)), each kind its own instantiation of `$body`, for fused loops of other ops: a loop over a
/// plain function is straight-line code the compiler can vectorise, a per-element match is not.
macro_rules! with_activation {
    ($kind:expr, forward, |$f:ident| $body:expr) => {
        $crate::ops::activation::with_activation!(@arms $kind, $f, $body; relu, relu6, sigmoid, silu, hardswish)
    };
    ($kind:expr, derivative, |$f:ident| $body:expr) => {
        $crate::ops::activation::with_activation!(
            @arms $kind, $f, $body; relu_grad, relu6_grad, sigmoid_grad, silu_grad, hardswish_grad
        )
    };
    (@arms $kind:expr, $f:ident, $body:expr; $relu:ident, $relu6:ident, $sigmoid:ident, $silu:ident, $hardswish:ident) => {{
        use $crate::ops::activation::{cpu, Activation};
        match $kind {
            Activation::Relu => { let $f = cpu::$relu; $body }
            Activation::Relu6 => { let $f = cpu::$relu6; $body }
            Activation::Sigmoid => { let $f = cpu::$sigmoid; $body }
            Activation::Silu => { let $f = cpu::$silu; $body }
            Activation::Hardswish => { let $f = cpu::$hardswish; $body }
        }
    }};
}
pub(crate) use with_activation;

// Each kind is dispatched once, outside the loop, so every loop body is a single straight-line
// function the compiler can vectorise.
impl<E: Element> ActivationOps<E> for CpuBackend {
    fn activation_forward(&self, kind: Activation, x: &CpuBuf<E>) -> Result<CpuBuf<E>> {
        Ok(self.wrap(with_activation!(kind, forward, |f| map(x, f))))
    }

    fn activation_backward(
        &self,
        kind: Activation,
        x: &CpuBuf<E>,
        dy: &CpuBuf<E>,
    ) -> Result<CpuBuf<E>> {
        expect_len(kind.name(), "dy", dy.len(), x.len())?;
        // dx = dy * f'(x), instantiated separately for each derivative.
        Ok(self.wrap(with_activation!(kind, derivative, |f| zip_map(x, dy, |x, dy| dy * f(x)))))
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
        with_activation!(kind, forward, |f| apply(y, bias, plane, f));
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
