//! Channel concatenation and split (Inception, DenseNet-like joins, ShuffleNet's branch split)
//! and ShuffleNet's channel shuffle. Tensors are [N, C, HW].

pub mod cases;
mod cpu;
mod node;

pub use node::{ChannelShuffle, Concat, SliceChannels};
mod cuda;

use crate::device::Device;
use crate::element::Element;
use crate::error::{Error, Result};
use crate::ops::check::expect_len;

pub trait ChannelOps<E: Element>: Device<E> {
    /// Concatenates xs[i] ([N, channels[i], HW]) along channels.
    fn concat_channels(&self, xs: &[&Self::Buf], channels: &[usize], n: usize, hw: usize) -> Result<Self::Buf>;
    /// The inverse of concat: x [N, sum(channels), HW] -> one buffer per entry of `channels`.
    fn split_channels(&self, x: &Self::Buf, channels: &[usize], n: usize, hw: usize) -> Result<Vec<Self::Buf>>;
    /// PyTorch's channel_shuffle: view [N, groups, C/groups, HW], transpose 1 and 2, flatten:
    /// output channel j = i * groups + g takes input channel g * (C/groups) + i.
    fn channel_shuffle(&self, x: &Self::Buf, n: usize, c: usize, hw: usize, groups: usize) -> Result<Self::Buf>;
    /// The inverse permutation (the gradient of channel_shuffle).
    fn channel_shuffle_backward(&self, dy: &Self::Buf, n: usize, c: usize, hw: usize, groups: usize) -> Result<Self::Buf>;
}

/// Channels per group of a shuffle of `len` elements, after checking that `groups` divides `c`
/// and that `len` is N * C * HW.
pub(crate) fn check_shuffle(op: &str, operand: &str, len: usize, (n, c, hw): (usize, usize, usize), groups: usize) -> Result<usize> {
    if groups == 0 || !c.is_multiple_of(groups) {
        return Err(Error::shape(format!("{op}: {c} channels cannot be split into {groups} equal groups")));
    }
    expect_len(op, operand, len, n * c * hw)?;
    Ok(c / groups)
}

/// Where each part starts inside the joined channel axis, and the total channel count.
pub(crate) fn channel_offsets(channels: &[usize]) -> (Vec<usize>, usize) {
    let mut offsets = Vec::with_capacity(channels.len());
    let mut total = 0;
    for &c in channels {
        offsets.push(total);
        total += c;
    }
    (offsets, total)
}

/// concat_channels' checks, shared by every device: one channel count per input, and input i
/// holding [N, channels[i], HW].
pub(crate) fn check_concat_inputs(input_lens: &[usize], channels: &[usize], n: usize, hw: usize) -> Result<()> {
    if input_lens.len() != channels.len() {
        return Err(Error::shape(format!(
            "concat_channels: {} inputs but {} channel counts",
            input_lens.len(),
            channels.len()
        )));
    }
    for (i, (&len, &c)) in input_lens.iter().zip(channels).enumerate() {
        expect_len("concat_channels", &format!("input {i}"), len, n * c * hw)?;
    }
    Ok(())
}
