//! Channel concatenation and split (Inception, DenseNet-like joins, ShuffleNet's branch split)
//! and ShuffleNet's channel shuffle. Tensors are [N, C, HW].

mod cpu;
mod cuda;

use crate::device::Device;
use crate::element::Element;
use crate::error::Result;

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
