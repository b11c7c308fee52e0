//! The channel nodes: concatenation, a channel range (ShuffleNet's branch split) and the
//! channel shuffle.

use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::node::{channel_rows, chw, BackwardCtx, ForwardCtx, GradFlow, InputGrad, NodeOp, Saved};
use crate::ops::Backend;
use crate::shape::Layout;

/// Channel concatenation of all inputs (one input: the input itself).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Concat;

impl Concat {
    /// Channel counts of each input and the shared H*W.
    fn parts(inputs: &[&[usize]]) -> Result<(Vec<usize>, usize)> {
        let (_, h, w) = chw(inputs[0], "concat")?;
        let mut channels = Vec::with_capacity(inputs.len());
        for input in inputs {
            let (c, hx, wx) = chw(input, "concat")?;
            if (hx, wx) != (h, w) {
                return Err(Error::shape(format!("concat inputs differ in spatial size ({h}x{w} vs {hx}x{wx})")));
            }
            channels.push(c);
        }
        Ok((channels, h * w))
    }
    /// The channel counts and the [N, C, HW] view (`channel_rows`) concat and split take.
    fn rows(inputs: &[&[usize]], n: usize, layout: Layout) -> Result<(Vec<usize>, usize, usize)> {
        let (channels, _) = Self::parts(inputs)?;
        let (n, _, hw) = channel_rows(layout, n, chw(inputs[0], "concat")?);
        Ok((channels, n, hw))
    }
}

impl NodeOp for Concat {
    fn reads_stored(&self, _layout: Layout) -> bool {
        true
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let (channels, _) = Self::parts(inputs)?;
        let (_, h, w) = chw(inputs[0], "concat")?;
        Ok(vec![channels.iter().sum(), h, w])
    }
    fn describe(&self) -> String {
        "concat".into()
    }
    fn aliases_input(&self, _training: bool, inputs: usize) -> bool {
        inputs == 1
    }
    fn grad_flow(&self, inputs: usize) -> GradFlow {
        if inputs == 1 {
            GradFlow::PassDy
        } else {
            GradFlow::AllAtOnce
        }
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        let (channels, n, hw) = Self::rows(ctx.inputs, ctx.n, ctx.layout)?;
        Ok((ctx.backend.concat_channels(xs, &channels, n, hw)?, Saved::None))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        if ctx.inputs.len() == 1 {
            return ctx.grads.send_input(0, InputGrad::PassDy);
        }
        let (channels, n, hw) = Self::rows(ctx.inputs, ctx.n, ctx.layout)?;
        let parts = ctx.backend.split_channels(dy, &channels, n, hw)?;
        for (pos, part) in parts.into_iter().enumerate() {
            ctx.grads.send_input(pos, InputGrad::New(part))?;
        }
        Ok(())
    }
}

/// Channels start..start+len of the input. The executor splits the sibling slices of one input
/// together (one split in forward, one concat in backward), so a slice never runs alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SliceChannels {
    start: usize,
    len: usize,
}

impl SliceChannels {
    pub fn new(start: usize, len: usize) -> Result<Self> {
        if len == 0 {
            return Err(Error::shape(format!("channels {start}..{start} are empty")));
        }
        Ok(SliceChannels { start, len })
    }
}

impl NodeOp for SliceChannels {
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let (c, h, w) = chw(inputs[0], "slice_channels")?;
        if self.start + self.len > c {
            return Err(Error::shape(format!("channels {}..{} outside 0..{c}", self.start, self.start + self.len)));
        }
        Ok(vec![self.len, h, w])
    }
    fn describe(&self) -> String {
        format!("channels {}..{}", self.start, self.start + self.len)
    }
    fn channel_range(&self) -> Option<(usize, usize)> {
        Some((self.start, self.len))
    }
    fn forward<E: Element, B: Backend<E>>(&self, _ctx: &mut ForwardCtx<'_, E, B>, _xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        unreachable!("the executor splits slice groups (channel_range)")
    }
    fn backward<E: Element, B: Backend<E>>(&self, _ctx: &mut BackwardCtx<'_, E, B>, _dy: &B::Buf) -> Result<()> {
        unreachable!("the executor joins slice groups (channel_range)")
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChannelShuffle {
    groups: usize,
}

impl ChannelShuffle {
    pub fn new(groups: usize) -> Result<Self> {
        if groups == 0 {
            return Err(Error::shape("channel shuffle needs at least one group"));
        }
        Ok(ChannelShuffle { groups })
    }
    pub fn groups(&self) -> usize {
        self.groups
    }
}

impl NodeOp for ChannelShuffle {
    fn reads_stored(&self, _layout: Layout) -> bool {
        true
    }
    fn output_shape(&self, inputs: &[&[usize]]) -> Result<Vec<usize>> {
        let (c, _, _) = chw(inputs[0], "channel_shuffle")?;
        if c % self.groups != 0 {
            return Err(Error::shape(format!("{} groups do not divide {c} channels", self.groups)));
        }
        Ok(inputs[0].to_vec())
    }
    fn describe(&self) -> String {
        format!("shuffle g{}", self.groups)
    }
    fn forward<E: Element, B: Backend<E>>(&self, ctx: &mut ForwardCtx<'_, E, B>, xs: &[&B::Buf]) -> Result<(B::Buf, Saved<E, B>)> {
        let (n, c, hw) = channel_rows(ctx.layout, ctx.n, chw(ctx.inputs[0], "channel_shuffle")?);
        Ok((ctx.backend.channel_shuffle(xs[0], n, c, hw, self.groups)?, Saved::None))
    }
    fn backward<E: Element, B: Backend<E>>(&self, ctx: &mut BackwardCtx<'_, E, B>, dy: &B::Buf) -> Result<()> {
        let (n, c, hw) = channel_rows(ctx.layout, ctx.n, chw(ctx.inputs[0], "channel_shuffle")?);
        let dx = ctx.backend.channel_shuffle_backward(dy, n, c, hw, self.groups)?;
        ctx.grads.send_input(0, InputGrad::New(dx))
    }
}
