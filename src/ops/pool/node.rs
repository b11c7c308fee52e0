//! The pooling nodes: max, average and adaptive-average pooling over [C, H, W] inputs.

use super::{AdaptivePoolGeom, PoolGeom};
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::conv::describe_window;
use crate::ops::node::{chw, numel, BackwardCtx, ForwardCtx, InputGrad, NodeOp, Saved};
use crate::ops::Backend;
use crate::shape::Layout;

/// A pooling window: kernel, stride and padding per axis, and PyTorch's ceil mode.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoolWindow {
    kernel: (usize, usize),
    stride: (usize, usize),
    padding: (usize, usize),
    ceil_mode: bool,
}

impl PoolWindow {
    /// A square window; the geometry checks against the input happen in `PoolGeom::new`.
    pub fn new(kernel: usize, stride: usize, padding: usize, ceil_mode: bool) -> Result<Self> {
        if kernel == 0 || stride == 0 {
            return Err(Error::shape(format!("pooling kernel ({kernel}) and stride ({stride}) must be positive")));
        }
        Ok(PoolWindow { kernel: (kernel, kernel), stride: (stride, stride), padding: (padding, padding), ceil_mode })
    }
    pub fn kernel(&self) -> (usize, usize) {
        self.kernel
    }
    pub fn stride(&self) -> (usize, usize) {
        self.stride
    }
    pub fn padding(&self) -> (usize, usize) {
        self.padding
    }
    pub fn ceil_mode(&self) -> bool {
        self.ceil_mode
    }
    fn geom(&self, input: &[usize], n: usize, count_include_pad: bool) -> Result<PoolGeom> {
        let (c, h, w) = chw(input, "pooling")?;
        PoolGeom::new(n, c, (h, w), self.kernel, self.stride, self.padding, self.ceil_mode, count_include_pad)
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let g = self.geom(input, 1, true)?;
        Ok(vec![input[0], g.oh, g.ow])
    }
    fn describe(&self, kind: &str) -> String {
        describe_window(kind, self.kernel, self.stride, self.padding) + if self.ceil_mode { " ceil" } else { "" }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct MaxPool2d {
    window: PoolWindow,
}

impl MaxPool2d {
    pub fn new(window: PoolWindow) -> Self {
        MaxPool2d { window }
    }
    pub fn window(&self) -> &PoolWindow {
        &self.window
    }
}

impl NodeOp for MaxPool2d {
    fn reads_stored(&self, _layout: Layout) -> bool {
        true
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        self.window.output_shape(inputs[0])
    }
    fn describe(&self) -> String {
        self.window.describe("maxpool")
    }
    /// The argmax indices, one u32 per output element, made in every mode.
    fn saved_bytes(&self, _training: bool, output: &[usize], n: usize, _elem: usize) -> usize {
        n * numel(output) * std::mem::size_of::<u32>()
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        let g = self.window.geom(ctx.inputs[0], ctx.n, true)?.with_layout(ctx.layout);
        let (y, indices) = ctx.backend.max_pool2d_forward(xs[0], &g)?;
        Ok((y, if ctx.record { Saved::Indices(indices) } else { Saved::None }))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        let Saved::Indices(indices) = ctx.saved else { unreachable!("a recorded max-pool keeps its argmax") };
        let dx = ctx.backend.max_pool2d_backward(dy, indices, &self.window.geom(ctx.inputs[0], ctx.n, true)?.with_layout(ctx.layout))?;
        ctx.grads.send_input(0, InputGrad::New(dx))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AvgPool2d {
    window: PoolWindow,
    /// Whether padded positions count in the divisor (PyTorch's default).
    count_include_pad: bool,
}

impl AvgPool2d {
    pub fn new(window: PoolWindow, count_include_pad: bool) -> Self {
        AvgPool2d { window, count_include_pad }
    }
    pub fn window(&self) -> &PoolWindow {
        &self.window
    }
    pub fn count_include_pad(&self) -> bool {
        self.count_include_pad
    }
}

impl NodeOp for AvgPool2d {
    fn reads_stored(&self, _layout: Layout) -> bool {
        true
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        self.window.output_shape(inputs[0])
    }
    fn describe(&self) -> String {
        self.window.describe("avgpool")
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        let g = self.window.geom(ctx.inputs[0], ctx.n, self.count_include_pad)?.with_layout(ctx.layout);
        Ok((ctx.backend.avg_pool2d_forward(xs[0], &g)?, Saved::None))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        let g = self.window.geom(ctx.inputs[0], ctx.n, self.count_include_pad)?.with_layout(ctx.layout);
        let dx = ctx.backend.avg_pool2d_backward(dy, &g)?;
        ctx.grads.send_input(0, InputGrad::New(dx))
    }
}

/// Average pooling to a fixed output size whatever the input size.
#[derive(Clone, Debug, PartialEq)]
pub struct AdaptiveAvgPool2d {
    output: (usize, usize),
}

impl AdaptiveAvgPool2d {
    pub fn new(output: (usize, usize)) -> Result<Self> {
        if output.0 == 0 || output.1 == 0 {
            return Err(Error::shape("adaptive pooling output must be non-empty"));
        }
        Ok(AdaptiveAvgPool2d { output })
    }
    pub fn output(&self) -> (usize, usize) {
        self.output
    }
    fn geom(&self, input: &[usize], n: usize) -> Result<AdaptivePoolGeom> {
        let (c, h, w) = chw(input, "adaptive pooling")?;
        AdaptivePoolGeom::new(n, c, (h, w), self.output)
    }
}

impl NodeOp for AdaptiveAvgPool2d {
    fn reads_stored(&self, _layout: Layout) -> bool {
        true
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let (c, _, _) = chw(inputs[0], "adaptive pooling")?;
        Ok(vec![c, self.output.0, self.output.1])
    }
    fn describe(&self) -> String {
        format!("adaptive avgpool {}x{}", self.output.0, self.output.1)
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        Ok((ctx.backend.adaptive_avg_pool2d_forward(xs[0], &self.geom(ctx.inputs[0], ctx.n)?.with_layout(ctx.layout))?, Saved::None))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        let dx = ctx.backend.adaptive_avg_pool2d_backward(dy, &self.geom(ctx.inputs[0], ctx.n)?.with_layout(ctx.layout))?;
        ctx.grads.send_input(0, InputGrad::New(dx))
    }
}
