//! Convolution cases: gradient checks of the general and the depthwise path, and the benchmarked
//! convolution calls at ResNet-18 and MobileNetV2 shapes.

use super::ConvPath;
use super::ConvGeom;
use crate::element::Element;
use crate::shape::Layout;
use crate::error::Result;
use crate::ops::cases::{BenchCases, BenchKernel, FamilyCases, GradCases, GradOp, Operands, RunKernel};
use crate::ops::Backend;

pub struct Cases;

impl FamilyCases for Cases {
    /// Kernels 1/3/5/7/11, strides 1/2/3/4, padding 0/1/2/3, dilation 1/2, groups 1/2/C, odd spatial
    /// sizes, batch 1 and > 1.
    fn grad_cases(&self, cases: &mut GradCases) {
        for &(n, c, hw, co, k, s, p, d, g, bias) in &[
            (2, 3, (7, 7), 4, 3, 1, 1, 1, 1, true),
            (1, 2, (9, 8), 3, 1, 1, 0, 1, 1, false),
            (2, 4, (9, 9), 4, 5, 2, 2, 1, 2, true),
            (1, 2, (13, 13), 2, 7, 1, 0, 1, 1, true),
            (1, 1, (15, 15), 2, 11, 4, 2, 1, 1, true),
            (2, 2, (9, 7), 3, 3, 1, 2, 2, 1, true),
            (2, 4, (8, 8), 4, 3, 2, 1, 1, 4, false),
            (3, 3, (6, 5), 2, 3, 4, 1, 1, 1, true),
            // Strided data gradients by phase: a 1x1 stride 2 (three of four phases get no tap),
            // the 7x7 stride-2 stem, dilation 2 at stride 2 (odd phases get no tap), stride 3
            // with dilation 2 (one tap per phase, offsets not in tap order).
            (2, 3, (9, 8), 4, 1, 2, 0, 1, 1, false),
            (1, 2, (11, 10), 3, 7, 2, 3, 1, 1, false),
            (2, 4, (10, 9), 4, 3, 2, 2, 2, 2, true),
            (1, 2, (12, 11), 2, 3, 3, 1, 2, 1, false),
        ] {
            push_conv(cases, ConvPath::Im2colGemm, Layout::Nchw, n, c, hw, co, (k, s, p, d), g, bias);
        }
        // Channels last: 3x3 stride 1, the pointwise plain GEMMs, a grouped 5x5 stride 2, grouped
        // 3x3s whose groups take 4-channel loads (stride 1; stride 2 with 4 input channels per
        // group), the 7x7 stride-2 stem, a 1x1 stride-2 downsample and dilation 2.
        for &(n, c, hw, co, k, s, p, d, g, bias) in &[
            (2, 3, (7, 6), 4, 3, 1, 1, 1, 1, true),
            (2, 3, (5, 4), 5, 1, 1, 0, 1, 1, true),
            (2, 4, (9, 8), 6, 5, 2, 2, 1, 2, true),
            (2, 8, (7, 6), 8, 3, 1, 1, 1, 2, true),
            (1, 8, (8, 7), 12, 3, 2, 1, 1, 2, false),
            (1, 2, (11, 10), 3, 7, 2, 3, 1, 1, false),
            (2, 3, (9, 8), 4, 1, 2, 0, 1, 1, false),
            (2, 2, (9, 7), 3, 3, 1, 2, 2, 1, true),
        ] {
            push_conv(cases, ConvPath::Im2colGemm, Layout::Nhwc, n, c, hw, co, (k, s, p, d), g, bias);
        }
        for &(n, c, hw, co, k, s, p, d, bias, layout) in &[
            (2, 4, (7, 7), 4, 3, 1, 1, 1, false, Layout::Nchw),
            (1, 3, (8, 9), 6, 3, 2, 1, 1, true, Layout::Nchw),
            (1, 2, (11, 11), 2, 5, 1, 4, 2, true, Layout::Nchw),
            (2, 3, (5, 6), 3, 5, 2, 2, 1, false, Layout::Nchw),
            // Channels-last: the specialised kernels (3x3 and 5x5 at strides 1 and 2) with 4
            // channels per thread (C % 4 == 0) and with 1 (C odd), and the generic ones
            // (multiplier 2, dilation 2). No bias: its gradient is the general convolution's.
            (2, 4, (6, 7), 4, 3, 1, 1, 1, false, Layout::Nhwc),
            (1, 3, (7, 8), 3, 3, 2, 1, 1, false, Layout::Nhwc),
            (1, 5, (7, 6), 5, 5, 1, 2, 1, false, Layout::Nhwc),
            (2, 8, (9, 9), 8, 5, 2, 2, 1, false, Layout::Nhwc),
            (1, 3, (6, 6), 6, 3, 1, 1, 1, false, Layout::Nhwc),
            (2, 4, (8, 8), 4, 3, 1, 2, 2, false, Layout::Nhwc),
        ] {
            push_conv(cases, ConvPath::Depthwise, layout, n, c, hw, co, (k, s, p, d), c, bias);
        }
    }

