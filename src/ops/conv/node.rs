//! The Conv2d node: its configuration, output shape, MACs, workspace, and forward and backward,
//! where it chooses once between the depthwise kernels and the im2col-GEMM path.

use super::{ConvGeom, ConvOps};
use crate::device::ConvWorkspace;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::node::{channel_rows, chw, BackwardCtx, ForwardCtx, InputGrad, NodeOp, ParamId, Saved};
use crate::ops::{Activation, Backend};
use crate::shape::Layout;

/// Configuration of a Conv2d layer, PyTorch's defaults: stride 1, padding 0, dilation 1,
/// groups 1, bias on.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ConvCfg {
    pub out_channels: usize,
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
    pub groups: usize,
    pub bias: bool,
}

impl ConvCfg {
    pub fn new(out_channels: usize, kernel: usize) -> Self {
        ConvCfg {
            out_channels,
            kernel: (kernel, kernel),
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
            groups: 1,
            bias: true,
        }
    }
    pub fn kernel_hw(mut self, kh: usize, kw: usize) -> Self {
        self.kernel = (kh, kw);
        self
    }
    pub fn stride(mut self, s: usize) -> Self {
        self.stride = (s, s);
        self
    }
    pub fn padding(mut self, p: usize) -> Self {
        self.padding = (p, p);
        self
    }
    pub fn padding_hw(mut self, ph: usize, pw: usize) -> Self {
        self.padding = (ph, pw);
        self
    }
    pub fn dilation(mut self, d: usize) -> Self {
        self.dilation = (d, d);
        self
    }
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    pub fn bias(mut self, b: bool) -> Self {
        self.bias = b;
        self
    }
    /// The geometry of this convolution over a per-sample input [C, H, W] at batch `n`.
    pub fn geom(&self, input: &[usize], n: usize) -> Result<ConvGeom> {
        let (c, h, w) = chw(input, "conv2d")?;
        ConvGeom::new(n, c, (h, w), self.out_channels, self.kernel, self.stride, self.padding, self.dilation, self.groups)
    }
}

/// Which kernels compute a convolution of a given geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvPath {
    /// groups == C_in > 1: the dedicated depthwise kernels, no workspace.
    Depthwise,
    /// Any other grouping: im2col and one batched GEMM per chunk of images.
    Im2colGemm,
}

impl ConvPath {
    pub fn of(g: &ConvGeom) -> ConvPath {
        if g.is_depthwise() {
            ConvPath::Depthwise
        } else {
            ConvPath::Im2colGemm
        }
    }
    pub fn forward<E: Element, B: ConvOps<E>>(self, b: &B, x: &B::Buf, w: &B::Buf, bias: Option<&B::Buf>, g: &ConvGeom) -> Result<B::Buf> {
        match self {
            ConvPath::Depthwise => b.depthwise_conv2d_forward(x, w, bias, g),
            ConvPath::Im2colGemm => b.conv2d_forward(x, w, bias, g),
        }
    }
    pub fn backward_data<E: Element, B: ConvOps<E>>(self, b: &B, dy: &B::Buf, w: &B::Buf, g: &ConvGeom) -> Result<B::Buf> {
        match self {
            ConvPath::Depthwise => b.depthwise_conv2d_backward_data(dy, w, g),
            ConvPath::Im2colGemm => b.conv2d_backward_data(dy, w, g),
        }
    }
    pub fn backward_filter<E: Element, B: ConvOps<E>>(self, b: &B, x: &B::Buf, dy: &B::Buf, g: &ConvGeom) -> Result<B::Buf> {
        match self {
            ConvPath::Depthwise => b.depthwise_conv2d_backward_filter(x, dy, g),
            ConvPath::Im2colGemm => b.conv2d_backward_filter(x, dy, g),
        }
    }
    /// Bytes held while one pass runs. For im2col-GEMM on the CPU (column buffers; none for a
    /// pointwise convolution, which multiplies the NCHW buffers in place), the columns
    /// of one chunk of images (sized to the workspace limit) and the GEMM's [C_out, columns]
    /// result, reordered into NCHW after; on a GPU (no columns, on the tensor cores or not), its
    /// largest pass's split-K partial products (`gpu_workspace_bytes`).
    pub fn workspace_bytes(self, g: &ConvGeom, elem: usize, workspace: ConvWorkspace) -> usize {
        match (self, workspace) {
            (ConvPath::Depthwise, ConvWorkspace::ImplicitGemm { gemm_sms } | ConvWorkspace::TensorCores { gemm_sms }) => {
                super::depthwise_gpu_workspace_bytes(g, gemm_sms)
            }
            (ConvPath::Depthwise, ConvWorkspace::Columns { .. }) => 0,
            (ConvPath::Im2colGemm, ConvWorkspace::ImplicitGemm { gemm_sms }) => super::gpu_workspace_bytes(g, gemm_sms, false),
            (ConvPath::Im2colGemm, ConvWorkspace::TensorCores { gemm_sms }) => super::gpu_workspace_bytes(g, gemm_sms, true),
            (ConvPath::Im2colGemm, ConvWorkspace::Columns { .. }) if g.is_pointwise() => 0,
            (ConvPath::Im2colGemm, ConvWorkspace::Columns { limit_bytes }) => {
                let images = g.images_per_chunk(limit_bytes, elem);
                (g.col_rows() + g.c_out) * g.col_cols(images) * elem
            }
        }
    }
}

