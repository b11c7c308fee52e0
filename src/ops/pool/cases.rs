//! Pooling cases: gradient checks of max, average and adaptive average pooling (overlapping
//! windows, padding, ceil mode), and the benchmarked passes at ResNet's stem max-pool, an
//! Inception-style 3x3 average pool and the global average pool before a classifier.

use super::{AdaptivePoolGeom, PoolGeom};
use crate::cpu::CpuBackend;
use crate::device::Device;
use crate::element::Element;
use crate::error::Result;
use crate::ops::cases::{BenchCases, BenchKernel, FamilyCases, GradCases, GradOp, Operands, RunKernel};
use crate::ops::{Backend, PoolOps};
use crate::rng::Rng;
use crate::shape::Layout;

pub struct Cases;

impl FamilyCases for Cases {
    fn grad_cases(&self, cases: &mut GradCases) {
        // Channels first, rows of 8 inputs and 4 outputs (1x4x8 -> 2x4, 6x8 -> 3x4, 4x8 -> 2x4)
        // run the kernels that take 4 values per thread, the other rows one.
        for &(n, c, hw, k, s, p, ceil) in &[
            (2, 3, (7, 7), 3, 2, 1, false),
            (1, 2, (6, 6), 3, 2, 0, true),
            (1, 2, (8, 8), 2, 2, 0, false),
            (2, 1, (9, 7), 3, 1, 1, false),
            (1, 2, (5, 5), 2, 2, 1, true),
            (1, 2, (4, 8), 2, 2, 0, false),
        ] {
            let g = grad_geom(n, c, hw, k, s, p, ceil, true);
            let x = cases.distinct(g.x_len());
            let config = format!("n={n} c={c} {}x{} k={k} s={s} p={p} ceil={ceil}", hw.0, hw.1);
            cases.push("max_pool2d", config, PoolGrad::Max(g), vec![x], g.y_len());
        }
        for &(n, c, hw, k, s, p, ceil, inc) in &[
            (2, 3, (7, 7), 3, 2, 1, false, true),
            (2, 3, (7, 7), 3, 2, 1, false, false),
            (1, 2, (6, 6), 3, 2, 0, true, true),
            (1, 2, (8, 8), 2, 2, 0, false, true),
            (1, 1, (5, 7), 3, 1, 1, false, false),
            (1, 2, (6, 8), 3, 2, 1, false, false),
        ] {
            let g = grad_geom(n, c, hw, k, s, p, ceil, inc);
            let x = cases.symmetric(g.x_len());
            let config = format!("n={n} c={c} {}x{} k={k} s={s} p={p} ceil={ceil} count_include_pad={inc}", hw.0, hw.1);
            cases.push("avg_pool2d", config, PoolGrad::Avg(g), vec![x], g.y_len());
        }
        for &(n, c, hw, out) in &[(2, 3, (7, 7), (1, 1)), (1, 2, (7, 7), (3, 3)), (2, 1, (5, 6), (2, 4)), (1, 2, (4, 4), (4, 4)), (1, 2, (4, 8), (2, 4))] {
            let g = AdaptivePoolGeom::new(n, c, hw, out).expect("gradcheck adaptive pool configs are valid");
            let x = cases.symmetric(g.x_len());
            let config = format!("n={n} c={c} {}x{} -> {}x{}", hw.0, hw.1, out.0, out.1);
            cases.push("adaptive_avg_pool2d", config, PoolGrad::AdaptiveAvg(g), vec![x], g.y_len());
        }
        // Channels last: C = 4 and 8 run the float4 kernels, C = 3 the one-channel ones; the 1x1
        // adaptive outputs run the global average pool's block reduction.
        for &(n, c, hw, k, s, p, ceil) in &[(2, 3, (7, 7), 3, 2, 1, false), (1, 4, (6, 6), 3, 2, 0, true), (1, 8, (5, 5), 2, 2, 1, true)] {
            let g = grad_geom(n, c, hw, k, s, p, ceil, true).with_layout(Layout::Nhwc);
            let x = cases.distinct(g.x_len());
            let config = format!("nhwc n={n} c={c} {}x{} k={k} s={s} p={p} ceil={ceil}", hw.0, hw.1);
            cases.push("max_pool2d", config, PoolGrad::Max(g), vec![x], g.y_len());
        }
        for &(n, c, hw, k, s, p, ceil, inc) in &[
            (2, 3, (7, 7), 3, 2, 1, false, false),
            (1, 4, (6, 6), 3, 2, 0, true, true),
            (1, 4, (5, 7), 3, 1, 1, false, true),
        ] {
            let g = grad_geom(n, c, hw, k, s, p, ceil, inc).with_layout(Layout::Nhwc);
            let x = cases.symmetric(g.x_len());
            let config = format!("nhwc n={n} c={c} {}x{} k={k} s={s} p={p} ceil={ceil} count_include_pad={inc}", hw.0, hw.1);
            cases.push("avg_pool2d", config, PoolGrad::Avg(g), vec![x], g.y_len());
        }
        for &(n, c, hw, out) in &[(2, 3, (7, 7), (1, 1)), (2, 8, (3, 3), (1, 1)), (1, 4, (7, 5), (3, 2)), (1, 3, (3, 2), (5, 4))] {
            let g = AdaptivePoolGeom::new(n, c, hw, out).expect("gradcheck adaptive pool configs are valid").with_layout(Layout::Nhwc);
            let x = cases.symmetric(g.x_len());
            let config = format!("nhwc n={n} c={c} {}x{} -> {}x{}", hw.0, hw.1, out.0, out.1);
            cases.push("adaptive_avg_pool2d", config, PoolGrad::AdaptiveAvg(g), vec![x], g.y_len());
        }
    }