    fn bench_cases(&self, cases: &mut BenchCases) -> Result<()> {
        let batch = cases.batch();
        // ResNet-18 on CIFAR: the 3x3 convolutions of its three widest stages.
        for (c, hw) in [(64, 32), (128, 16), (256, 8)] {
            let full = bench_geom(batch, c, hw, c, 3, 1, 1)?;
            let sim = bench_geom(1, c, hw, c, 3, 1, 1)?;
            let shape = format!("resnet18 {c}x{hw}x{hw} 3x3");
            add_conv_passes(cases, &shape, full, sim);
        }
        // MobileNetV2 at 224x224, the 56x56 stage (24 channels, expansion 6): 1x1 expand and
        // project, the 3x3 depthwise convolution, and the stride-2 depthwise that leaves the stage;
        // both depthwise ones also channels-last.
        let mobilenet: [(&str, GeomAtBatch); 6] = [
            ("1x1 expand 24->144 56x56", |n| bench_geom(n, 24, 56, 144, 1, 1, 1)),
            ("1x1 project 144->24 56x56", |n| bench_geom(n, 144, 56, 24, 1, 1, 1)),
            ("dw 3x3 144x56x56", |n| bench_geom(n, 144, 56, 144, 3, 1, 144)),
            ("dw 3x3 s2 144x56x56", |n| bench_geom(n, 144, 56, 144, 3, 2, 144)),
            ("dw 3x3 144x56x56 nhwc", |n| Ok(bench_geom(n, 144, 56, 144, 3, 1, 144)?.with_layout(Layout::Nhwc))),
            ("dw 3x3 s2 144x56x56 nhwc", |n| Ok(bench_geom(n, 144, 56, 144, 3, 2, 144)?.with_layout(Layout::Nhwc))),
        ];
        for (shape, geom) in mobilenet {
            add_conv_passes(cases, &format!("mobilenet_v2 {shape}"), geom(batch)?, geom(1)?);
        }
        Ok(())
    }
}

#[allow(clippy::too_many_arguments)]
fn push_conv(
    cases: &mut GradCases,
    path: ConvPath,
    layout: Layout,
    n: usize,
    c: usize,
    hw: (usize, usize),
    co: usize,
    (k, s, p, d): (usize, usize, usize, usize),
    groups: usize,
    bias: bool,
) {
    let g = ConvGeom::new(n, c, hw, co, (k, k), (s, s), (p, p), (d, d), groups).expect("gradcheck conv configs are valid").with_layout(layout);
    let config = format!("n={n} c_in={c} {}x{} c_out={co} k={k} s={s} p={p} d={d} groups={groups} bias={bias} {}", hw.0, hw.1, layout.name());
    let mut inputs = vec![cases.symmetric(g.x_len()), cases.symmetric(g.weight_len())];
    if bias {
        inputs.push(cases.symmetric(co));
    }
    let op = if path == ConvPath::Depthwise { "depthwise_conv2d" } else { "conv2d" };
    cases.push(op, config, ConvGrad { path, g, bias }, inputs, g.y_len());
}

/// Inputs x, weight and (with `bias`) bias through the named path's forward and backward (the
/// checks test each path, whatever a layer of the geometry would take).
struct ConvGrad {
    path: ConvPath,
    g: ConvGeom,
    bias: bool,
}