/// A 2-D convolution node; `weight` and `bias` are held by the executor's parameter store.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv2d {
    cfg: ConvCfg,
    weight: ParamId,
    bias: Option<ParamId>,
    /// An activation applied to the biased output in the same pass: evaluation only, set by
    /// `graph::fold` where the activation was the convolution's only reader.
    activation: Option<Activation>,
}

impl Conv2d {
    /// Checks what needs no input shape; `bias` must be given exactly when `cfg.bias` is set.
    pub fn new(cfg: ConvCfg, weight: ParamId, bias: Option<ParamId>) -> Result<Self> {
        let (k, s, d) = (cfg.kernel, cfg.stride, cfg.dilation);
        if [k.0, k.1, s.0, s.1, d.0, d.1, cfg.groups, cfg.out_channels].contains(&0) {
            return Err(Error::shape(format!("conv2d kernel, stride, dilation, groups and out channels must be positive, got {cfg:?}")));
        }
        if cfg.bias != bias.is_some() {
            return Err(Error::config("conv2d: a bias parameter is given exactly when the configuration has a bias"));
        }
        Ok(Conv2d { cfg, weight, bias, activation: None })
    }
    pub fn cfg(&self) -> &ConvCfg {
        &self.cfg
    }
    pub fn weight(&self) -> ParamId {
        self.weight
    }
    pub fn bias(&self) -> Option<ParamId> {
        self.bias
    }
    /// This convolution with `activation` applied to its biased output in the same pass; for
    /// evaluation only (its backward is refused) and only with a bias.
    pub fn with_activation(self, activation: Activation) -> Result<Self> {
        if self.bias.is_none() {
            return Err(Error::config("conv2d: a fused activation needs the convolution's bias"));
        }
        Ok(Conv2d { activation: Some(activation), ..self })
    }
    pub fn activation(&self) -> Option<Activation> {
        self.activation
    }
    pub fn geom(&self, input: &[usize], n: usize) -> Result<ConvGeom> {
        self.cfg.geom(input, n)
    }
}

fn pair(p: (usize, usize)) -> String {
    if p.0 == p.1 {
        p.0.to_string()
    } else {
        format!("{}x{}", p.0, p.1)
    }
}

/// `kind KHxKW/stride` plus ` pPAD` when padded: how conv and pooling nodes describe themselves.
pub fn describe_window(kind: &str, k: (usize, usize), s: (usize, usize), p: (usize, usize)) -> String {
    let mut text = format!("{kind} {}x{}/{}", k.0, k.1, pair(s));
    if p != (0, 0) {
        text += &format!(" p{}", pair(p));
    }
    text
}