    fn bench_cases(&self, cases: &mut BenchCases) -> Result<()> {
        let batch = cases.batch();
        let scale = batch as f64;
        let (max_full, max_sim) = (bench_geom(batch, 64, 112, 3, 2, 1)?, bench_geom(1, 64, 112, 3, 2, 1)?);
        cases.add("max_pool_fwd 64x112x112 3x3 s2".into(), PoolKernel::MaxForward(max_full), PoolKernel::MaxForward(max_sim), scale);
        cases.add("max_pool_bwd 64x112x112 3x3 s2".into(), PoolKernel::MaxBackward(max_full), PoolKernel::MaxBackward(max_sim), scale);
        let (avg_full, avg_sim) = (bench_geom(batch, 288, 35, 3, 1, 1)?, bench_geom(1, 288, 35, 3, 1, 1)?);
        cases.add("avg_pool_fwd 288x35x35 3x3 s1".into(), PoolKernel::AvgForward(avg_full), PoolKernel::AvgForward(avg_sim), scale);
        cases.add("avg_pool_bwd 288x35x35 3x3 s1".into(), PoolKernel::AvgBackward(avg_full), PoolKernel::AvgBackward(avg_sim), scale);
        let (gap_full, gap_sim) = (AdaptivePoolGeom::new(batch, 512, (7, 7), (1, 1))?, AdaptivePoolGeom::new(1, 512, (7, 7), (1, 1))?);
        cases.add("global_avg_pool_fwd 512x7x7".into(), PoolKernel::AdaptiveAvgForward(gap_full), PoolKernel::AdaptiveAvgForward(gap_sim), scale);
        cases.add("global_avg_pool_bwd 512x7x7".into(), PoolKernel::AdaptiveAvgBackward(gap_full), PoolKernel::AdaptiveAvgBackward(gap_sim), scale);
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn grad_geom(n: usize, c: usize, hw: (usize, usize), k: usize, s: usize, p: usize, ceil: bool, include_pad: bool) -> PoolGeom {
    PoolGeom::new(n, c, hw, (k, k), (s, s), (p, p), ceil, include_pad).expect("gradcheck pool configs are valid")
}

enum PoolGrad {
    Max(PoolGeom),
    Avg(PoolGeom),
    AdaptiveAvg(AdaptivePoolGeom),
}

impl GradOp for PoolGrad {
    fn run<E: Element, B: Backend<E>>(&self, b: &B, inputs: &[B::Buf], dy: &B::Buf, _dy_host: &[E]) -> Result<(B::Buf, Vec<B::Buf>)> {
        let x = &inputs[0];
        Ok(match self {
            PoolGrad::Max(g) => {
                let (y, idx) = b.max_pool2d_forward(x, g)?;
                (y, vec![b.max_pool2d_backward(dy, &idx, g)?])
            }
            PoolGrad::Avg(g) => (b.avg_pool2d_forward(x, g)?, vec![b.avg_pool2d_backward(dy, g)?]),
            PoolGrad::AdaptiveAvg(g) => (b.adaptive_avg_pool2d_forward(x, g)?, vec![b.adaptive_avg_pool2d_backward(dy, g)?]),
        })
    }
    fn stored_inputs(&self) -> usize {
        1
    }
}

fn bench_geom(n: usize, c: usize, hw: usize, k: usize, stride: usize, pad: usize) -> Result<PoolGeom> {
    PoolGeom::new(n, c, (hw, hw), (k, k), (stride, stride), (pad, pad), false, true)
}

#[derive(Clone, Copy)]
enum PoolKernel {
    MaxForward(PoolGeom),
    MaxBackward(PoolGeom),
    AvgForward(PoolGeom),
    AvgBackward(PoolGeom),
    AdaptiveAvgForward(AdaptivePoolGeom),
    AdaptiveAvgBackward(AdaptivePoolGeom),
}

impl BenchKernel for PoolKernel {
    fn operand_ranges(&self) -> Vec<(usize, f64, f64)> {
        let len = match self {
            PoolKernel::MaxForward(g) | PoolKernel::AvgForward(g) => g.x_len(),
            PoolKernel::MaxBackward(g) | PoolKernel::AvgBackward(g) => g.y_len(),
            PoolKernel::AdaptiveAvgForward(g) => g.x_len(),
            PoolKernel::AdaptiveAvgBackward(g) => g.y_len(),
        };
        vec![(len, -1.0, 1.0)]
    }
    /// Max-pool backward reads the argmax indices of a random input (from the CPU reference's
    /// forward).
    fn index_operand(&self, rng: &mut Rng) -> Result<Option<Vec<u32>>> {
        let PoolKernel::MaxBackward(g) = self else { return Ok(None) };
        let cpu = CpuBackend::new();
        let x: Vec<f32> = (0..g.x_len()).map(|_| rng.uniform_range(-1.0, 1.0) as f32).collect();
        let (_, indices) = PoolOps::<f32>::max_pool2d_forward(&cpu, &cpu.upload(&x)?, g)?;
        Ok(Some(indices.to_vec()))
    }
    fn flops(&self) -> f64 {
        let f = |v: usize| v as f64;
        match self {
            PoolKernel::MaxForward(g) | PoolKernel::AvgForward(g) => f(g.y_len() * g.kh * g.kw),
            PoolKernel::MaxBackward(g) => f(g.y_len()),
            PoolKernel::AvgBackward(g) => f(g.y_len() * g.kh * g.kw),
            PoolKernel::AdaptiveAvgForward(g) | PoolKernel::AdaptiveAvgBackward(g) => f(g.x_len()),
        }
    }
    fn min_bytes(&self) -> f64 {
        let words = |v: usize| 4.0 * v as f64;
        match self {
            // y, the argmax indices and x.
            PoolKernel::MaxForward(g) | PoolKernel::MaxBackward(g) => words(g.x_len() + 2 * g.y_len()),
            PoolKernel::AvgForward(g) | PoolKernel::AvgBackward(g) => words(g.x_len() + g.y_len()),
            PoolKernel::AdaptiveAvgForward(g) | PoolKernel::AdaptiveAvgBackward(g) => words(g.x_len() + g.y_len()),
        }
    }
    fn reduction_len(&self) -> usize {
        match self {
            PoolKernel::MaxBackward(g) | PoolKernel::AvgForward(g) | PoolKernel::AvgBackward(g) => g.kh * g.kw,
            PoolKernel::AdaptiveAvgForward(g) => g.h.div_ceil(g.oh) * g.w.div_ceil(g.ow),
            PoolKernel::MaxForward(_) | PoolKernel::AdaptiveAvgBackward(_) => 1,
        }
    }
    fn describe(&self) -> String {
        match self {
            PoolKernel::MaxForward(g) | PoolKernel::MaxBackward(g) | PoolKernel::AvgForward(g) | PoolKernel::AvgBackward(g) => {
                format!("N={} C={} {}x{} -> {}x{} k{} s{} p{}", g.n, g.c, g.h, g.w, g.oh, g.ow, g.kh, g.sh, g.ph)
            }
            PoolKernel::AdaptiveAvgForward(g) | PoolKernel::AdaptiveAvgBackward(g) => {
                format!("N={} C={} {}x{} -> {}x{}", g.n, g.c, g.h, g.w, g.oh, g.ow)
            }
        }
    }
}

impl RunKernel for PoolKernel {
    fn execute<E: Element, B: Backend<E>>(&self, b: &B, ops: &mut Operands<E, B>) -> Result<Vec<B::Buf>> {
        let v = &ops.bufs;
        Ok(vec![match self {
            PoolKernel::MaxForward(g) => b.max_pool2d_forward(&v[0], g)?.0,
            PoolKernel::MaxBackward(g) => {
                let idx = ops.idx.as_ref().expect("index_operand draws the argmax indices max-pool backward reads");
                b.max_pool2d_backward(&v[0], idx, g)?
            }
            PoolKernel::AvgForward(g) => b.avg_pool2d_forward(&v[0], g)?,
            PoolKernel::AvgBackward(g) => b.avg_pool2d_backward(&v[0], g)?,
            PoolKernel::AdaptiveAvgForward(g) => b.adaptive_avg_pool2d_forward(&v[0], g)?,
            PoolKernel::AdaptiveAvgBackward(g) => b.adaptive_avg_pool2d_backward(&v[0], g)?,
        }])
    }
}