impl GradOp for ConvGrad {
    fn run<E: Element, B: Backend<E>>(&self, b: &B, inputs: &[B::Buf], dy: &B::Buf, _dy_host: &[E]) -> Result<(B::Buf, Vec<B::Buf>)> {
        let (g, x, w, bias) = (&self.g, &inputs[0], &inputs[1], inputs.get(2));
        let y = self.path.forward(b, x, w, bias, g)?;
        let mut grads = vec![self.path.backward_data(b, dy, w, g)?, self.path.backward_filter(b, x, dy, g)?];
        if self.bias {
            grads.push(b.conv2d_backward_bias(dy, g)?);
        }
        Ok((y, grads))
    }
    /// x, where the path's kernels read 16-bit activations (as `Conv2d` reads them): the GEMMs
    /// of either layout, the depthwise kernels channels-last only; the weight and bias are
    /// parameters.
    fn stored_inputs(&self) -> usize {
        usize::from(self.g.layout == Layout::Nhwc || self.path == ConvPath::Im2colGemm)
    }
}

/// A layer's convolution geometry for a given batch size.
type GeomAtBatch = fn(usize) -> Result<ConvGeom>;

fn bench_geom(n: usize, c_in: usize, hw: usize, c_out: usize, k: usize, stride: usize, groups: usize) -> Result<ConvGeom> {
    ConvGeom::new(n, c_in, (hw, hw), c_out, (k, k), (stride, stride), (k / 2, k / 2), (1, 1), groups)
}

fn add_conv_passes(cases: &mut BenchCases, shape: &str, full: ConvGeom, sim: ConvGeom) {
    let scale = cases.batch() as f64;
    cases.add(format!("conv_fwd {shape}"), ConvKernel::Forward(full), ConvKernel::Forward(sim), scale);
    cases.add(format!("conv_bwd_data {shape}"), ConvKernel::BackwardData(full), ConvKernel::BackwardData(sim), scale);
    cases.add(format!("conv_bwd_filter {shape}"), ConvKernel::BackwardFilter(full), ConvKernel::BackwardFilter(sim), scale);
}

/// A benchmarked convolution call; the passes take the path a layer of this geometry takes.
#[derive(Clone, Copy)]
enum ConvKernel {
    /// Forward without bias.
    Forward(ConvGeom),
    BackwardData(ConvGeom),
    BackwardFilter(ConvGeom),
}

impl ConvKernel {
    fn geom(&self) -> &ConvGeom {
        match self {
            ConvKernel::Forward(g) | ConvKernel::BackwardData(g) | ConvKernel::BackwardFilter(g) => g,
        }
    }
}

impl BenchKernel for ConvKernel {
    fn operand_ranges(&self) -> Vec<(usize, f64, f64)> {
        let sym = |len: usize| (len, -1.0, 1.0);
        let g = self.geom();
        match self {
            ConvKernel::Forward(_) => vec![sym(g.x_len()), sym(g.weight_len())],
            ConvKernel::BackwardData(_) => vec![sym(g.y_len()), sym(g.weight_len())],
            ConvKernel::BackwardFilter(_) => vec![sym(g.x_len()), sym(g.y_len())],
        }
    }
    fn flops(&self) -> f64 {
        2.0 * self.geom().macs() as f64
    }
    fn min_bytes(&self) -> f64 {
        let g = self.geom();
        4.0 * (g.x_len() + g.weight_len() + g.y_len()) as f64
    }
    fn reduction_len(&self) -> usize {
        let g = self.geom();
        match self {
            ConvKernel::Forward(_) => g.c_in_per_group() * g.kh * g.kw,
            ConvKernel::BackwardData(_) => g.c_out_per_group() * g.kh * g.kw,
            ConvKernel::BackwardFilter(_) => g.n * g.oh * g.ow,
        }
    }
    fn describe(&self) -> String {
        let g = self.geom();
        format!(
            "N={} {}x{}x{} -> {}x{}x{} k{}x{} s{} p{} groups={}",
            g.n, g.c_in, g.h, g.w, g.c_out, g.oh, g.ow, g.kh, g.kw, g.sh, g.ph, g.groups
        )
    }
}

impl RunKernel for ConvKernel {
    fn execute<E: Element, B: Backend<E>>(&self, b: &B, ops: &mut Operands<E, B>) -> Result<Vec<B::Buf>> {
        let v = &ops.bufs;
        Ok(match *self {
            ConvKernel::Forward(g) => vec![ConvPath::of(&g).forward(b, &v[0], &v[1], None, &g)?],
            ConvKernel::BackwardData(g) => vec![ConvPath::of(&g).backward_data(b, &v[0], &v[1], &g)?],
            ConvKernel::BackwardFilter(g) => vec![ConvPath::of(&g).backward_filter(b, &v[0], &v[1], &g)?],
        })
    }
}