impl NodeOp for Conv2d {
    /// The convolution GEMMs of either layout and every grouping (and the linear GEMMs
    /// channels-last pointwise convolutions run on) and the depthwise kernels of either layout
    /// read and write every stored format, the bias added before their one store, the bias
    /// gradient's reduction reading dy as stored. Not a fused activation (its separate pass would
    /// round the output twice).
    fn reads_stored(&self, _layout: Layout) -> bool {
        self.activation.is_none()
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let g = self.geom(inputs[0], 1)?;
        Ok(vec![self.cfg.out_channels, g.oh, g.ow])
    }
    fn describe(&self) -> String {
        let cfg = &self.cfg;
        let mut text = describe_window("conv", cfg.kernel, cfg.stride, cfg.padding);
        if cfg.dilation != (1, 1) {
            text += &format!(" d{}", pair(cfg.dilation));
        }
        if cfg.groups != 1 {
            text += &format!(" g{}", cfg.groups);
        }
        if let Some(activation) = self.activation {
            text += &format!(" +{}", activation.name());
        }
        text
    }
    fn macs(&self, inputs: &[&[usize]], output: &[usize]) -> u64 {
        let out: usize = output.iter().product();
        (out * (inputs[0][0] / self.cfg.groups) * self.cfg.kernel.0 * self.cfg.kernel.1) as u64
    }
    fn params(&self) -> Vec<ParamId> {
        std::iter::once(self.weight).chain(self.bias).collect()
    }
    /// dx needs only the weight; the input is kept for the weight gradient.
    fn kept_inputs(&self, _inputs: usize, trainable: &dyn Fn(ParamId) -> bool) -> Vec<bool> {
        vec![trainable(self.weight)]
    }
    fn workspace_bytes(&self, inputs: &[&[usize]], n: usize, elem: usize, workspace: ConvWorkspace, layout: Layout) -> Result<usize> {
        let g = self.geom(inputs[0], n)?.with_layout(layout);
        Ok(ConvPath::of(&g).workspace_bytes(&g, elem, workspace))
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        let g = self.geom(ctx.inputs[0], ctx.n)?.with_layout(ctx.layout);
        let (w, b) = (ctx.params.value(self.weight), self.bias.map(|b| ctx.params.value(b)));
        let path = ConvPath::of(&g);
        let y = match (self.activation, b) {
            (Some(activation), Some(b)) if !ctx.training => {
                let mut y = path.forward(ctx.backend, xs[0], w, None, &g)?;
                let (_, c, hw) = channel_rows(ctx.layout, ctx.n, (g.c_out, g.oh, g.ow));
                ctx.backend.channel_bias_activation(activation, &mut y, b, c, hw)?;
                y
            }
            (Some(_), _) => return Err(evaluation_only()),
            (None, b) => path.forward(ctx.backend, xs[0], w, b, &g)?,
        };
        Ok((y, Saved::None))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        if self.activation.is_some() {
            return Err(evaluation_only());
        }
        let g = self.geom(ctx.inputs[0], ctx.n)?.with_layout(ctx.layout);
        let path = ConvPath::of(&g);
        let backend = ctx.backend;
        if ctx.grads.input_needs_grad(0) {
            let dx = path.backward_data(backend, dy, ctx.params.value(self.weight), &g)?;
            ctx.grads.send_input(0, InputGrad::New(dx))?;
        }
        if ctx.grads.param_needs_grad(self.weight) {
            let dw = path.backward_filter(backend, ctx.kept_input(0), dy, &g)?;
            ctx.grads.send_param(self.weight, dw)?;
        }
        if let Some(bias) = self.bias.filter(|&b| ctx.grads.param_needs_grad(b)) {
            ctx.grads.send_param(bias, backend.conv2d_backward_bias(dy, &g)?)?;
        }
        Ok(())
    }
}

/// A convolution with a fused activation exists only in a folded evaluation graph.
fn evaluation_only() -> Error {
    Error::config("a convolution with a fused activation (a folded evaluation graph) cannot train; train the unfolded model")
}
